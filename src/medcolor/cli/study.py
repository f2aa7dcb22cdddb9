"""``medcolor study run | status | compare | report``: the command line of studies.

Exit codes: 0 ok; 1 some cells failed or were skipped (a summary lists them); 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

EPILOG = """examples:
  medcolor study run configs/examples/study-kermany.yaml -o studies/kermany --dry-run   # plan and cost
  medcolor study run configs/examples/study-kermany.yaml -o studies/kermany --workers 2
  medcolor study status studies/kermany
  medcolor study compare studies/kermany baseline color-module
  medcolor study compare studies/kermany baseline color-module --test-set all
  medcolor study report studies/kermany -o studies/kermany/report
  medcolor study document docs/reproduction.md.j2 --study external=studies/external -o docs/reproduction.md
  medcolor study run configs/paper/table1-chexpert.yaml -o /scratch/table1 --executor slurm
"""


#: medcolor.study.resources.EXECUTORS, written out so that ``--help`` need not import the study package
#: (which imports torch); tests/cli/test_cli_help.py checks that the two agree
EXECUTORS = ("local", "slurm", "submitit-local")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``study`` and its subcommands to the ``medcolor`` parser."""
    p = subparsers.add_parser(
        "study",
        help="grids of runs from one YAML spec (local or SLURM), results table, statistics, report",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    _add_run(sub)
    s = sub.add_parser("status", help="done / running / failed / pending / skipped per cell")
    s.add_argument("dir", metavar="DIR", help="the study directory (the -o of study run)")
    c = sub.add_parser("compare", help="paired comparison of two strategies over matched repeats")
    c.add_argument("dir", metavar="DIR", help="the study directory (the -o of study run)")
    c.add_argument("a", metavar="A", help="the reference arm: a strategy (baseline) or FIELD=VALUE of the grid")
    c.add_argument("b", metavar="B", help="the arm compared with A (difference = B - A), written like A")
    c.add_argument("--by", action="append", metavar="FIELD", help="compare within each value of FIELD (repeatable)")
    c.add_argument("--test", default="t", choices=["t", "wilcoxon"], help="paired t-test or Wilcoxon signed-rank")
    c.add_argument("--metric", default="test_auc", choices=["test_auc", "val_auc"], help="default: test_auc")
    ts_help = "test set: internal (default: each cell's own held-out split), an external set's name, or all"
    c.add_argument("--test-set", default="internal", metavar="NAME", help=ts_help)
    c.add_argument(
        "--family",
        default="report",
        choices=["report", "comparison"],
        help="BH family of each row: report (default): the family of the report's table that shows the same "
        "test (Table I / II / III), else this comparison; comparison: the rows of this comparison",
    )
    rp = sub.add_parser("report", help="HTML + Markdown + LaTeX report of a study")
    rp.add_argument("dir", metavar="DIR", help="the study directory (the -o of study run)")
    rp.add_argument("-o", "--output", required=True, metavar="REPORT", help="output folder")
    rp.add_argument("--metric", default="test_auc", choices=["test_auc", "val_auc"], help="default: test_auc")
    d = sub.add_parser(
        "document",
        help="render a results document (a Jinja2 Markdown template) whose numbers come from studies",
        description="Render TEMPLATE with each --study NAME=DIR as a template variable: NAME.compare(a, b), "
        "NAME.arm(selector), NAME.table('table1'); Benjamini-Hochberg over each family of comparisons. "
        "See medcolor.report.document.",
    )
    d.add_argument(
        "template", metavar="TEMPLATE", help="a Jinja2 Markdown template, e.g. docs/reproduction.md.j2 (ships)"
    )
    d.add_argument("--study", action="append", metavar="NAME=DIR", required=True, help="a study (repeatable)")
    d.add_argument("-o", "--output", required=True, metavar="FILE", help="the document to write")
    d.add_argument("--metric", default="test_auc", choices=["test_auc", "val_auc"], help="default: test_auc")
    return p


def _add_run(sub: Any) -> None:
    r = sub.add_parser("run", help="run (or resume) every cell of a study spec that is not done")
    r.add_argument(
        "spec", metavar="SPEC.yaml", help="the study spec (grid of runs), e.g. configs/examples/study-kermany.yaml"
    )
    r.add_argument("-o", "--output", metavar="DIR", help="the study directory (required unless --dry-run)")
    r.add_argument("--dry-run", action="store_true", help="show the cells, their dependencies and cost; run nothing")
    r.add_argument("--executor", choices=EXECUTORS, help="default: the spec's executor.name, else local")
    r.add_argument("--workers", type=int, help="local: cells at a time (0: one by one in this process)")
    r.add_argument("--devices", type=int, help="GPUs per cell (local: CUDA_VISIBLE_DEVICES slices; slurm: gpus)")
    r.add_argument("--threads", type=int, help="torch CPU threads per cell (default: cores / workers)")
    r.add_argument("--tflops", type=float, help="sustained TFLOP/s per GPU assumed by the cost estimate (20)")
    r.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only the cells whose id or group matches PATTERN (shell-style, e.g. 'lut*' or 'gray_s2_*'; "
        "comma-separated or repeated), with the cells they transfer from; the rest stay pending",
    )


def run(a: argparse.Namespace) -> int:
    return {
        "run": cmd_run,
        "status": cmd_status,
        "compare": cmd_compare,
        "report": cmd_report,
        "document": cmd_document,
    }[a.study_command](a)


def _progress_logging() -> None:
    log = logging.getLogger("medcolor.study")
    if not any(getattr(h, "_medcolor_study", False) for h in log.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        h._medcolor_study = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False


def _check_run_flags(a: argparse.Namespace) -> None:
    from medcolor.errors import ConfigError

    for name in ("workers", "devices", "threads"):
        v = getattr(a, name)
        if v is not None and (v < 0 or (name == "threads" and v < 1)):
            raise ConfigError(f"--{name} must be {'>= 1' if name == 'threads' else '>= 0'}, got {v}")
    if a.tflops is not None and a.tflops <= 0:
        raise ConfigError(f"--tflops must be > 0, got {a.tflops}")


def cmd_run(a: argparse.Namespace) -> int:
    from medcolor.cli.outputs import check_output
    from medcolor.errors import ConfigError
    from medcolor.study.executors import spec_executor
    from medcolor.study.runner import run_study, summary_lines
    from medcolor.study.spec import load_spec

    if a.output and not a.dry_run:
        check_output(a.output, "folder")
    spec = load_spec(a.spec)
    _check_run_flags(a)
    if a.tflops is not None:
        spec.estimate["tflops"] = a.tflops
    only = a.only  # patterns, each comma-separated (select_cells splits them and refuses none)
    if a.dry_run:
        _dry_run(spec, a, only)
        return 0
    if not a.output:
        raise ConfigError("give the study directory: -o DIR (or --dry-run to only show the plan)")
    executor = spec_executor(spec, a.executor, workers=a.workers, devices=a.devices, threads=a.threads)
    _progress_logging()
    result = run_study(spec, a.output, executor=executor, only=only)
    print("\n".join(summary_lines(result)))
    return 0 if result.ok else 1


def _dry_run(spec: Any, a: argparse.Namespace, only: list[str] | None) -> None:
    """Print the plan (of the cells ``--only`` selects) with each cell's state when the study directory exists."""
    from medcolor.study.plan import expand
    from medcolor.study.runner import plan_lines, select_cells, study_status

    plan = expand(spec)
    if only:  # the selected cells only (their total too)
        keep = select_cells(plan, only)
        plan = dataclasses.replace(plan, cells=[c for c in plan.cells if c.id in keep])
    states = None
    if a.output and (Path(a.output) / "plan.json").is_file():
        states = {s.cell.id: s.state for s in study_status(a.output, plan)}
    print(f"study {plan.study} ({a.spec}):")
    print("\n".join(plan_lines(plan, states)))


def cmd_status(a: argparse.Namespace) -> int:
    from medcolor.study.runner import status_lines

    for line in status_lines(a.dir):  # a line at a time: a damaged cell stops it after the lines before it
        print(line)
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from medcolor.report.html import with_report_families
    from medcolor.study.results import INTERNAL, for_test_set, read_results, table_test_sets
    from medcolor.study.stats import compare, format_comparison

    table = read_results(a.dir)
    by = [f.strip() for spec in a.by or [] for f in spec.split(",") if f.strip()] or None
    names = table_test_sets(table) if a.test_set == "all" else [a.test_set]
    for_test_set(table, names[0])  # an unknown set: named with the sets the table has, before any work
    blocks = []
    for name in names:
        result = compare(table, a.a, a.b, by=by, test=a.test, metric=a.metric, test_set=name)
        if a.family == "report" and name == INTERNAL:  # the report's tables test the internal set only
            result = with_report_families(result, a.dir, for_test_set(table, INTERNAL), a.metric, a.test)
        text = format_comparison(result)
        blocks.append(f"test set: {name}\n{text}" if len(names) > 1 or name != INTERNAL else text)
    print("\n\n".join(blocks))
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from medcolor.cli.outputs import check_output
    from medcolor.report import build_report

    check_output(a.output, "folder")
    path = build_report(a.dir, a.output, metric=a.metric)
    print(f"report: {path}")
    return 0


def cmd_document(a: argparse.Namespace) -> int:
    from medcolor.cli.outputs import check_output
    from medcolor.report.document import parse_study_args, write_document

    out = check_output(a.output, "file", inputs=[a.template], apart=True)  # a folder or unwritable: named, up front
    path = write_document(a.template, parse_study_args(a.study), out, metric=a.metric)
    print(f"document: {path}")
    return 0


__all__ = ["add_parser", "run"]
