"""Studies: grids of runs over config fields, repeated, with a tidy results table, paired statistics
(:mod:`medcolor.study.stats`) and the paper's tables and figures (:mod:`medcolor.report`)."""
