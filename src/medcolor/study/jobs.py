"""The SLURM jobs of a study's cells: which job runs a cell, and what SLURM says about it.

The runner writes ``job.json`` into a cell's folder when it submits the cell (job id, submitit's log and
result files).  A later ``study run`` reads it to find a job that is still queued or running (and waits
for it instead of submitting a duplicate), and ``study status`` shows the job's id and state.

The queue is read with ``squeue --states=all`` (pending, running and the jobs slurmctld still keeps for
``MinJobAge`` after they ended, with their end state), the cause of a job that ended without a result
with ``sacct`` when SLURM accounting is on (``CANCELLED by 0``, ``TIMEOUT``, ``OUT_OF_MEMORY``...).
Neither waits on ``sacct``: without accounting, a job that left the queue is over.

``wall.json`` counts a cell's training time over all its attempts (a timed-out job requeued, a cancelled
one resumed): :func:`open_attempt` / :func:`close_attempt` around each.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medcolor.study.provenance import git_commit
from medcolor.utils import write_json

log = logging.getLogger("medcolor.study")

JOB_FILE = "job.json"
#: SLURM job states of a job that is not over (it may still write the cell's result)
ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "RESV_DEL_HOLD",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "SUSPENDED",
    }
)
#: what an end state means for a cell, and what to do about it
CAUSES = {
    "CANCELLED": "the job was cancelled (scancel or an administrator); re-run the study to resume the cell",
    "TIMEOUT": "the job reached its time limit and was not requeued (submitit requeues a job 3 times at most); "
    "raise resources.time",
    "OUT_OF_MEMORY": "the job ran out of memory; raise resources.memory",
    "NODE_FAIL": "the job's node failed; re-run the study to resume the cell",
    "PREEMPTED": "the job was preempted and not requeued; re-run the study to resume the cell",
    "BOOT_FAIL": "the job's node failed to boot; re-run the study",
    "DEADLINE": "the job reached its deadline",
    "FAILED": "the job's script failed before the cell could report (see submitit's log below)",
    "COMPLETED": "the job ended without writing submitit's result file",
}
SQUEUE_TIMEOUT_S = 60


@dataclass
class JobRecord:
    """One submission of a cell (``job.json``)."""

    job_id: str
    cluster: str
    stdout: str
    stderr: str
    result: str
    submitted: float

    def write(self, cell_dir: Path) -> None:
        write_json(cell_dir / JOB_FILE, asdict(self))

    @staticmethod
    def read(cell_dir: Path) -> JobRecord | None:
        """The cell's last submission, or None (no record, or a damaged one: then it is not trusted)."""
        try:
            d = json.loads((cell_dir / JOB_FILE).read_text())
            return JobRecord(**{k: d[k] for k in JobRecord.__dataclass_fields__})
        except (OSError, ValueError, TypeError, KeyError):
            return None


@dataclass
class JobState:
    """A job's state as SLURM reports it: ``state`` is the base state (``CANCELLED``), ``text`` the whole
    of it (``CANCELLED by 0``), ``reason`` squeue's (why it is pending: ``Resources``), ``exit_code``
    sacct's (``0:9``: exit status 0, signal 9)."""

    state: str
    text: str = ""
    reason: str = ""
    exit_code: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def describe(self) -> str:
        extra = f" ({self.reason})" if self.reason and self.reason not in ("None", "0:0") else ""
        return f"{self.text or self.state}{extra}"


def _run(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", cmd[0], exc)
        return None
    if p.returncode != 0:
        log.debug("%s failed (exit %d): %s", " ".join(cmd), p.returncode, p.stderr.strip())
        return None
    return p.stdout


def queue_states(job_ids: list[str]) -> dict[str, JobState] | None:
    """``squeue --states=all`` for these jobs (array tasks one by one): the jobs slurmctld knows, with their
    state; None when squeue could not be asked (no SLURM here, or the controller does not answer)."""
    if not job_ids:
        return {}
    out = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(sorted(set(job_ids)))])
    if out is None:
        return None
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = JobState(parts[1], parts[1], parts[2])
    return states


def accounting_states(job_ids: list[str]) -> dict[str, JobState]:
    """``sacct`` for these jobs: the whole end state (``CANCELLED by 0``) and the exit code; empty
    without SLURM accounting."""
    if not job_ids:
        return {}
    mains = sorted({j.split("_")[0] for j in job_ids})
    out = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(mains)])
    states = {}
    for line in (out or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[1]:
            states[parts[0]] = JobState(parts[1].split()[0], parts[1], exit_code=parts[2])
    return states


def accounting_problem() -> str | None:
    """Why SLURM accounting cannot tell how jobs ended (``sacct``'s own message), or None when it can."""
    if not shutil.which("sacct"):
        return "there is no sacct command"
    try:
        p = subprocess.run(
            ["sacct", "-n", "-X", "-o", "JobID", "-S", "now"],
            capture_output=True,
            text=True,
            timeout=SQUEUE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sacct failed: {exc}"
    if p.returncode != 0:
        return " ".join((p.stderr or p.stdout or f"sacct exited with {p.returncode}").split())
    return None


def end_state(job_id: str, queued: JobState | None) -> JobState | None:
    """How a job that is no longer active ended: sacct's account when there is one, else squeue's."""
    acct = accounting_states([job_id]).get(job_id)
    return acct if acct is not None and acct.state not in ACTIVE else queued


def failure_message(record: JobRecord, state: JobState | None, *, accounting: str | None) -> str:
    """The error recorded for a cell whose job ended without a result: the job, its end state and what
    the state means."""
    if state is None:
        why = (
            f"SLURM no longer knows it and its end state is unknown ({accounting}: without SLURM accounting "
            "slurmctld keeps an ended job only for MinJobAge)"
            if accounting
            else "SLURM reports no end state for it"
        )
        return f"the SLURM job {record.job_id} ended without a result: {why}; see {record.stderr}"
    code = f", exit code {state.exit_code}" if state.exit_code and state.exit_code != "0:0" else ""
    cause = CAUSES.get(state.state, "see submitit's log")
    return f"the SLURM job {record.job_id} ended {state.text or state.state}{code} without a result: {cause}"


def add_job_states(cell_dirs: dict[str, Path], states: dict[str, Any]) -> None:
    """For ``study status``: the SLURM job id and state in the detail of each pending or running cell whose
    job is queued or running (``states``: cell id -> a state with ``.state`` and ``.detail``); one squeue."""
    records = {
        cid: r
        for cid, d in cell_dirs.items()
        if states[cid].state in ("pending", "running") and (r := JobRecord.read(d)) and r.cluster == "slurm"
    }
    if not records:
        return
    queued = queue_states([r.job_id for r in records.values()]) or {}
    for cid, r in records.items():
        q = queued.get(r.job_id)
        if q is not None and q.active:
            s = states[cid]
            s.detail = f"SLURM job {r.job_id}: {q.describe()}" + (f"; {s.detail}" if s.detail else "")


def read_wall(path: Path) -> dict:
    """``{"wall_s": seconds over all attempts, "attempts": [{"start", "s", "git_commit"}], "finished": bool}``."""
    try:
        w = json.loads(path.read_text())
    except FileNotFoundError:
        return {"wall_s": 0.0, "attempts": [], "finished": False}
    except (OSError, ValueError):
        w = None
    if not isinstance(w, dict) or not isinstance(w.get("wall_s"), int | float):
        # a measurement that cannot be rebuilt; the run itself is fine
        log.warning("%s is damaged: the cell's wall_s is recorded as NaN", path)
        return {"wall_s": float("nan"), "attempts": [], "finished": True}
    if "attempts" not in w:  # written by a medcolor that kept only the finished attempt
        return {"wall_s": float(w["wall_s"]), "attempts": [{"s": float(w["wall_s"])}], "finished": True}
    return w


def open_attempt(path: Path, run_dir: Path) -> None:
    """Start an attempt.  One that never closed (its process was killed: scancel, SIGKILL) counts until
    the last file its training wrote in the run directory's stage folders."""
    w = read_wall(path)
    for a in w["attempts"]:
        if "s" not in a:
            last = max((f.stat().st_mtime for f in run_dir.glob("*/**/*") if f.is_file()), default=a["start"])
            a["s"] = round(max(0.0, last - a["start"]), 3)
    w["attempts"].append({"start": time.time(), "git_commit": git_commit()})  # the code this attempt runs
    w["finished"] = False
    w["wall_s"] = round(sum(a.get("s", 0.0) for a in w["attempts"]), 3)
    write_json(path, w)


def close_attempt(path: Path, *, finished: bool) -> float:
    """End the current attempt; returns the wall time over all attempts."""
    w = read_wall(path)
    if w["attempts"] and "s" not in w["attempts"][-1]:
        w["attempts"][-1]["s"] = round(time.time() - w["attempts"][-1]["start"], 3)
    w["finished"] = finished
    w["wall_s"] = round(sum(a.get("s", 0.0) for a in w["attempts"]), 3)
    write_json(path, w)
    return w["wall_s"]


@contextlib.contextmanager
def timed_attempt(path: Path, run_dir: Path, *, record: bool = True) -> Iterator[None]:
    """One attempt at training a cell, its time added to ``wall.json`` however it ends (``finished``
    only when the block returns)."""
    if record:
        open_attempt(path, run_dir)
    finished = False
    try:
        yield
        finished = True
    finally:
        if record:
            close_attempt(path, finished=finished)


def tail(path: str | os.PathLike, n: int = 3000) -> str:
    """The last ``n`` characters of a text file ('' when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def wait_for_file(path: Path, seconds: float) -> bool:
    """Whether ``path`` appears within ``seconds`` (a result written on another node may show late on NFS)."""
    deadline = time.monotonic() + seconds
    while True:
        if path.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(1.0, seconds))


__all__ = [
    "ACTIVE",
    "CAUSES",
    "JOB_FILE",
    "JobRecord",
    "JobState",
    "accounting_problem",
    "accounting_states",
    "add_job_states",
    "close_attempt",
    "end_state",
    "failure_message",
    "open_attempt",
    "queue_states",
    "read_wall",
    "timed_attempt",
]
