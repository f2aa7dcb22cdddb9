"""One cell of a study: :func:`run_cell` trains (or resumes) the cell's run directory under its lock and
writes its rows; the worker exit codes.  The whole study (:func:`~medcolor.study.runner.run_study`) is in
:mod:`medcolor.study.runner`, the directory layout and lock in :mod:`medcolor.study.layout`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medcolor.config import RunConfig
from medcolor.study.jobs import read_wall, timed_attempt
from medcolor.study.layout import (
    FAILED_FILE,
    LOCK_FILE,
    LOG_FILE,
    WALL_FILE,
    CellLock,
    cell_dir,
    read_cell,
    record_failure,
    row_problem,
)
from medcolor.study.plan import Cell, cell_run_config
from medcolor.study.results import ROW_FILE, cell_rows, write_rows
from medcolor.training.rundir import RUN_MARKER, RunConflictError, mark_run_dir

log = logging.getLogger("medcolor.study")

#: worker exit codes
EXIT_CODES = {"done": 0, "failed": 1, "busy": 75, "skipped": 76}


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
    meta, cell = read_cell(study_dir, cell_id)
    rank0 = process_rank() == 0
    lock = CellLock(d / LOCK_FILE)
    if rank0 and not lock.acquire():
        return "busy"
    try:
        if _finished(d, rank0):
            return "done"
        if any(not (cell_dir(study_dir, dep) / ROW_FILE).is_file() for dep in cell.depends_on):
            return "skipped"
        with _output_to(d / (LOG_FILE if rank0 else f"log.rank{process_rank()}.txt"), capture):
            print(
                f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} cell {cell_id}: pid {os.getpid()} on {socket.gethostname()}"
            )
            try:
                _train_and_collect(study_dir, d, meta, cell, rank0, threads=threads, devices=devices, nodes=nodes)
            except KeyboardInterrupt:
                print(f"=== cell {cell_id} interrupted", flush=True)
                raise
            except Exception as exc:
                tb = traceback.format_exc()
                print(tb, flush=True)
                error = _failure_message(exc, cell_id, d)
                if isinstance(exc, RunConflictError):
                    print(error, flush=True)
                if rank0:
                    record_failure(d, error, tb)
                return "failed"
            print(f"=== cell {cell_id} done", flush=True)
            return "done"
    finally:
        if rank0:
            lock.release()


def _finished(d: Path, rank0: bool) -> bool:
    """Whether the cell's ``row.json`` is there and readable; a damaged one (derived from the run's
    summary.json) is removed so that the rows are collected again."""
    if not (d / ROW_FILE).is_file():
        return False
    damaged = row_problem(d)
    if damaged is None:
        return True
    log.warning("%s: collecting the cell's rows again", damaged)
    if rank0:
        (d / ROW_FILE).unlink()
    return False


def _train_and_collect(
    study_dir: Path,
    d: Path,
    meta: dict[str, Any],
    cell: Cell,
    rank0: bool,
    *,
    threads: int | None,
    devices: int | None,
    nodes: int | None,
) -> None:
    """Train (or resume) the cell's run unless it finished, then (rank 0) write its rows."""
    if rank0:
        (d / FAILED_FILE).unlink(missing_ok=True)
    cfg = _cell_config(study_dir, cell, threads, devices, nodes)
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
        wall = read_wall(wall_file)
        commits = [a.get("git_commit", "") for a in wall["attempts"]]
        rows = cell_rows(cell, d, study=meta["study"], columns=meta["columns"], wall_s=wall["wall_s"], commits=commits)
        write_rows(d, rows)


def _cell_config(study_dir: Path, cell: Cell, threads: int | None, devices: int | None, nodes: int | None) -> RunConfig:
    """The cell's run configuration with this worker's devices and nodes (and its torch threads set)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = cell_run_config(cell, study_dir)
    if devices and devices > 1:
        cfg.trainer.devices = devices
    if nodes and nodes > 1:
        cfg.trainer.num_nodes = nodes
    return cfg


def _failure_message(exc: Exception, cell_id: str, d: Path) -> str:
    """The one-line error recorded for a failed cell (a partial run of another configuration: what to do)."""
    if isinstance(exc, RunConflictError):  # train's advice (--resume / --overwrite) does not apply to a cell
        return (
            f"RunConflictError: cell {cell_id} holds a partly trained run of another configuration "
            f"({'; '.join(exc.diffs[:6])}), e.g. begun by a medcolor with other defaults or before "
            f"the spec was edited. Delete {d} to run the cell from the start (finished cells are "
            "never affected)."
        )
    return f"{type(exc).__name__}: {exc}"


__all__ = ["EXIT_CODES", "process_rank", "run_cell"]
