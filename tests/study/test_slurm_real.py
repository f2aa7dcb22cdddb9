"""The SLURM executor on a real SLURM (``pytest -m slurm``; CI starts one with ``../shared/slurm/start-slurm.sh``).

A tiny synthetic study through ``medcolor study run --executor slurm``: a re-run while the jobs are queued
waits for them instead of submitting them again; a cell whose job reaches its time limit is requeued, one
whose job is cancelled is recorded with the cause and resumed by a re-run, and the result is bit-identical
to the local executor's; without SLURM accounting a cancelled job is recorded, not waited for forever.

Skipped (with the reason) where no SLURM answers; ``MEDCOLOR_REQUIRE_SLURM=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from study_helpers import BASE, medcolor_cmd, subprocess_env, write_spec
from study_helpers import CHAIN as HELPER_CHAIN

from medcolor.study.jobs import JobRecord
from medcolor.study.results import read_results

pytestmark = pytest.mark.slurm

#: the two-cell chain, each cell in one thread
CHAIN = HELPER_CHAIN + "executor: {{threads: 1}}\n"

#: one cell long enough to be interrupted twice (its iterations fit this machine's speed)
LONG = (
    "name: long\n"
    # lr 0.01: at BASE's 0.05 the random-init E's BN statistics overflow after ~400 iterations, and a fast
    # machine calibrates more than that (the training diverged, the test failed on speed alone)
    + BASE.replace("lr: 0.05, iterations: 4, val_every: 2", "lr: 0.01, iterations: {iterations}, val_every: 20")
    + """\
cells:
  long: {{stages: color-module}}
resources: {{time: 10, cpus: 1}}
executor: {{threads: 1}}
"""
)


def slurm_problem() -> str | None:
    """Why no SLURM can run the tests here (None when one answers with a usable node)."""
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "no SLURM on this machine (sinfo/sbatch not on PATH); CI starts one with ../shared/slurm/start-slurm.sh"
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = p.stdout.split()
    if p.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        return f"SLURM has no usable node (sinfo: {(p.stdout + p.stderr).strip() or p.returncode})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = slurm_problem()
    if problem:
        if os.environ.get("MEDCOLOR_REQUIRE_SLURM") == "1":
            pytest.fail(f"MEDCOLOR_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def start_runner(spec: Path, out: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            medcolor_cmd("study", "run", str(spec), "-o", str(out), "--executor", "slurm"),
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env or subprocess_env(),
        )


def wait_for(what: str, check, timeout: float, *logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    text = "\n".join(f"--- {p}\n{p.read_text()[-4000:]}" for p in logs if p.is_file())
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{text}")


def cell_dir(out: Path, name: str) -> Path:
    found = sorted((out / "cells").glob(f"{name}_*"))
    return found[0] if found else out / "cells" / f"{name}_?"


def queue_state(job_id: str) -> str:
    return sh("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r").strip()


def finish(proc: subprocess.Popen, log: Path, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the runner did not finish in {timeout:.0f} s\n{log.read_text()[-4000:]}") from None


@pytest.fixture
def blocker(slurm):
    """A job that holds the whole node, so that the study's jobs stay queued until it is cancelled."""
    job = sh(
        "sbatch", "--parsable", "--exclusive", "-J", "medcolor-test-blocker", "-o", "/dev/null", "--wrap", "sleep 900"
    )
    job = job.strip().split(";")[0]
    wait_for("the blocker job to run", lambda: queue_state(job).startswith("RUNNING"), 60)
    yield job
    subprocess.run(["scancel", job], check=False)


def test_rerun_while_queued_waits_for_the_jobs_and_submits_nothing_twice(blocker, tmp_path, synthetic_root):
    spec = write_spec(tmp_path / "chain.yaml", CHAIN, synthetic_root)
    out, log_a, log_b = tmp_path / "chain", tmp_path / "runner-a.txt", tmp_path / "runner-b.txt"
    a = start_runner(spec, out, log_a)
    rec = wait_for("the first runner to submit", lambda: JobRecord.read(cell_dir(out, "source")), 120, log_a)
    assert queue_state(rec.job_id).startswith("PENDING"), queue_state(rec.job_id)
    a.kill()  # the runner's session is lost; its job stays queued
    a.wait()

    status = subprocess.run(
        medcolor_cmd("study", "status", str(out)), capture_output=True, text=True, env=subprocess_env()
    )
    assert status.returncode == 0, status.stderr
    assert f"SLURM job {rec.job_id}: PENDING" in status.stdout, status.stdout  # not a plain "pending"

    b = start_runner(spec, out, log_b)
    wait_for(
        "the second runner to find the queued job",
        lambda: "submitted by an earlier run" in log_b.read_text(),
        120,
        log_b,
    )
    subprocess.run(["scancel", blocker], check=True)
    assert finish(b, log_b, 600) == 0, log_b.read_text()

    assert JobRecord.read(cell_dir(out, "source")).job_id == rec.job_id  # waited for, not submitted again
    jobs = sorted(p.name for p in (out / "submitit").iterdir() if p.is_dir())
    assert len(jobs) == 2, jobs  # one job per cell
    text = log_b.read_text()
    assert f"its job {rec.job_id} (PENDING" in text and "2 done" in text, text
    df = read_results(out)
    assert df["cell"].nunique() == 2
    source_log = (cell_dir(out, "source") / "log.txt").read_text()
    assert source_log.count("=== ") == 2, source_log  # one attempt: its start and end lines


def test_without_accounting_a_cancelled_job_is_recorded_not_waited_for(blocker, tmp_path, synthetic_root):
    """sacct answering like a SLURM without accounting: the runner says so and reads the end from squeue."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    (fake / "sacct").chmod(0o755)
    env = subprocess_env()
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    spec = write_spec(tmp_path / "chain.yaml", CHAIN, synthetic_root)
    out, log = tmp_path / "chain", tmp_path / "runner.txt"
    t0 = time.monotonic()
    a = start_runner(spec, out, log, env)
    rec = wait_for("the runner to submit", lambda: JobRecord.read(cell_dir(out, "source")), 120, log)
    subprocess.run(["scancel", rec.job_id], check=True)
    assert finish(a, log, 300) == 1, log.read_text()
    assert time.monotonic() - t0 < 240
    text = log.read_text()
    assert "SLURM accounting does not answer (sacct: error: Slurm accounting storage is disabled)" in text, text
    failed = json.loads((cell_dir(out, "source") / "FAILED.json").read_text())
    assert f"the SLURM job {rec.job_id} ended CANCELLED without a result" in failed["error"], failed
    assert "1 failed, 1 skipped" in text, text


def iterations_for(seconds: float, tmp_path: Path, root: Path) -> int:
    """Iterations of the long cell that take about ``seconds`` to train on this machine (the same count
    runs locally and on SLURM, so the comparison stays exact however fast the machine is)."""
    from medcolor.study.executors import LocalExecutor
    from medcolor.study.runner import run_study

    spec = write_spec(tmp_path / "calibrate.yaml", LONG.replace("{iterations}", "40"), root)
    run_study(spec, tmp_path / "calibrate", executor=LocalExecutor(workers=0, threads=1))
    wall = json.loads((cell_dir(tmp_path / "calibrate", "long") / "wall.json").read_text())["wall_s"]
    return int(min(20000, max(100, seconds / (wall / 40))) // 20 * 20)


def run_seconds(job_id: str) -> int:
    """How long the job has been running (squeue's ``%M``: ``M:SS``, ``H:MM:SS`` or ``D-HH:MM:SS``)."""
    text = sh("squeue", "-h", "-j", job_id, "-o", "%M").strip()
    days, _, rest = text.rpartition("-")
    secs = 0
    for part in rest.split(":"):
        secs = secs * 60 + int(part)
    return secs + int(days or 0) * 86400


def test_timeout_requeues_and_scancel_is_recorded_and_resumed_bit_identical_to_local(slurm, tmp_path, synthetic_root):
    n = iterations_for(90, tmp_path, synthetic_root)
    spec = write_spec(tmp_path / "long.yaml", LONG.replace("{iterations}", str(n)), synthetic_root)
    out, ref = tmp_path / "long", tmp_path / "ref"
    log_a, log_b, log_ref = tmp_path / "runner-a.txt", tmp_path / "runner-b.txt", tmp_path / "local.txt"
    with open(log_ref, "wb") as f:  # the reference, beside the SLURM run (one CPU each)
        local = subprocess.Popen(
            medcolor_cmd("study", "run", str(spec), "-o", str(ref), "--executor", "local", "--workers", "0"),
            stdout=f,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
        )
    a = start_runner(spec, out, log_a)
    d = wait_for(
        "the runner to submit",
        lambda: cell_dir(out, "long") if (cell_dir(out, "long") / "job.json").is_file() else None,
        120,
        log_a,
    )
    job = JobRecord.read(d).job_id
    cell_log = d / "log.txt"

    # the time limit.  Once the cell trains (its first checkpoint), the test lowers the job's limit as an
    # administrator can, so that it comes now rather than in 10 min: SLURM sends submitit's SIGUSR2 90 s
    # before it (up to 60 s earlier), submitit checkpoints the cell and requeues the job
    wait_for("the first checkpoint", lambda: list(d.glob("*/checkpoints/last.ckpt")), 300, cell_log, log_a)
    sh("scontrol", "update", f"jobid={job}", f"timelimit={math.ceil((run_seconds(job) + 45) / 60)}")
    wait_for("the requeue", lambda: "Requeued job" in cell_log.read_text(), 240, cell_log, log_a)
    wait_for("the requeued job to be pending", lambda: queue_state(job).startswith("PENDING"), 60)
    # its limit back to the spec's, and no 2-minute hold before it restarts (SLURM's BeginTime on requeue)
    sh("scontrol", "update", f"jobid={job}", "timelimit=10", "starttime=now")

    # the second attempt: cancel it once it has saved a checkpoint of its own
    wait_for("the second attempt", lambda: cell_log.read_text().count(f"=== {time.strftime('%Y')}") >= 2, 180, cell_log)
    started = time.time()
    last = next(d.glob("[0-9]*-*")) / "checkpoints" / "last.ckpt"
    wait_for(
        "a checkpoint of the second attempt", lambda: last.is_file() and last.stat().st_mtime > started, 180, cell_log
    )
    subprocess.run(["scancel", job], check=True)
    assert finish(a, log_a, 300) == 1, log_a.read_text()
    failed = json.loads((d / "FAILED.json").read_text())
    # sacct says "CANCELLED by <uid>"; squeue -t all (when sacct has not caught up) says "CANCELLED"
    assert re.search(rf"the SLURM job {job} ended CANCELLED( by \d+)? without a result", failed["error"]), failed
    assert "re-run the study to resume the cell" in failed["error"]
    assert "failed: the SLURM job" in log_a.read_text()

    b = start_runner(spec, out, log_b)  # resumes the cancelled cell from its checkpoint
    assert finish(b, log_b, 600) == 0, log_b.read_text()
    assert finish(local, log_ref, 600) == 0, log_ref.read_text()

    text = cell_log.read_text()
    assert "Caught signal SIGUSR2 on" in text and "this job is timed-out" in text, text
    assert text.count("Caught signal SIGUSR2") == 1, text  # submitit's messages once each
    assert text.count("Requeued job") == 1
    assert "resum" in text.lower()
    wall = json.loads((d / "wall.json").read_text())
    assert len(wall["attempts"]) == 3 and wall["finished"], wall
    assert wall["wall_s"] == pytest.approx(sum(a["s"] for a in wall["attempts"]), abs=0.01)
    slurm_df, local_df = read_results(out), read_results(ref)
    assert slurm_df["wall_s"].iloc[0] == pytest.approx(wall["wall_s"], abs=0.01)
    cols = ["label", "test_auc", "val_auc", "test_ci_low", "test_ci_high"]
    pd.testing.assert_frame_equal(
        slurm_df[cols].reset_index(drop=True), local_df[cols].reset_index(drop=True), check_exact=True
    )
    pred = sorted(d.glob("test/*.csv"))
    assert pred, sorted(p.name for p in d.rglob("*"))
    for p in pred:
        assert p.read_bytes() == (cell_dir(ref, "long") / "test" / p.name).read_bytes(), p.name
