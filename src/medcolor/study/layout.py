"""The study directory: where every file of a study lives, reading its internal files back, and the
per-cell lock.

::

    DIR/study.yaml                 the spec as given
    DIR/plan.json                  the expanded plan (derived from the spec: rewritten by every `study run`)
    DIR/results.parquet            the results table (derived from the cells' row.json, see results.py)
    DIR/cells/<cell id>/           a run directory (config.yaml, stages, test/, summary.json...) plus
        cell.json                  the cell (derived from the plan, written before it starts)
        .lock                      held (flock) by the process running the cell: pid, host, start time
        log.txt                    the run's output, all attempts appended
        row.json                   the cell's result rows (derived from summary.json): "done"
        FAILED.json                why its last attempt failed (error, traceback); removed on retry

Every path is built here, by :func:`cell_dir` and the constants below, and every one resolves under DIR:
a cell id is a single slug (the spec's group names are slugs too), and a cell folder that resolves
elsewhere (a link) is refused.  Internal files are read with :func:`read_json`: a damaged one is a
:class:`~medcolor.study.results.StudyError` naming the file; ``study run`` rebuilds the derived ones.

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
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcolor.study.jobs import add_job_states
from medcolor.study.plan import Cell, Plan
from medcolor.study.results import ROW_FILE, StudyError, build_table, read_rows, write_table
from medcolor.study.spec import Spec
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
#: a cell id: one path component (``<slug>_<hash>``), never ``.``, ``..`` or anything with a slash
CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


# ----------------------------------------------------------------------------- reading internal files
REBUILT_BY_RUN = "`medcolor study run SPEC -o DIR` rewrites it from the spec"


def read_json(path: str | os.PathLike, what: str, fix: str = "") -> Any:
    """A JSON file the study wrote; a missing, truncated or otherwise unreadable one is a StudyError
    naming the file (``what`` says what it is, ``fix`` how to repair it)."""
    p = Path(path)
    hint = f"; {fix}" if fix else ""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{p}: the {what} is missing{hint}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StudyError(f"{p}: the {what} is damaged ({type(exc).__name__}: {exc}){hint}") from None


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
    """``DIR/cells/<cell_id>``, refused unless the id is one slug and the folder resolves under ``DIR/cells``."""
    if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id):
        raise StudyError(f"{study_dir}: {cell_id!r} is not a cell id (a slug of letters, digits, '_.+-')")
    root = Path(study_dir) / CELLS
    d = root / cell_id
    if d.exists() or d.is_symlink():
        resolved = d.resolve()
        if resolved.parent != root.resolve():
            raise StudyError(f"{d} resolves to {resolved}, outside {root}: a cell folder must not be a link")
    return d


def read_plan(study_dir: str | os.PathLike) -> Plan:
    p = Path(study_dir) / PLAN_FILE
    if not p.is_file():
        raise StudyError(f"{study_dir} is not a study directory (no {PLAN_FILE}); create it with `medcolor study run`")
    d = read_json(p, "study plan", REBUILT_BY_RUN)
    try:
        plan = Plan.from_dict(d)
        for c in plan.cells:
            cell_dir(study_dir, c.id)
    except (KeyError, TypeError, AttributeError) as exc:
        raise StudyError(f"{p}: the study plan is damaged ({type(exc).__name__}: {exc}); {REBUILT_BY_RUN}") from None
    return plan


def _stored_study_name(out: Path) -> str | None:
    """The study name in ``DIR/plan.json``, else in ``DIR/study.yaml`` (a damaged plan is rebuilt)."""
    try:
        name = read_json(out / PLAN_FILE, "study plan").get("study")
        if isinstance(name, str):
            return name
    except (StudyError, AttributeError):
        log.warning("%s is damaged: rebuilding it from the spec", out / PLAN_FILE)
    from medcolor.study.spec import parse_spec
    from medcolor.study.spec_yaml import SpecError

    try:
        return parse_spec((out / SPEC_COPY).read_text(encoding="utf-8"), str(out / SPEC_COPY)).name
    except (OSError, UnicodeDecodeError, SpecError):
        return None


def prepare_study_dir(spec: Spec, plan: Plan, out: str | os.PathLike) -> Path:
    """Create (or extend) the study directory: the spec, the plan and each cell's ``cell.json`` (damaged
    ones rewritten: they are derived from the spec)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out} exists and is not a directory")
    if (out / PLAN_FILE).is_file():
        name = _stored_study_name(out)
        if name is not None and name != plan.study:
            raise StudyError(
                f"{out} holds the study {name!r}, not {plan.study!r}: choose another -o (cells of one study "
                "are kept by their configuration, so re-running or extending the same study is fine)"
            )
    elif out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise StudyError(f"{out} exists, is not empty and is not a study directory; choose another -o")
    dirs = [cell_dir(out, c.id) for c in plan.cells]  # every id checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / SPEC_COPY, spec.text)
    write_json(out / PLAN_FILE, plan.to_dict())
    for c, d in zip(plan.cells, dirs, strict=True):
        want = json.loads(json.dumps({"study": plan.study, "columns": plan.columns, "cell": c.to_dict()}))
        try:
            same = read_json(d / CELL_FILE, "cell record") == want
        except StudyError:
            same = False
        if not same:
            write_json(d / CELL_FILE, want)
    return out


def read_cell(study_dir: str | os.PathLike, cell_id: str) -> tuple[dict[str, Any], Cell]:
    """The record ``cell.json`` of a cell and its :class:`Cell`; a damaged one names the file."""
    f = cell_dir(study_dir, cell_id) / CELL_FILE
    meta = read_json(f, "cell record", REBUILT_BY_RUN)
    try:
        return meta, Cell.from_dict(meta["cell"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise StudyError(f"{f}: the cell record is damaged ({type(exc).__name__}: {exc}); {REBUILT_BY_RUN}") from None


def row_problem(d: Path) -> str | None:
    """Why ``d/row.json`` cannot be used (None when it is readable and valid, or absent)."""
    f = d / ROW_FILE
    if not f.is_file():
        return None
    try:
        read_rows(f)
    except StudyError as exc:
        return str(exc)
    return None


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
    damaged = row_problem(d)
    if (d / ROW_FILE).is_file() and damaged is None:
        return CellState(cell, "done")
    holder = CellLock.holder(d / LOCK_FILE)
    if holder is not None:
        return CellState(cell, "running", f"pid {holder.get('pid')} on {holder.get('host')}")
    if damaged:
        return CellState(cell, "pending", f"{damaged}; `medcolor study run` collects it again")
    if (d / FAILED_FILE).is_file():
        with contextlib.suppress(ValueError, OSError, AttributeError):
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


__all__ = [
    "CELLS",
    "CELL_FILE",
    "CELL_ID",
    "FAILED_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "PLAN_FILE",
    "SPEC_COPY",
    "WALL_FILE",
    "CellLock",
    "CellState",
    "cell_dir",
    "cell_state",
    "prepare_study_dir",
    "read_cell",
    "read_json",
    "read_plan",
    "rebuild_table",
    "record_failure",
    "row_problem",
    "study_status",
]
