"""Running a study: every cell is an ordinary, resumable medcolor run directory (the directory layout,
reading it back and the cell lock are :mod:`medcolor.study.layout`).

A cell is *done* when its ``row.json`` exists and is readable, *running* while some process holds its
lock, *failed* when ``FAILED.json`` exists, *skipped* when a cell it depends on (its transfer source)
failed or was skipped, and *pending* otherwise (``started`` if an earlier attempt left checkpoints: it
resumes).  Re-running a study skips done cells, retries failed ones and resumes interrupted ones.  Cells
are found again by their id (a hash of their configuration): a grid extended with new values only adds
cells; cells that an edited spec no longer has stay on disk but leave the plan and the table.

What a terminal shows of a study is here too, so that a notebook shows the same: :func:`plan_lines` (the
``--dry-run`` table), :func:`status_lines` (``medcolor study status``) and :func:`summary_lines` (the end of
``study run``).
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcolor.errors import MedcolorError
from medcolor.study.cell import EXIT_CODES, run_cell
from medcolor.study.cost import DEFAULT_TFLOPS
from medcolor.study.executors import spec_executor
from medcolor.study.layout import (
    CELLS,
    CellLock,
    CellState,
    cell_dir,
    prepare_study_dir,
    read_plan,
    rebuild_table,
    record_failure,
    study_status,
)
from medcolor.study.plan import Cell, Plan, expand
from medcolor.study.results import INTERNAL, ROW_FILE, TEST_SET, StudyError, read_rows
from medcolor.study.spec import Spec, load_spec

log = logging.getLogger("medcolor.study")


# ----------------------------------------------------------------------------- the whole study
@dataclass
class StudyResult:
    study_dir: Path
    states: list[CellState]
    table: Path
    wall_s: float
    ran: dict[str, str] = field(default_factory=dict)
    #: the cells ``only`` selected (with the cells they transfer from); None: every cell
    selected: set[str] | None = None

    def count(self, state: str) -> int:
        return sum(s.state == state for s in self.states)

    @property
    def ok(self) -> bool:
        """Every (selected) cell done (a study with cells still queued or running is not finished)."""
        return all(s.state == "done" for s in self.states if self.selected is None or s.cell.id in self.selected)


def select_cells(plan: Plan, patterns: str | Sequence[str]) -> set[str]:
    """The ids of the cells whose id or group matches one of the shell-style ``patterns`` (``lut*``,
    ``gray_s2_*``; a string: comma-separated), with every cell they transfer from; a pattern that matches no cell,
    or no pattern at all, is an error."""
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    patterns = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    if not patterns:
        raise StudyError("--only gives no pattern: give a cell id or group, or a pattern such as 'lut*'")
    chosen = set().union(*(_matching(plan, p) for p in patterns))
    todo = list(chosen)
    while todo:
        for dep in plan[todo.pop()].depends_on or []:
            if dep not in chosen:
                chosen.add(dep)
                todo.append(dep)
    return chosen


def _matching(plan: Plan, pattern: str) -> set[str]:
    """The ids of the cells whose id or group matches ``pattern``; none is an error naming the groups."""
    hits = {c.id for c in plan.cells if any(fnmatch.fnmatchcase(x, pattern) for x in (c.id, c.group or ""))}
    if not hits:
        groups = ", ".join(dict.fromkeys(c.group for c in plan.cells if c.group)) or "none"
        raise StudyError(f"--only {pattern!r} matches no cell id or group of {plan.study}; its groups: {groups}")
    return hits


def grid_major(spec: Spec, cells: list[Cell]) -> list[Cell]:
    """``cells`` in the order they run: the first value of every top-level ``grid`` key for every arm, then the
    next (e.g. seed 0 of every arm before any seed 1), the plan's order within; a cell's transfer source still
    runs before it (the executor starts a cell only when its sources are done)."""

    def rank(cell: Cell) -> tuple[int, ...]:
        return tuple(
            next((i for i, v in enumerate(axis.values) if v.label == cell.values.get(axis.key)), len(axis.values))
            for axis in spec.grid
        )

    return sorted(cells, key=rank)


def run_study(
    spec: Spec | str | os.PathLike,
    out: str | os.PathLike,
    *,
    executor: Any = None,
    only: Sequence[str] | None = None,
) -> StudyResult:
    """Expand the spec, run every cell that is not done with ``executor`` (default: the spec's own,
    :func:`~medcolor.study.executors.spec_executor`) and rebuild the results table.  Failed cells are recorded
    and the rest go on.  ``only``: run just the cells :func:`select_cells` selects (the rest stay pending)."""
    t0 = time.time()
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    plan = expand(spec)
    selected = select_cells(plan, only) if only is not None else None
    study_dir = prepare_study_dir(spec, plan, out).resolve()
    executor = executor or spec_executor(spec)
    states = {s.cell.id: s for s in study_status(study_dir, plan)}
    todo = [c for c in plan.cells if states[c.id].state != "done" and (selected is None or c.id in selected)]
    todo = grid_major(spec, todo)
    done = sum(s.state == "done" for s in states.values())
    left = len(plan.cells) - done - len(todo)
    log.info(
        "study %s: %d cells (%d done, %d to run%s) in %s with %s",
        plan.study,
        len(plan.cells),
        done,
        len(todo),
        f", {left} not selected" if left else "",
        study_dir,
        executor.describe(),
    )
    counter = {"n": done}

    def report(cell: Cell, status: str, detail: str = "") -> None:
        if status == "done":
            counter["n"] += 1
            rebuild_table(study_dir, plan)
        what = f"{status}{': ' + detail if detail else ''}"
        log.info("[%d/%d] %s %s", counter["n"], len(plan.cells), cell.id, what)

    try:
        ran = executor.run(study_dir, plan, todo, report) if todo else {}
    finally:
        table = rebuild_table(study_dir, plan)
    return StudyResult(study_dir, study_status(study_dir, plan), table, time.time() - t0, ran, selected)


def summary_lines(result: StudyResult) -> list[str]:
    counts = {s: result.count(s) for s in ("done", "failed", "skipped", "running", "pending")}
    lines = [
        f"study {result.study_dir.name}: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f" ({result.wall_s:.0f} s); results: {result.table}"
    ]
    for s in result.states:
        if s.state in ("failed", "skipped") and (result.selected is None or s.cell.id in result.selected):
            first = s.detail.strip().splitlines()[0] if s.detail.strip() else ""
            lines.append(f"  {s.state:<8} {s.cell.id}: {first[:300]}")
    if counts["failed"]:
        lines.append(f"  logs: {result.study_dir / CELLS}/<cell>/log.txt; re-run the same command to retry")
    return lines + _unfinished_lines(result)


def _unfinished_lines(result: StudyResult) -> list[str]:
    """The summary's lines of the cells still running or pending, and of those ``--only`` left for later."""
    chosen, lines = result.selected, []
    unfinished = [s for s in result.states if s.state in ("running", "pending") and (not chosen or s.cell.id in chosen)]
    for s in unfinished:
        lines.append(f"  {s.state:<8} {s.cell.id}: {s.detail.strip()[:300]}")
    later = sum(s.state != "done" for s in result.states if chosen and s.cell.id not in chosen)
    if later:
        lines.append(f"  {later} cell(s) not selected by --only: run the same command without it to run them")
    if unfinished:
        lines.append(
            f"  the study is not finished: {len(unfinished)} cell(s) still running or pending; re-run the same "
            "command (it waits for cells that are queued or running) or see `medcolor study status`"
        )
    return lines


# ----------------------------------------------------------------------------- what a terminal shows
def status_lines(study_dir: str | os.PathLike, plan: Plan | None = None) -> Iterator[str]:
    """What ``medcolor study status`` prints, a line at a time: the count of cells per state, then one line per
    cell (a done cell's internal test mean AUC and wall time, else why it is where it is)."""
    plan = plan or read_plan(study_dir)
    states = study_status(study_dir, plan)
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    order = ("done", "running", "failed", "skipped", "pending")
    yield f"study {plan.study} in {study_dir}: {len(states)} cells — " + ", ".join(
        f"{counts[k]} {k}" for k in order if k in counts
    )
    width = max([len(s.cell.id) for s in states] + [4])
    for s in states:
        detail = done_detail(study_dir, s.cell.id) if s.state == "done" else s.detail.strip()
        yield f"  {s.state:<8} {s.cell.id:<{width}}  {detail.splitlines()[0][:200] if detail else ''}"


def done_detail(study_dir: str | os.PathLike, cell_id: str) -> str:
    """A done cell's internal test mean AUC and wall time, from its ``row.json``."""
    rows = read_rows(cell_dir(study_dir, cell_id) / ROW_FILE)
    mean = next((r for r in rows if r["label"] == "mean" and r.get(TEST_SET, INTERNAL) == INTERNAL), {})
    auc, wall = mean.get("test_auc"), mean.get("wall_s")
    auc_text = f"{auc:.4f}" if isinstance(auc, int | float) and math.isfinite(auc) else "n/a"
    return f"test mean AUC {auc_text}" + (f", {wall:,.0f} s" if isinstance(wall, int | float) else "")


def _fmt_hours(h: float | None) -> str:
    if h is None:
        return "?"
    return f"{h:,.1f}" if h >= 10 else f"{h:.2f}" if h >= 0.01 else f"{h:.2g}"


def plan_lines(plan: Plan, states: dict[str, str] | None = None) -> list[str]:
    """The dry-run table of a study plan: one line per cell (with its state, given ``states``), the total,
    the cost model's notes and the plan's warnings."""
    w = (
        max([len(c.id) for c in plan.cells] + [4]),
        max([len(c.depends_on[0]) for c in plan.cells if c.depends_on] + [10]),
        max([len(c.values.get("stages", "")) for c in plan.cells] + [6]),
    )
    head = f"  {'cell':<{w[0]}}  lvl  {'depends on':<{w[1]}}  {'stages':<{w[2]}}  {'iterations':>14}  {'GPU-h':>8}"
    lines = [head + ("  state" if states else "")]
    lines += [_cell_line(c, w) + (f"  {states.get(c.id, '')}" if states else "") for c in plan.cells]
    lines.append(_plan_total(plan))
    notes = sorted({n for c in plan.cells for n in (c.estimate or {}).get("notes", [])})
    return lines + [f"note: {n}" for n in notes] + [f"warning: {w}" for w in plan.warnings]


def _cell_line(c: Cell, w: tuple[int, int, int]) -> str:
    its = (c.estimate or {}).get("iterations")
    it_text = "+".join("?" if i is None else f"{i:,}" for i in its) if its else "?"
    dep, h = c.depends_on[0] if c.depends_on else "-", (c.estimate or {}).get("gpu_hours")
    line = f"  {c.id:<{w[0]}}  {c.level:>3}  {dep:<{w[1]}}  {c.values.get('stages', ''):<{w[2]}}  {it_text:>14}  "
    return line + f"{'-' if c.invalid else _fmt_hours(h):>8}"


def _plan_total(plan: Plan) -> str:
    estimates = [c.estimate or {} for c in plan.cells]
    hours = [e["gpu_hours"] for e in estimates if e.get("gpu_hours") is not None]
    its = [sum(e["iterations"]) for e in estimates if e.get("iterations") and None not in e["iterations"]]
    tflops = next((e["tflops_assumed"] for e in reversed(estimates) if "tflops_assumed" in e), DEFAULT_TFLOPS)
    unknown = len(estimates) - len(hours)
    return (
        f"total: {len(plan.cells)} cells in {max((c.level for c in plan.cells), default=0) + 1} dependency "
        f"level(s), {sum(its):,} training iterations, {_fmt_hours(float(sum(hours)))} GPU-hours at {tflops:g} "
        "TFLOP/s sustained"
        + (f" (+ {unknown} cell(s) without an estimate)" if unknown else "")
        + "; cost model: see medcolor.study.cost"
    )


__all__ = [
    "EXIT_CODES",
    "CellLock",
    "CellState",
    "MedcolorError",
    "StudyResult",
    "cell_dir",
    "done_detail",
    "plan_lines",
    "prepare_study_dir",
    "read_plan",
    "rebuild_table",
    "record_failure",
    "run_cell",
    "run_study",
    "status_lines",
    "study_status",
    "summary_lines",
]
