"""Paired statistics over a study's results table (the paper's Sec. IV-C: paired t-tests over repeats,
Benjamini–Hochberg across the family of comparisons).

The results table (``STUDY_DIR/results.parquet``) has one row per cell × label plus a row with the label
``"mean"`` (mean AUC over labels).  Every column that is not one of
:data:`medcolor.study.results.RESULT_COLUMNS` is a *grid field*, named by its dotted config key (``stages``,
``model.colorizer``, ``data.subset``, ``trainer.seed``, ``transfer``...).

:func:`compare` contrasts two *arms*.  An arm is ``"field=value"`` (``"stages=color-module"``), several of
them joined with ``&`` (``"model.colorizer=pixelshuffle&stages=color-module,all"``), a bare value that
occurs in exactly one grid field (``"baseline"``), or a mapping ``{field: value}``.  A cell of arm A is
paired with the cell of arm B that has the same value of every other grid field (seed, subset draw, size,
backbone...), except:

* the contrasted fields (those named in A or B);
* fields that are constant within each arm but differ between them (e.g. ``model.colorizer`` is
  ``replicate`` for every baseline cell and ``pixelshuffle`` for every colour-module cell): they are part
  of what the arms are, and the result's ``a``/``b`` columns name them;
* the ``by`` fields, which split the comparison into groups (``by=["data.subset"]``: one comparison per
  training-set size).  When one arm has a single value of a ``by`` field that the other arm never has
  (the baseline's colorizer ``replicate`` with ``by=["model.colorizer"]``), that arm's cells are the
  reference of every group.

The ``transfer`` field holds the id of the source cell, which differs between repeats; for pairing and
display it is replaced by a description of the source (its dataset and stages, and whatever else varies
among sources), so that target cells of seed 0 and 1 transferring from the seed-0 and seed-1 sources pair
as expected.  An arm may name a source by its cell id or by that description.

The difference is always **B − A** (A is the reference).  Per label and for the mean: the number of pairs,
mean ± std (ddof 1) of each arm, the mean difference, a paired t-test (``scipy.stats.ttest_rel``) or a
Wilcoxon signed-rank test (``scipy.stats.wilcoxon`` with ``zero_method="pratt"``, so that a zero
difference stays one of the ``n`` pairs; with fewer than 6 pairs it cannot reach p < 0.05), an interval of
the mean difference (``ci_method``: a t-interval below 6 pairs, where a bootstrap could only return the range
of the differences; from 6 pairs a percentile bootstrap, pairs resampled with a seeded generator, the same
resamples for every label), and Benjamini–Hochberg adjusted p-values (``scipy.stats.false_discovery_control``)
over a *family* named in the ``family`` column beside every adjusted p: the rows of one :func:`compare`
call, or the comparisons of one report table (Table I, II, III; ``study compare`` uses those by default).
A test is counted once: in a single-label study the ``mean`` row is the label's own test.  The pairing is a
merge of the two arms' cells on the repeat keys (:mod:`~.pairing`); every consumer — ``study compare``,
the report's tables and study documents — goes through :func:`compare` (the tables through
:func:`compare_to_baseline`, which runs the same rows per arm).

The modules: :mod:`~.cells` (the table as one row per cell), :mod:`~.arms` (arms and the cells they
select), :mod:`~.pairing` (partners and groups), :mod:`~.significance` (tests, bootstrap, BH),
:mod:`~.comparison` (:func:`compare`), :mod:`~.baseline` (:func:`compare_to_baseline`) and
:mod:`~.format` (text for the terminal and the report's tables).
"""

from medcolor.study.results import RESULT_COLUMNS, SCHEMA_VERSION
from medcolor.study.stats.arms import describe_arm, parse_arm, resolve_field, select_cells
from medcolor.study.stats.baseline import ARM_FIELDS, BASELINES, compare_to_baseline, reference_baseline
from medcolor.study.stats.cells import (
    MEAN_LABEL,
    METRICS,
    NONE,
    REPEAT_FIELDS,
    TESTS,
    TRANSFER_FIELD,
    ArmNotFoundError,
    PairingError,
    StudyCells,
    check_results,
    grid_fields,
    normalize_value,
    study_cells,
    value_sort_key,
)
from medcolor.study.stats.comparison import COMPARISON_FAMILY, STAT_COLUMNS, check_labels, compare
from medcolor.study.stats.format import format_comparison, format_diff, format_p, format_pm
from medcolor.study.stats.significance import CI_METHODS, MIN_BOOTSTRAP_PAIRS, adjust_bh

__all__ = [
    "ARM_FIELDS",
    "BASELINES",
    "CI_METHODS",
    "COMPARISON_FAMILY",
    "MEAN_LABEL",
    "METRICS",
    "MIN_BOOTSTRAP_PAIRS",
    "NONE",
    "REPEAT_FIELDS",
    "RESULT_COLUMNS",
    "SCHEMA_VERSION",
    "STAT_COLUMNS",
    "TESTS",
    "TRANSFER_FIELD",
    "ArmNotFoundError",
    "PairingError",
    "StudyCells",
    "adjust_bh",
    "check_labels",
    "check_results",
    "compare",
    "compare_to_baseline",
    "describe_arm",
    "format_comparison",
    "format_diff",
    "format_p",
    "format_pm",
    "grid_fields",
    "normalize_value",
    "parse_arm",
    "reference_baseline",
    "resolve_field",
    "select_cells",
    "study_cells",
    "value_sort_key",
]
