"""Cells as worker processes on this machine: :class:`LocalExecutor` (see :mod:`medcolor.study.executors`),
and what both executors share: the environment a cell's process gets, the one-line detail of a cell's end."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medcolor.study.cell import EXIT_CODES, run_cell
from medcolor.study.jobs import tail
from medcolor.study.layout import FAILED_FILE, LOCK_FILE, LOG_FILE, CellLock, cell_dir, record_failure
from medcolor.study.plan import Cell, Plan
from medcolor.study.results import ROW_FILE, StudyError

Report = Callable[..., None]
_STATUS = {v: k for k, v in EXIT_CODES.items()}


def is_done(study_dir: Path, cell_id: str) -> bool:
    return (cell_dir(study_dir, cell_id) / ROW_FILE).is_file()


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - no torch CUDA runtime
        return []


def source_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the medcolor being run first on PYTHONPATH, so that worker
    processes and jobs run the same code as the runner."""
    env = dict(os.environ if env is None else env)
    root = str(Path(__file__).resolve().parents[2])  # src/medcolor/study/local.py -> src
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


def die_with_parent(parent: int | None) -> None:
    """Linux: get SIGKILL when the process that started us dies (best effort elsewhere)."""
    if parent is None:
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


# ----------------------------------------------------------------------------- local processes
class LocalExecutor:
    """Cells as worker processes on this machine (see the module docstring)."""

    def __init__(
        self,
        workers: int | None = 1,
        devices: int = 0,
        threads: int | None = None,
        *,
        poll_s: float = 0.2,
        busy_wait_s: float = 5.0,
        python: str | None = None,
    ) -> None:
        if (workers is not None and workers < 0) or devices < 0 or (threads is not None and threads < 1):
            raise StudyError("workers and devices must be >= 0, threads >= 1")
        self.devices = devices
        self.slots: list[list[str] | None]
        self.workers, self.slots = _worker_slots(workers, devices)
        self.threads = threads or (None if devices else max(1, _cpu_count() // max(1, self.workers)))
        self.poll_s, self.busy_wait_s = poll_s, busy_wait_s
        self.python = python or sys.executable

    def describe(self) -> str:
        if self.workers == 0:
            return f"the local executor, in this process ({self.threads} torch threads)"
        per = f"{self.devices} GPU(s) each" if self.devices else f"{self.threads} torch thread(s) each"
        return f"the local executor, {self.workers} worker process(es), {per}"

    # -- inline (workers=0)
    def _run_inline(self, study_dir: Path, plan: Plan, todo: list[Cell], report: Report) -> dict[str, str]:
        status: dict[str, str] = {}
        remaining = list(todo)
        while remaining:
            progressed = False
            for c in list(remaining):
                if any(status.get(dep) in ("failed", "skipped") for dep in c.depends_on):
                    status[c.id] = "skipped"
                elif any(not is_done(study_dir, dep) for dep in c.depends_on):
                    continue
                else:
                    status[c.id] = run_cell(study_dir, c.id, threads=self.threads, capture=True)
                    if status[c.id] == "busy":
                        continue
                remaining.remove(c)
                report(c, status[c.id], detail(study_dir, c.id, status[c.id]))
                progressed = True
            if remaining and not progressed:
                time.sleep(self.busy_wait_s)
        return status

    # -- worker processes
    def _start(self, study_dir: Path, cell: Cell, slot: list[str] | None) -> subprocess.Popen:
        env = source_env()
        env["MEDCOLOR_STUDY_PARENT"] = str(os.getpid())
        if self.threads:
            env["MEDCOLOR_THREADS"] = env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot)
        if self.devices > 1:
            env["MEDCOLOR_DEVICES"] = str(self.devices)
        d = cell_dir(study_dir, cell.id)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / LOG_FILE, "ab") as logf:
            return subprocess.Popen(
                [self.python, "-m", "medcolor.study.worker", str(study_dir), cell.id],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def run(self, study_dir: Path, plan: Plan, todo: list[Cell], report: Report) -> dict[str, str]:
        study_dir = Path(study_dir).resolve()
        if self.workers == 0:
            return self._run_inline(study_dir, plan, todo, report)
        q = _Queue(pending=list(todo), free=list(self.slots))
        try:
            while q.pending or q.running:
                now = time.monotonic()
                for c in list(q.pending):
                    if not q.free:
                        break
                    self._try_start(study_dir, c, q, now, report)
                self._reap(study_dir, q, report)
                time.sleep(self.poll_s)
        except BaseException:
            _stop_workers(q.running)
            raise
        return q.status

    def _try_start(self, study_dir: Path, c: Cell, q: _Queue, now: float, report: Report) -> None:
        """Start cell ``c`` in a free slot when it can run now; skip it when a transfer source failed, leave it
        pending while its sources are not done or another runner holds it."""
        if any(q.status.get(dep) in ("failed", "skipped") for dep in c.depends_on):
            q.pending.remove(c)
            q.status[c.id] = "skipped"
            report(c, "skipped", detail(study_dir, c.id, "skipped", c))
            return
        if any(not is_done(study_dir, dep) for dep in c.depends_on) or q.not_before.get(c.id, 0) > now:
            return
        if is_done(study_dir, c.id):  # finished by another runner meanwhile
            q.pending.remove(c)
            q.status[c.id] = "done"
            report(c, "done", "finished by another runner")
            return
        if CellLock.holder(cell_dir(study_dir, c.id) / LOCK_FILE) is not None:
            q.not_before[c.id] = now + self.busy_wait_s  # another runner has it: look again later
            return
        slot = q.free.pop(0)
        q.running[c.id] = (self._start(study_dir, c, slot), slot, c)
        q.pending.remove(c)

    def _reap(self, study_dir: Path, q: _Queue, report: Report) -> None:
        """The status of each worker process that has ended (a busy cell goes back to pending); frees its slot."""
        for cid, (proc, slot, c) in list(q.running.items()):
            code = proc.poll()
            if code is None:
                continue
            del q.running[cid]
            q.free.append(slot)
            st = _STATUS.get(code)
            if st == "busy":
                q.pending.append(c)
                q.not_before[cid] = time.monotonic() + self.busy_wait_s
                continue
            if st is None or (st == "done" and not is_done(study_dir, cid)):
                d = cell_dir(study_dir, cid)
                why = f"signal {-code}" if code < 0 else f"exit code {code}"
                what = "died" if st is None else "ended without writing the cell's rows"
                record_failure(d, f"the worker process {what} ({why}); see {d / LOG_FILE}", tail(d / LOG_FILE))
                st = "failed"
            q.status[cid] = st
            report(c, st, detail(study_dir, cid, st, c))


@dataclass
class _Queue:
    """The state of :meth:`LocalExecutor.run`: cells waiting, their worker processes (with their GPU slot),
    the free slots, the cells' statuses and when a busy cell may be tried again."""

    pending: list[Cell]
    free: list[list[str] | None]
    status: dict[str, str] = field(default_factory=dict)
    running: dict[str, tuple[subprocess.Popen, list[str] | None, Cell]] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)


def _stop_workers(running: dict[str, tuple[subprocess.Popen, list[str] | None, Cell]]) -> None:
    for proc, _, _ in running.values():  # Ctrl-C reached them too; give them time to stop cleanly
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    for proc, _, _ in running.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _worker_slots(workers: int | None, devices: int) -> tuple[int, list[list[str] | None]]:
    """The number of worker processes and each one's GPUs (``devices`` per cell; None: no GPU)."""
    if not devices:
        n_workers = 1 if workers is None else workers
        return n_workers, [None] * max(1, n_workers)
    gpus = visible_gpus()
    n = len(gpus) // devices
    if n < 1:
        raise StudyError(
            f"--devices {devices}: each cell needs {devices} GPU(s) but {len(gpus)} are visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    n_workers = n if workers is None else min(workers, n)  # default: one worker per GPU slot
    return n_workers, [gpus[i * devices : (i + 1) * devices] for i in range(max(1, n_workers))]


def detail(study_dir: Path, cell_id: str, status: str, cell: Cell | None = None) -> str:
    if status == "failed":
        f = cell_dir(study_dir, cell_id) / FAILED_FILE
        with contextlib.suppress(OSError, ValueError):
            return json.loads(f.read_text()).get("error", "").splitlines()[0][:300]
    if status == "skipped" and cell is not None and cell.depends_on:
        return f"its transfer source {cell.depends_on[0]} did not finish"
    return ""


__all__ = ["LocalExecutor", "Report", "detail", "die_with_parent", "is_done", "source_env", "visible_gpus"]
