"""The SLURM executor's bookkeeping without a SLURM: job records, end states, time limits, wall time over
attempts, an unfinished study never "ok" (the same paths run on a real SLURM in test_slurm_real.py)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import pytest

from medcolor.study.executors import SubmititExecutor, configure_submitit_logging
from medcolor.study.jobs import (
    JobRecord,
    JobState,
    add_job_states,
    close_attempt,
    failure_message,
    open_attempt,
    queue_states,
    read_wall,
)
from medcolor.study.plan import Cell
from medcolor.study.provenance import git_commit
from medcolor.study.results import StudyError
from medcolor.study.runner import CellState, StudyResult, summary_lines
from medcolor.study.spec import Resources, SpecError, parse_spec

SPEC = """\
name: t
base: {{data: {{dataset: synthetic, root: /data}}, model: {{backbone: mobilenet_v2}}}}
cells:
  a: {{stages: baseline}}
resources: {{time: {time}}}
"""


@pytest.mark.parametrize("time_value", ["3", "'1:30'", "'2m'", "1", "'00:03:00'"])
def test_a_time_limit_shorter_than_submitits_signal_delay_is_refused_naming_the_key(time_value):
    with pytest.raises(SpecError, match=r"resources\.time: \d min is too short: submitit asks SLURM for SIGUSR2 90 s"):
        parse_spec(SPEC.format(time=time_value), "spec.yaml")
    assert parse_spec(SPEC.format(time="4"), "spec.yaml").resources.time_min == 4
    with pytest.raises(StudyError, match=r"resources\.time: 2 min is too short"):
        SubmititExecutor(Resources(time_min=2), cluster="local")


def test_the_error_names_the_spec_line(tmp_path):
    with pytest.raises(SpecError, match=r"spec\.yaml:5.*resources\.time"):
        parse_spec(SPEC.format(time="2"), "spec.yaml")


def record(tmp_path: Path) -> JobRecord:
    return JobRecord("42_3", "slurm", str(tmp_path / "o"), str(tmp_path / "e"), str(tmp_path / "r.pkl"), 1.0)


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (
            JobState("CANCELLED", "CANCELLED by 0", exit_code="0:15"),
            "ended CANCELLED by 0, exit code 0:15 without a result: the job was cancelled",
        ),
        (
            JobState("TIMEOUT", "TIMEOUT", exit_code="0:0"),
            "ended TIMEOUT without a result: the job reached its time limit",
        ),
        (JobState("OUT_OF_MEMORY", "OUT_OF_MEMORY", exit_code="0:125"), "raise resources.memory"),
        (JobState("NODE_FAIL", "NODE_FAIL"), "job's node failed"),
    ],
)
def test_failure_keeps_slurms_end_state_and_what_it_means(tmp_path, state, words):
    msg = failure_message(record(tmp_path), state, accounting=None)
    assert msg.startswith("the SLURM job 42_3 ended") and words in msg, msg


def test_failure_of_a_job_slurm_forgot_without_accounting_says_why(tmp_path):
    msg = failure_message(record(tmp_path), None, accounting="sacct: error: Slurm accounting storage is disabled")
    assert "end state is unknown (sacct: error: Slurm accounting storage is disabled" in msg
    assert "MinJobAge" in msg


def test_job_records_round_trip_and_damaged_ones_are_not_trusted(tmp_path):
    r = record(tmp_path)
    r.write(tmp_path)
    assert JobRecord.read(tmp_path) == r
    (tmp_path / "job.json").write_text('{"job_id": "42"')
    assert JobRecord.read(tmp_path) is None
    assert JobRecord.read(tmp_path / "nowhere") is None


def test_queue_states_without_squeue_is_none(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert queue_states(["1"]) is None
    assert queue_states([]) == {}


def test_wall_time_sums_every_attempt_including_a_killed_one(tmp_path):
    wall = tmp_path / "wall.json"
    (tmp_path / "1-stage" / "checkpoints").mkdir(parents=True)
    open_attempt(wall, tmp_path)  # attempt 1: killed (no close); its last checkpoint 30 s after its start
    start = read_wall(wall)["attempts"][0]["start"]
    ckpt = tmp_path / "1-stage" / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (start + 30, start + 30))
    open_attempt(wall, tmp_path)  # attempt 2: interrupted cleanly (requeued)
    w = read_wall(wall)
    assert w["attempts"][0]["s"] == pytest.approx(30, abs=0.01) and not w["finished"]
    w["attempts"][1]["start"] -= 20
    wall.write_text(json.dumps(w))
    close_attempt(wall, finished=False)
    open_attempt(wall, tmp_path)  # attempt 3 finishes
    w = read_wall(wall)
    w["attempts"][2]["start"] -= 10
    wall.write_text(json.dumps(w))
    total = close_attempt(wall, finished=True)
    w = read_wall(wall)
    assert w["finished"] and len(w["attempts"]) == 3
    assert total == pytest.approx(60, abs=0.5) and w["wall_s"] == total
    # each attempt records the medcolor commit it ran (what the cell's results rows name, not the one at the end)
    assert [a["git_commit"] for a in w["attempts"]] == [git_commit()] * 3 and git_commit()


def test_wall_files_of_earlier_medcolor_versions_still_read(tmp_path):
    (tmp_path / "wall.json").write_text('{"wall_s": 12.5}')
    assert read_wall(tmp_path / "wall.json") == {"wall_s": 12.5, "attempts": [{"s": 12.5}], "finished": True}
    assert read_wall(tmp_path / "missing.json")["finished"] is False  # never started: the cell trains
    (tmp_path / "wall.json").write_text("{")  # damaged: a measurement lost, not a reason to train again
    damaged = read_wall(tmp_path / "wall.json")
    assert damaged["finished"] is True and math.isnan(damaged["wall_s"])


def test_an_unfinished_study_is_not_ok_and_says_which_cells_and_jobs(tmp_path):
    cell = Cell.from_dict({"id": "a_1", "group": "a", "values": {}, "config": {}})
    other = Cell.from_dict({"id": "b_2", "group": "b", "values": {}, "config": {}})
    states = [CellState(cell, "done"), CellState(other, "pending", "SLURM job 7_1: PENDING (Resources)")]
    result = StudyResult(tmp_path, states, tmp_path / "results.parquet", 1.0)
    assert not result.ok
    text = "\n".join(summary_lines(result))
    assert "pending  b_2: SLURM job 7_1: PENDING (Resources)" in text
    assert "the study is not finished: 1 cell(s) still running or pending" in text
    assert StudyResult(tmp_path, [CellState(cell, "done")], tmp_path / "r", 1.0).ok


def test_submitit_messages_reach_a_cells_log_once(capsys):
    import submitit  # noqa: F401 - configures its logger (two handlers, and the root's) on import

    logging.basicConfig()
    configure_submitit_logging()
    logging.getLogger("submitit").warning("Caught signal SIGUSR2 on vm: this job is timed-out.")
    logging.getLogger("submitit").info("Requeued job 7 (2 remaining timeouts)")
    out = capsys.readouterr()
    assert (out.out + out.err).count("Caught signal SIGUSR2") == 1
    assert (out.out + out.err).count("Requeued job 7") == 1
    assert time.strftime("%H:") in out.err


def test_status_shows_a_queued_cells_job_and_state(tmp_path, monkeypatch):
    """``study status`` asks squeue once for the cells with a SLURM job (here a stand-in squeue)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho '7_1|PENDING|Resources'\necho '7_0|COMPLETED|None'\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dirs = {}
    for cid, job in (("a", "7_0"), ("b", "7_1"), ("c", None)):
        dirs[cid] = tmp_path / cid
        dirs[cid].mkdir()
        if job:
            JobRecord(job, "slurm", "o", "e", "r", 1.0).write(dirs[cid])
    cells = {cid: Cell.from_dict({"id": cid, "group": cid, "values": {}, "config": {}}) for cid in dirs}
    states = {"a": CellState(cells["a"], "pending", "started before"), "b": CellState(cells["b"], "pending")}
    states["c"] = CellState(cells["c"], "pending")
    add_job_states(dirs, states)
    assert states["b"].detail == "SLURM job 7_1: PENDING (Resources)"
    assert states["a"].detail == "started before"  # its job is over: nothing to add
    assert states["c"].detail == ""
