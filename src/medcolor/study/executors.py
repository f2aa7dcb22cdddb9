"""Where cells run: worker processes on this machine (:mod:`medcolor.study.local`), or SLURM job arrays
through submitit (here).

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
import fcntl
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medcolor.study.cell import EXIT_CODES, run_cell
from medcolor.study.jobs import (
    JobRecord,
    JobState,
    accounting_problem,
    end_state,
    failure_message,
    queue_states,
    tail,
    wait_for_file,
)
from medcolor.study.layout import LOCK_FILE, LOG_FILE, CellLock, cell_dir, record_failure
from medcolor.study.local import LocalExecutor, Report, detail, is_done, source_env
from medcolor.study.plan import Cell, Plan
from medcolor.study.resources import Resources, time_problem
from medcolor.study.results import ROW_FILE, StudyError
from medcolor.utils import configure_logging, quiet_lightning

log = logging.getLogger("medcolor.study")
SUBMIT_LOCK = ".submit.lock"


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


@contextlib.contextmanager
def _submit_lock(study_dir: Path) -> Iterator[None]:
    """Serialises what runners of one study decide and submit (two runners never submit the same cell)."""
    fd = os.open(study_dir / SUBMIT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _OneSubmititLog(logging.Handler):
    """submitit's messages inside a cell's job, once, on the stdout/stderr of the moment (the cell's log):
    submitit's own configuration prints its warnings on stdout and stderr, and the root logger a third time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(f"submitit {record.levelname} ({time.strftime('%H:%M:%S')}) - {record.getMessage()}\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_submitit_logging() -> None:
    logger = logging.getLogger("submitit")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.addHandler(_OneSubmititLog())
    logger.propagate = False


class CellJob:
    """The function a SLURM job runs: one cell (picklable; requeued on timeout/preemption)."""

    def __call__(self, study_dir: str, cell_id: str, cwd: str, threads: int | None, devices: int, nodes: int) -> str:
        os.chdir(cwd)
        configure_logging()
        quiet_lightning()
        configure_submitit_logging()
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


@dataclass
class _Tracked:
    """A cell's job that this runner waits for (submitted now, or found queued from an earlier run)."""

    cell: Cell
    record: JobRecord
    job: Any = None  # the submitit job when this runner submitted it
    ended_at: float | None = None  # when the job was first seen over without a result


class SubmititExecutor:
    """Job arrays through submitit, one per dependency level (see the module docstring).

    Before submitting a cell it looks for the cell's earlier job (``job.json``) in the queue and for a
    process holding the cell's lock: a queued or running cell is waited for, never submitted twice.  A
    job that ends without a result is recorded with its end state (``CANCELLED by 0``, ``TIMEOUT``...).
    Job states come from ``squeue`` (and ``sacct`` for the cause), asked every ``poll_s`` seconds."""

    def __init__(
        self,
        resources: Resources | None = None,
        *,
        cluster: str = "slurm",
        threads: int | None = None,
        folder: str | os.PathLike | None = None,
        poll_s: float = 5.0,
        result_grace_s: float = 30.0,
    ) -> None:
        if cluster not in ("slurm", "local", "debug"):
            raise StudyError(f"unknown submitit cluster {cluster!r} (slurm, local or debug)")
        if cluster == "slurm" and not all(shutil.which(c) for c in ("sbatch", "srun", "squeue")):
            raise StudyError(
                "--executor slurm needs SLURM's sbatch, srun and squeue on PATH (run it on a cluster's login node); "
                "--executor submitit-local runs the same job arrays on this machine"
            )
        self.resources = resources or Resources()
        if time_problem(self.resources.time_min):
            raise StudyError(f"resources.time: {time_problem(self.resources.time_min)}")
        self.cluster, self.threads, self.folder, self.poll_s = cluster, threads, folder, poll_s
        self.result_grace_s = result_grace_s
        self.jobs: list[Any] = []
        self.accounting: str | None = None  # why sacct cannot tell how a job ended (None: it can)

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
        """Submit one job array for ``cells`` and record each cell's job (``job.json``); returns submitit
        jobs (in the order of ``cells``)."""
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
        now = time.time()
        for c, job in zip(cells, jobs, strict=True):
            p = job.paths
            rec = JobRecord(str(job.job_id), self.cluster, str(p.stdout), str(p.stderr), str(p.result_pickle), now)
            rec.write(cell_dir(study_dir, c.id))
        self.jobs += jobs
        return jobs

    def run(self, study_dir: Path, plan: Plan, todo: list[Cell], report: Report) -> dict[str, str]:
        study_dir = Path(study_dir).resolve()
        if self.cluster == "slurm":
            self.accounting = accounting_problem()
            if self.accounting:
                log.warning(
                    "SLURM accounting does not answer (%s): job states come from squeue alone; a job that "
                    "leaves the queue without a result is recorded as failed after %.0f s, with its end state "
                    "while slurmctld still knows it (MinJobAge)",
                    self.accounting,
                    self.result_grace_s,
                )
        todo_ids = {c.id for c in todo}
        status: dict[str, str] = {}
        for i, level in enumerate(plan.levels):
            cells = []
            for c in level:
                if c.id not in todo_ids:
                    continue
                if any(status.get(dep) in ("failed", "skipped") or not is_done(study_dir, dep) for dep in c.depends_on):
                    status[c.id] = "skipped"
                    report(c, "skipped", detail(study_dir, c.id, "skipped", c))
                else:
                    cells.append(c)
            if cells:
                self._run_level(study_dir, f"{plan.study}-L{i}", cells, status, report)
        return status

    # -- one dependency level: submit what is neither done, queued nor running elsewhere; wait for all
    def _run_level(self, study_dir: Path, name: str, cells: list[Cell], status: dict[str, str], report: Report) -> None:
        waiting = {c.id: c for c in cells}
        inflight: dict[str, _Tracked] = {}
        told: set[str] = set()
        while waiting:
            with _submit_lock(study_dir):
                new = self._adopt_or_pick(study_dir, waiting, inflight, told, report)
                if new:
                    for c, job in zip(new, self.submit(study_dir, new, name), strict=True):
                        inflight[c.id] = _Tracked(c, JobRecord.read(cell_dir(study_dir, c.id)), job)  # type: ignore[arg-type]
                        report(c, "submitted", f"{name}, job {job.job_id}")
            states = self._queue([t.record.job_id for t in inflight.values()])
            for cid, t in list(inflight.items()):
                st = self._finished(study_dir, t, states)
                if st is None:
                    continue
                del inflight[cid]
                if st == "busy":  # another process holds the cell: decide again (wait for it)
                    continue
                del waiting[cid]
                status[cid] = st
                report(t.cell, st, detail(study_dir, cid, st, t.cell))
            if waiting:
                time.sleep(self.poll_s)

    def _queue(self, job_ids: list[str]) -> dict[str, JobState] | None:
        if self.cluster != "slurm" or not job_ids:
            return {}
        return queue_states(job_ids)

    def _adopt_or_pick(
        self,
        study_dir: Path,
        waiting: dict[str, Cell],
        inflight: dict[str, _Tracked],
        told: set[str],
        report: Report,
    ) -> list[Cell]:
        """Cells to submit now; a cell whose earlier job is still queued is adopted (waited for), one that
        another process runs is left for later."""
        free = [c for cid, c in waiting.items() if cid not in inflight]
        records = {c.id: JobRecord.read(cell_dir(study_dir, c.id)) for c in free}
        ids = [r.job_id for r in records.values() if r and r.cluster == self.cluster == "slurm"]
        queued = self._queue(ids) or {}
        new = []
        for c in free:
            rec = records[c.id]
            q = queued.get(rec.job_id) if rec else None
            if self._settled(study_dir, c, rec, q, waiting, inflight, told, report):
                continue
            new.append(c)
        return new

    def _settled(
        self,
        study_dir: Path,
        c: Cell,
        rec: JobRecord | None,
        q: JobState | None,
        waiting: dict[str, Cell],
        inflight: dict[str, _Tracked],
        told: set[str],
        report: Report,
    ) -> bool:
        """Whether cell ``c`` needs no job now: done meanwhile, its earlier job ``rec`` still queued (``q``;
        adopted), or another process running it; False: submit it."""
        if is_done(study_dir, c.id):
            waiting.pop(c.id)
            report(c, "done", "finished by another runner")
        elif rec is not None and q is not None and q.active:
            inflight[c.id] = _Tracked(c, rec)
            report(c, "queued", f"its job {rec.job_id} ({q.describe()}), submitted by an earlier run: waiting for it")
        elif (holder := CellLock.holder(cell_dir(study_dir, c.id) / LOCK_FILE)) is not None:
            if c.id not in told:
                told.add(c.id)
                report(c, "running", f"elsewhere (pid {holder.get('pid')} on {holder.get('host')}): waiting for it")
        else:
            return False
        return True

    def _finished(self, study_dir: Path, t: _Tracked, states: dict[str, JobState] | None) -> str | None:
        """The cell's status when its job is over (``done``, ``failed``, ``busy``...), else None."""
        d = cell_dir(study_dir, t.cell.id)
        result = Path(t.record.result)
        if self.cluster != "slurm" and t.job is not None and not t.job.done():
            return None  # a local job: its process has not exited yet
        if result.exists():
            return self._result(d, t, result)
        may_run, q = self._slurm_state(t, states)
        if may_run:
            return None  # squeue did not answer, or the job is still queued/running
        if CellLock.holder(d / LOCK_FILE) is not None:
            return None  # over for SLURM, but its process still holds the cell (it is being killed)
        now = time.monotonic()
        t.ended_at = t.ended_at or now
        if now - t.ended_at < self.result_grace_s and self.cluster == "slurm" and q is None:
            return None  # gone from the queue: give the result file time to show up (NFS) before failing it
        if wait_for_file(result, 0 if now - t.ended_at >= self.result_grace_s else 5):
            return self._result(d, t, result)
        if is_done(study_dir, t.cell.id):
            return "done"
        return self._failed(d, t, q)

    def _slurm_state(self, t: _Tracked, states: dict[str, JobState] | None) -> tuple[bool, JobState | None]:
        """The state of a SLURM job in the queue (None: gone, or not SLURM) and whether it may still run
        (``states`` None: squeue did not answer)."""
        if self.cluster != "slurm":
            return False, None
        q = None if states is None else states.get(t.record.job_id)
        return states is None or (q is not None and q.active), q

    def _failed(self, d: Path, t: _Tracked, q: JobState | None) -> str:
        """A job that ended without a result: its failure recorded in the cell's directory ``d``."""
        state = end_state(t.record.job_id, q) if self.cluster == "slurm" else JobState(str(t.job.state))
        record_failure(
            d,
            failure_message(t.record, state, accounting=self.accounting),
            tail(t.record.stderr) or tail(t.record.stdout),
        )
        return "failed"

    def _result(self, d: Path, t: _Tracked, result: Path) -> str:
        from submitit.core.utils import pickle_load

        try:
            outcome, value = pickle_load(result)  # written by the cell's own job (submitit moves it in whole)
        except Exception as exc:
            record_failure(d, f"the job {t.record.job_id} left an unreadable result file {result}: {exc}")
            return "failed"
        if outcome == "success" and value in EXIT_CODES:
            st = str(value)
            if st == "done" and not (d / ROW_FILE).is_file():
                record_failure(
                    d, f"the job {t.record.job_id} ended without writing the cell's rows", tail(d / LOG_FILE)
                )
                return "failed"
            if st == "skipped":
                record_failure(d, f"the job {t.record.job_id} found a transfer source of the cell not done")
                return "failed"
            return st
        trace = str(value)
        last = [line for line in trace.strip().splitlines() if line.strip()]
        record_failure(d, f"the job {t.record.job_id} raised {last[-1] if last else outcome}", trace)
        return "failed"


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
        res = replace(resources) if resources else Resources()  # the caller's (a spec's) stays as it is
        if devices:
            res.gpus = devices
        return SubmititExecutor(res, cluster="slurm" if name == "slurm" else "local", threads=threads)
    raise StudyError(f"unknown executor {name!r}: local, slurm or submitit-local")


def spec_executor(
    spec: Any,
    name: str | None = None,
    *,
    workers: int | None = None,
    devices: int | None = None,
    threads: int | None = None,
) -> LocalExecutor | SubmititExecutor:
    """The executor of a study spec: its ``executor:`` section (``name``, default local; ``workers``,
    ``devices``, ``threads``) and its ``resources:``, each value given here taking the spec's place."""
    cfg = spec.executor
    return make_executor(
        name or cfg.get("name", "local"),
        workers=cfg.get("workers") if workers is None else workers,
        devices=cfg.get("devices") if devices is None else devices,
        threads=cfg.get("threads") if threads is None else threads,
        resources=spec.resources,
    )


__all__ = [
    "CellJob",
    "LocalExecutor",
    "SubmititExecutor",
    "configure_submitit_logging",
    "make_executor",
    "spec_executor",
    "submitit_parameters",
]
