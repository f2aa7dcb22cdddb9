"""Where cells run: worker processes on this machine, or SLURM job arrays through submitit.

* :class:`LocalExecutor` — up to ``workers`` cells at a time, each in a fresh Python process
  (``python -m medcolor.study.worker DIR CELL``) whose output goes to the cell's ``log.txt``.  A cell
  starts as soon as its transfer source is done.  On GPUs, ``devices`` GPUs per cell: each worker gets its
  own ``CUDA_VISIBLE_DEVICES`` slice (several GPUs per cell: Lightning DDP inside the cell).  On CPUs each
  worker gets ``threads`` torch threads (default: the cores divided among the workers — oversubscribed
  threads make small models tens of times slower).  Workers die with the runner (``PR_SET_PDEATHSIG``), so
  a killed runner leaves no orphan training behind, and a re-run resumes the interrupted cells.
  ``workers=0`` runs the cells one after the other inside this process (for debugging).
* :class:`SubmititExecutor` — one job array per dependency level, submitted with submitit
  (``cluster="slurm"``; ``"local"`` runs the same jobs as local processes with submitit's
  ``LocalExecutor``).  Resources come from the spec's ``resources:`` (partition, gpus per node, time,
  memory, nodes, cpus...); a cell that asks for several GPUs or nodes runs one task per GPU and Lightning
  DDP picks up the SLURM environment.  Jobs are requeued on timeout/preemption (submitit's
  ``Checkpointable``) and resume from the last checkpoint.  Keep the runner alive while the study runs
  (tmux, or a small CPU job); if it dies, re-run the command: finished cells are kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from medcolor.study.plan import Cell, Plan
from medcolor.study.resources import Resources
from medcolor.study.results import ROW_FILE, StudyError
from medcolor.study.runner import (
    EXIT_CODES,
    FAILED_FILE,
    LOCK_FILE,
    LOG_FILE,
    CellLock,
    cell_dir,
    record_failure,
    run_cell,
)

Report = Callable[..., None]
_STATUS = {v: k for k, v in EXIT_CODES.items()}


def _is_done(study_dir: Path, cell_id: str) -> bool:
    return (cell_dir(study_dir, cell_id) / ROW_FILE).is_file()


def _tail(path: Path, n: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


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
    root = str(Path(__file__).resolve().parents[2])  # src/medcolor/study/executors.py -> src
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
        if devices:
            gpus = visible_gpus()
            n = len(gpus) // devices
            if n < 1:
                raise StudyError(
                    f"--devices {devices}: each cell needs {devices} GPU(s) but {len(gpus)} are visible "
                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
                )
            self.workers = n if workers is None else min(workers, n)  # default: one worker per GPU slot
            self.slots = [gpus[i * devices : (i + 1) * devices] for i in range(max(1, self.workers))]
        else:
            self.workers = 1 if workers is None else workers
            self.slots = [None] * max(1, self.workers)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = threads or (None if devices else max(1, cpus // max(1, self.workers)))
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
                elif any(not _is_done(study_dir, dep) for dep in c.depends_on):
                    continue
                else:
                    status[c.id] = run_cell(study_dir, c.id, threads=self.threads, capture=True)
                    if status[c.id] == "busy":
                        continue
                remaining.remove(c)
                report(c, status[c.id], _detail(study_dir, c.id, status[c.id]))
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
        pending = list(todo)
        status: dict[str, str] = {}
        running: dict[str, tuple[subprocess.Popen, list[str] | None, Cell]] = {}
        free = list(self.slots)
        not_before: dict[str, float] = {}
        try:
            while pending or running:
                now = time.monotonic()
                for c in list(pending):
                    if not free:
                        break
                    if any(status.get(dep) in ("failed", "skipped") for dep in c.depends_on):
                        pending.remove(c)
                        status[c.id] = "skipped"
                        report(c, "skipped", _detail(study_dir, c.id, "skipped", c))
                        continue
                    if any(not _is_done(study_dir, dep) for dep in c.depends_on) or not_before.get(c.id, 0) > now:
                        continue
                    if _is_done(study_dir, c.id):  # finished by another runner meanwhile
                        pending.remove(c)
                        status[c.id] = "done"
                        report(c, "done", "finished by another runner")
                        continue
                    if CellLock.holder(cell_dir(study_dir, c.id) / LOCK_FILE) is not None:
                        not_before[c.id] = now + self.busy_wait_s  # another runner has it: look again later
                        continue
                    slot = free.pop(0)
                    running[c.id] = (self._start(study_dir, c, slot), slot, c)
                    pending.remove(c)
                for cid, (proc, slot, c) in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del running[cid]
                    free.append(slot)
                    st = _STATUS.get(code)
                    if st == "busy":
                        pending.append(c)
                        not_before[cid] = time.monotonic() + self.busy_wait_s
                        continue
                    if st is None or (st == "done" and not _is_done(study_dir, cid)):
                        d = cell_dir(study_dir, cid)
                        why = f"signal {-code}" if code < 0 else f"exit code {code}"
                        what = "died" if st is None else "ended without writing the cell's rows"
                        record_failure(d, f"the worker process {what} ({why}); see {d / LOG_FILE}", _tail(d / LOG_FILE))
                        st = "failed"
                    status[cid] = st
                    report(c, st, _detail(study_dir, cid, st, c))
                time.sleep(self.poll_s)
        except BaseException:
            for proc, _, _ in running.values():  # Ctrl-C reached them too; give them time to stop cleanly
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 30
            for proc, _, _ in running.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            raise
        return status


def _detail(study_dir: Path, cell_id: str, status: str, cell: Cell | None = None) -> str:
    if status == "failed":
        f = cell_dir(study_dir, cell_id) / FAILED_FILE
        with contextlib.suppress(OSError, ValueError):
            import json

            return json.loads(f.read_text()).get("error", "").splitlines()[0][:300]
    if status == "skipped" and cell is not None and cell.depends_on:
        return f"its transfer source {cell.depends_on[0]} did not finish"
    return ""


# ----------------------------------------------------------------------------- submitit (SLURM)
@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    old = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


class CellJob:
    """The function a SLURM job runs: one cell (picklable; requeued on timeout/preemption)."""

    def __call__(self, study_dir: str, cell_id: str, cwd: str, threads: int | None, devices: int, nodes: int) -> str:
        from medcolor.study.worker import configure_cell_logging

        os.chdir(cwd)
        configure_cell_logging()
        return run_cell(study_dir, cell_id, threads=threads, devices=devices, nodes=nodes, capture=True)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submitit_parameters(resources: Resources, cluster: str, name: str) -> dict[str, Any]:
    """submitit ``AutoExecutor.update_parameters`` arguments for the spec's resources."""
    r = resources
    tasks = max(1, r.gpus) if r.gpus > 1 or r.nodes > 1 else 1  # one task per GPU: Lightning DDP under SLURM
    p: dict[str, Any] = {
        "name": name,
        "timeout_min": r.time_min,
        "nodes": r.nodes,
        "tasks_per_node": tasks,
    }
    if r.gpus:
        p["gpus_per_node"] = r.gpus
    if r.cpus:
        p["cpus_per_task"] = r.cpus
    if r.memory_gb is not None:
        p["mem_gb"] = r.memory_gb
    if cluster == "slurm":
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(r, key):
                p[f"slurm_{key}"] = getattr(r, key)
        if r.setup:
            p["slurm_setup"] = list(r.setup)
    return p


class SubmititExecutor:
    """Job arrays through submitit, one per dependency level (see the module docstring)."""

    def __init__(
        self,
        resources: Resources | None = None,
        *,
        cluster: str = "slurm",
        threads: int | None = None,
        folder: str | os.PathLike | None = None,
        poll_s: float = 5.0,
    ) -> None:
        if cluster not in ("slurm", "local", "debug"):
            raise StudyError(f"unknown submitit cluster {cluster!r} (slurm, local or debug)")
        if cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise StudyError(
                "--executor slurm needs SLURM's sbatch and srun on PATH (run it on a cluster's login node); "
                "--executor submitit-local runs the same job arrays on this machine"
            )
        self.resources = resources or Resources()
        self.cluster, self.threads, self.folder, self.poll_s = cluster, threads, folder, poll_s
        self.jobs: list[Any] = []

    def describe(self) -> str:
        r = self.resources
        what = f"{r.nodes} node(s) x {r.gpus} GPU(s)" if r.gpus else f"{r.nodes} node(s), CPU"
        part = f" on partition {r.partition}" if r.partition else ""
        return f"submitit ({self.cluster}), one job array per level, {what}{part}, {r.time_min} min per cell"

    def make_executor(self, study_dir: Path, name: str) -> Any:
        import submitit

        folder = Path(self.folder) if self.folder else study_dir / "submitit"
        ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=self.cluster)
        ex.update_parameters(**submitit_parameters(self.resources, self.cluster, name))
        return ex

    def submit(self, study_dir: Path, cells: list[Cell], name: str) -> list[Any]:
        """Submit one job array for ``cells``; returns submitit jobs (in the order of ``cells``)."""
        ex = self.make_executor(study_dir, name)
        n = len(cells)
        devices = self.resources.gpus if self.resources.gpus > 1 or self.resources.nodes > 1 else 0
        with _environ(source_env()):  # sbatch and submitit's local jobs take the environment along
            jobs = ex.map_array(
                CellJob(),
                [str(study_dir)] * n,
                [c.id for c in cells],
                [os.getcwd()] * n,
                [self.threads] * n,
                [devices] * n,
                [self.resources.nodes] * n,
            )
        self.jobs += jobs
        return jobs

    def run(self, study_dir: Path, plan: Plan, todo: list[Cell], report: Report) -> dict[str, str]:
        study_dir = Path(study_dir).resolve()
        todo_ids = {c.id for c in todo}
        status: dict[str, str] = {}
        for i, level in enumerate(plan.levels):
            cells = []
            for c in level:
                if c.id not in todo_ids:
                    continue
                if any(
                    status.get(dep) in ("failed", "skipped") or not _is_done(study_dir, dep) for dep in c.depends_on
                ):
                    status[c.id] = "skipped"
                    report(c, "skipped", _detail(study_dir, c.id, "skipped", c))
                else:
                    cells.append(c)
            if not cells:
                continue
            jobs = self.submit(study_dir, cells, f"{plan.study}-L{i}")
            for c, job in zip(cells, jobs, strict=True):
                report(c, "submitted", f"dependency level {i}, job {job.job_id}")
            for c, job in zip(cells, jobs, strict=True):
                try:
                    st = job.result()
                except Exception as exc:  # the job itself died: timeout without requeue, OOM, node failure...
                    st = "failed"
                    d = cell_dir(study_dir, c.id)
                    if not (d / FAILED_FILE).is_file() and not _is_done(study_dir, c.id):
                        msg = str(exc).strip().splitlines()
                        record_failure(d, f"the job {job.job_id} failed: {msg[0] if msg else type(exc).__name__}")
                if st == "done" and not _is_done(study_dir, c.id):
                    st = "failed"
                status[c.id] = st
                report(c, st, _detail(study_dir, c.id, st, c))
        return status


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    devices: int | None = None,
    threads: int | None = None,
    resources: Resources | None = None,
) -> LocalExecutor | SubmititExecutor:
    if name == "local":
        return LocalExecutor(workers=workers, devices=devices or 0, threads=threads)
    if name in ("slurm", "submitit-local"):
        res = resources or Resources()
        if devices:
            res.gpus = devices
        return SubmititExecutor(res, cluster="slurm" if name == "slurm" else "local", threads=threads)
    raise StudyError(f"unknown executor {name!r}: local, slurm or submitit-local")


__all__ = [
    "CellJob",
    "LocalExecutor",
    "SubmititExecutor",
    "die_with_parent",
    "make_executor",
    "submitit_parameters",
    "visible_gpus",
]
