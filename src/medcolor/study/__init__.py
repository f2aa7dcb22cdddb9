"""Studies: grids of runs from one YAML spec, run locally or on SLURM, collected in one results table.

* :mod:`~medcolor.study.spec` — the YAML spec and its validation (errors name the file, line and key);
* :mod:`~medcolor.study.spec_yaml` — the spec file read with the line of every key;
* :mod:`~medcolor.study.resources` — the spec's ``executor:``, ``resources:`` (SLURM) and ``estimate:``;
* :mod:`~medcolor.study.keys` — dotted config keys, stage shorthands, what the table shows for a value;
* :mod:`~medcolor.study.plan` — expansion into cells: ids, dependencies (transfer), levels;
* :mod:`~medcolor.study.cost` — iterations and GPU-hours per cell, for ``--dry-run``;
* :mod:`~medcolor.study.layout` — the study directory (every path, under DIR), its internal files read
  back (a damaged one names the file), the cell lock, ``status``;
* :mod:`~medcolor.study.runner` — each cell an ordinary run directory; skip / resume / record failures;
  ``status``;
* :mod:`~medcolor.study.executors` — SLURM job arrays via submitit, and ``make_executor``;
  :mod:`~medcolor.study.local` — local worker processes; :mod:`~medcolor.study.jobs` — a cell's SLURM job
  (``job.json``, squeue / sacct states) and its wall time over attempts;
* :mod:`~medcolor.study.results` — the tidy results table (``results.parquet``) and its schema;
* :mod:`~medcolor.study.stats` (a package) — paired comparisons over matched repeats (t-test / Wilcoxon,
  bootstrap CI of the difference, Benjamini–Hochberg); the tables and figures are in :mod:`medcolor.report`.

.. code-block:: python

    from medcolor.study import load_spec, expand, run_study, read_results
    from medcolor.study.executors import LocalExecutor

    result = run_study("configs/examples/study-kermany.yaml", "studies/kermany", executor=LocalExecutor(workers=2))
    table = read_results("studies/kermany")          # one row per cell x label (+ "mean")
"""

from medcolor.study.plan import Cell, Plan, expand
from medcolor.study.results import SCHEMA_VERSION, StudyError, build_table, read_results
from medcolor.study.runner import CellLock, read_plan, run_cell, run_study, study_status
from medcolor.study.spec import Spec, SpecError, load_spec, parse_spec

__all__ = [
    "SCHEMA_VERSION",
    "Cell",
    "CellLock",
    "Plan",
    "Spec",
    "SpecError",
    "StudyError",
    "build_table",
    "expand",
    "load_spec",
    "parse_spec",
    "read_plan",
    "read_results",
    "run_cell",
    "run_study",
    "study_status",
]
