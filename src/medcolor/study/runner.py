"""Running a study: every cell is an ordinary, resumable medcolor run directory.

::

    DIR/study.yaml                 the spec as given
    DIR/plan.json                  the expanded plan: cells, grid values, dependencies, cost estimates
    DIR/results.parquet            the results table (derived from the cells' row.json, see results.py)
    DIR/cells/<cell id>/           a run directory (config.yaml, stages, test/, summary.json...) plus
        cell.json                  the cell (written by the runner before it starts)
        .lock                      held (flock) by the process running the cell: pid, host, start time
        log.txt                    the run's output, all attempts appended
        row.json                   the cell's result rows, written once when it finished: "done"
        FAILED.json                why its last attempt failed (error, traceback); removed on retry

A cell is *done* when its ``row.json`` exists, *running* while some process holds its lock, *failed*
when ``FAILED.json`` exists, *skipped* when a cell it depends on (its transfer source) failed or was
skipped, and *pending* otherwise (``started`` if an earlier attempt left checkpoints: it resumes).
Re-running a study skips done cells, retries failed ones and resumes interrupted ones.  Cells are found
again by their id (a hash of their configuration): a grid extended with new values only adds cells; cells
that an edited spec no longer has stay on disk but leave the plan and the table.

The lock is ``flock`` on ``.lock``: the kernel releases it when its process dies (SIGKILL included),
so a lock can never go stale — a lock file whose process is gone is simply not locked.  (On network
file systems this relies on the NFS client's lock support, as every SLURM cluster's home does.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcolor.config import RunConfig
from medcolor.errors import MedcolorError
from medcolor.study.jobs import add_job_states, read_wall, timed_attempt
from medcolor.study.plan import Cell, Plan, cell_run_config, expand
from medcolor.study.results import ROW_FILE, StudyError, build_table, cell_rows, write_rows, write_table
from medcolor.study.spec import Spec, load_spec
from medcolor.training.rundir import RUN_MARKER, RunConflictError, mark_run_dir
from medcolor.utils import write_json, write_text_atomic

log = logging.getLogger("medcolor.study")

CELLS = "cells"
PLAN_FILE = "plan.json"
SPEC_COPY = "study.yaml"
CELL_FILE = "cell.json"
FAILED_FILE = "FAILED.json"
LOCK_FILE = ".lock"
LOG_FILE = "log.txt"
WALL_FILE = "wall.json"
#: worker exit codes
EXIT_CODES = {"done": 0, "failed": 1, "busy": 75, "skipped": 76}


# ----------------------------------------------------------------------------- the lock
class CellLock:
    """An exclusive, non-blocking ``flock`` on a file; the file records who holds it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CellLock:
        if not self.acquire():
            raise StudyError(f"{self.path} is locked by {self.holder(self.path)}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @staticmethod
    def holder(path: str | os.PathLike) -> dict[str, Any] | None:
        """Who holds the lock (``{"pid", "host", "since"}``), or None when nobody does."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 4096, 0).decode(errors="replace")
                try:
                    return json.loads(text)
                except ValueError:
                    return {"pid": None, "host": None, "since": None}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- study directory
def cell_dir(study_dir: str | os.PathLike, cell_id: str) -> Path:
    return Path(study_dir) / CELLS / cell_id


def read_plan(study_dir: str | os.PathLike) -> Plan:
    p = Path(study_dir) / PLAN_FILE
    if not p.is_file():
        raise StudyError(f"{study_dir} is not a study directory (no {PLAN_FILE}); create it with `medcolor study run`")
    return Plan.from_dict(json.loads(p.read_text()))


def prepare_study_dir(spec: Spec, plan: Plan, out: str | os.PathLike) -> Path:
    """Create (or extend) the study directory: the spec, the plan and each cell's ``cell.json``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out} exists and is not a directory")
    old = out / PLAN_FILE
    if old.is_file():
        name = json.loads(old.read_text()).get("study")
        if name != plan.study:
            raise StudyError(
                f"{out} holds the study {name!r}, not {plan.study!r}: choose another -o (cells of one study "
                "are kept by their configuration, so re-running or extending the same study is fine)"
            )
    elif out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise StudyError(f"{out} exists, is not empty and is not a study directory; choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / SPEC_COPY, spec.text)
    write_json(out / PLAN_FILE, plan.to_dict())
    for c in plan.cells:
        d = {"study": plan.study, "columns": plan.columns, "cell": c.to_dict()}
        f = cell_dir(out, c.id) / CELL_FILE
        if not f.is_file() or json.loads(f.read_text()) != json.loads(json.dumps(d)):
            write_json(f, d)
    return out


def rebuild_table(study_dir: str | os.PathLike, plan: Plan | None = None) -> Path:
    plan = plan or read_plan(study_dir)
    return write_table(study_dir, build_table(study_dir, plan))


# ----------------------------------------------------------------------------- state of a cell
@dataclass
class CellState:
    cell: Cell
    state: str  # done | running | failed | skipped | pending
    detail: str = ""


def cell_state(study_dir: str | os.PathLike, cell: Cell) -> CellState:
    d = cell_dir(study_dir, cell.id)
    if (d / ROW_FILE).is_file():
        return CellState(cell, "done")
    holder = CellLock.holder(d / LOCK_FILE)
    if holder is not None:
        return CellState(cell, "running", f"pid {holder.get('pid')} on {holder.get('host')}")
    if (d / FAILED_FILE).is_file():
        with contextlib.suppress(ValueError, OSError):
            return CellState(cell, "failed", json.loads((d / FAILED_FILE).read_text()).get("error", ""))
        return CellState(cell, "failed")
    if cell.invalid:
        return CellState(cell, "pending", f"cannot run: {cell.invalid}")
    if any(d.glob("[0-9]*-*/checkpoints")):
        return CellState(cell, "pending", "started before: resumes from its last checkpoint")
    return CellState(cell, "pending")


def study_status(study_dir: str | os.PathLike, plan: Plan | None = None) -> list[CellState]:
    """The state of every cell; a cell whose transfer source failed (or was skipped) is ``skipped``."""
    plan = plan or read_plan(study_dir)
    states = {c.id: cell_state(study_dir, c) for c in plan.cells}
    for level in plan.levels:
        for c in level:
            s = states[c.id]
            bad = [d for d in c.depends_on if states[d].state in ("failed", "skipped")]
            if bad and s.state == "pending":
                s.state, s.detail = "skipped", f"its transfer source {bad[0]} {states[bad[0]].state}"
    add_job_states({c.id: cell_dir(study_dir, c.id) for c in plan.cells}, states)
    return [states[c.id] for c in plan.cells]


# ----------------------------------------------------------------------------- running one cell
def process_rank() -> int:
    """0 in the process that owns a cell (non-zero in the other DDP ranks: SLURM tasks, Lightning workers)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        v = os.environ.get(var)
        if v not in (None, "", "0"):
            with contextlib.suppress(ValueError):
                return int(v)
    return 0


@contextlib.contextmanager
def _output_to(path: Path, capture: bool) -> Iterator[None]:
    """Send this process's output to ``path`` for the duration: file descriptors 1 and 2 (C libraries,
    subprocesses) and ``sys.stdout`` / ``sys.stderr`` (Python, even when they were replaced)."""
    if not capture:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        with (
            open(path, "a", buffering=1, encoding="utf-8", errors="replace") as f,
            contextlib.redirect_stdout(f),
            contextlib.redirect_stderr(f),
        ):
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for x in (fd, *saved):
            os.close(x)


def record_failure(d: Path, error: str, tb: str = "") -> None:
    write_json(
        d / FAILED_FILE,
        {
            "error": error,
            "traceback": tb,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "log": str(d / LOG_FILE),
        },
    )


def run_cell(
    study_dir: str | os.PathLike,
    cell_id: str,
    *,
    threads: int | None = None,
    devices: int | None = None,
    nodes: int | None = None,
    capture: bool = True,
) -> str:
    """Run (or resume, or just collect) one cell; returns ``done``, ``failed``, ``busy`` or ``skipped``.

    Only the process that holds the cell's lock works on it; the other DDP ranks of the same cell
    (``process_rank() != 0``) train alongside it but neither lock nor write results."""
    study_dir = Path(study_dir).resolve()
    d = cell_dir(study_dir, cell_id)
    meta = json.loads((d / CELL_FILE).read_text())
    cell = Cell.from_dict(meta["cell"])
    rank0 = process_rank() == 0
    lock = CellLock(d / LOCK_FILE)
    if rank0 and not lock.acquire():
        return "busy"
    try:
        if (d / ROW_FILE).is_file():
            return "done"
        if any(not (cell_dir(study_dir, dep) / ROW_FILE).is_file() for dep in cell.depends_on):
            return "skipped"
        with _output_to(d / (LOG_FILE if rank0 else f"log.rank{process_rank()}.txt"), capture):
            print(
                f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} cell {cell_id}: pid {os.getpid()} on {socket.gethostname()}"
            )
            try:
                if rank0:
                    (d / FAILED_FILE).unlink(missing_ok=True)
                if threads:
                    import torch

                    torch.set_num_threads(threads)
                cfg = cell_run_config(cell, study_dir)
                if devices and devices > 1:
                    cfg.trainer.devices = devices
                if nodes and nodes > 1:
                    cfg.trainer.num_nodes = nodes
                wall_file = d / WALL_FILE
                if not rank0:  # the other DDP ranks start when rank 0 has made the run directory
                    deadline = time.time() + 600
                    while not (d / "config.yaml").is_file() and time.time() < deadline:
                        time.sleep(0.5)
                if rank0 and not (d / RUN_MARKER).is_file():
                    # the cell folder already holds the runner's files (log, lock): make it the cell's run
                    # directory (also a cell begun by a medcolor that wrote config.yaml without the marker)
                    mark_run_dir(d, RunConfig.from_dict(cfg.to_dict()))
                if not (d / "summary.json").is_file() or not read_wall(wall_file)["finished"]:
                    from medcolor.training import train  # imported before the clock starts; logs via logging

                    with timed_attempt(wall_file, d, record=rank0):  # every attempt counts (requeued, failed...)
                        train(cfg)
                if rank0:
                    wall = read_wall(wall_file)["wall_s"]
                    rows = cell_rows(cell, d, study=meta["study"], columns=meta["columns"], wall_s=wall)
                    write_rows(d, rows)
                print(f"=== cell {cell_id} done", flush=True)
                return "done"
            except KeyboardInterrupt:
                print(f"=== cell {cell_id} interrupted", flush=True)
                raise
            except Exception as exc:
                tb = traceback.format_exc()
                print(tb, flush=True)
                error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, RunConflictError):  # a partial run of another config: train's advice does not apply
                    error = (
                        f"RunConflictError: cell {cell_id} holds a partly trained run of another configuration "
                        f"({'; '.join(exc.diffs[:6])}), e.g. begun by a medcolor with other defaults or before "
                        f"the spec was edited. Delete {d} to run the cell from the start (finished cells are "
                        "never affected)."
                    )
                    print(error, flush=True)
                if rank0:
                    record_failure(d, error, tb)
                return "failed"
    finally:
        if rank0:
            lock.release()


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


def run_study(
    spec: Spec | str | os.PathLike,
    out: str | os.PathLike,
    *,
    executor: Any = None,
) -> StudyResult:
    """Expand the spec, run every cell that is not done with ``executor`` (default: one local worker)
    and rebuild the results table.  Failed cells are recorded and the rest go on."""
    from medcolor.study.executors import LocalExecutor

    t0 = time.time()
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    plan = expand(spec)
    study_dir = prepare_study_dir(spec, plan, out).resolve()
    executor = executor or LocalExecutor(workers=1)
    states = {s.cell.id: s for s in study_status(study_dir, plan)}
    todo = [c for c in plan.cells if states[c.id].state != "done"]
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
    "cell_state",
    "prepare_study_dir",
    "read_plan",
    "rebuild_table",
    "record_failure",
    "run_cell",
    "run_study",
    "study_status",
    "summary_lines",
]
