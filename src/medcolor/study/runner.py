"""Running a study: every cell is an ordinary, resumable medcolor run directory (the directory layout,
reading it back and the cell lock are :mod:`medcolor.study.layout`).

A cell is *done* when its ``row.json`` exists and is readable, *running* while some process holds its
lock, *failed* when ``FAILED.json`` exists, *skipped* when a cell it depends on (its transfer source)
failed or was skipped, and *pending* otherwise (``started`` if an earlier attempt left checkpoints: it
resumes).  Re-running a study skips done cells, retries failed ones and resumes interrupted ones.  Cells
are found again by their id (a hash of their configuration): a grid extended with new values only adds
cells; cells that an edited spec no longer has stay on disk but leave the plan and the table.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcolor.errors import MedcolorError
from medcolor.study.cell import EXIT_CODES, run_cell
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
from medcolor.study.local import LocalExecutor
from medcolor.study.plan import Cell, expand
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

    def count(self, state: str) -> int:
        return sum(s.state == state for s in self.states)

    @property
    def ok(self) -> bool:
        """Every cell done (a study with cells still queued or running is not finished)."""
        return all(s.state == "done" for s in self.states)


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
) -> StudyResult:
    """Expand the spec, run every cell that is not done with ``executor`` (default: one local worker)
    and rebuild the results table.  Failed cells are recorded and the rest go on."""
    t0 = time.time()
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    plan = expand(spec)
    study_dir = prepare_study_dir(spec, plan, out).resolve()
    executor = executor or LocalExecutor(workers=1)
    states = {s.cell.id: s for s in study_status(study_dir, plan)}
    todo = grid_major(spec, [c for c in plan.cells if states[c.id].state != "done"])
    done = len(plan.cells) - len(todo)
    log.info(
        "study %s: %d cells (%d done, %d to run) in %s with %s",
        plan.study,
        len(plan.cells),
        done,
        len(todo),
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
    return StudyResult(study_dir, study_status(study_dir, plan), table, time.time() - t0, ran)


def summary_lines(result: StudyResult) -> list[str]:
    counts = {s: result.count(s) for s in ("done", "failed", "skipped", "running", "pending")}
    lines = [
        f"study {result.study_dir.name}: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f" ({result.wall_s:.0f} s); results: {result.table}"
    ]
    for s in result.states:
        if s.state in ("failed", "skipped"):
            first = s.detail.strip().splitlines()[0] if s.detail.strip() else ""
            lines.append(f"  {s.state:<8} {s.cell.id}: {first[:300]}")
    if counts["failed"]:
        lines.append(f"  logs: {result.study_dir / CELLS}/<cell>/log.txt; re-run the same command to retry")
    unfinished = [s for s in result.states if s.state in ("running", "pending")]
    for s in unfinished:
        lines.append(f"  {s.state:<8} {s.cell.id}: {s.detail.strip()[:300]}")
    if unfinished:
        lines.append(
            f"  the study is not finished: {len(unfinished)} cell(s) still running or pending; re-run the same "
            "command (it waits for cells that are queued or running) or see `medcolor study status`"
        )
    return lines


__all__ = [
    "EXIT_CODES",
    "CellLock",
    "CellState",
    "MedcolorError",
    "StudyResult",
    "cell_dir",
    "prepare_study_dir",
    "read_plan",
    "rebuild_table",
    "record_failure",
    "run_cell",
    "run_study",
    "study_status",
    "summary_lines",
]
