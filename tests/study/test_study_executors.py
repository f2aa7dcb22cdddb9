"""The SLURM path: submitit job arrays (run here with submitit's local executor) and the sbatch scripts."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
from pathlib import Path

import pytest
from study_helpers import CHAIN, write_spec

import medcolor
from medcolor.study.executors import CellJob, LocalExecutor, SubmititExecutor, make_executor, submitit_parameters
from medcolor.study.plan import expand
from medcolor.study.results import StudyError, read_results
from medcolor.study.runner import prepare_study_dir, run_study
from medcolor.study.spec import Resources, load_spec


@pytest.mark.slow
def test_submitit_local_executor_runs_one_job_array_per_level(tmp_path, synthetic_root):
    spec = load_spec(write_spec(tmp_path / "chain.yaml", CHAIN, synthetic_root))
    out = tmp_path / "chain"
    ex = SubmititExecutor(spec.resources, cluster="local", threads=1)
    result = run_study(spec, out, executor=ex)
    assert result.ok and result.count("done") == 2, (out / "cells").glob("*/log.txt")
    assert len(ex.jobs) == 2 and len({j.job_id for j in ex.jobs}) == 2  # level 0, then level 1
    assert all(j.state == "FINISHED" and j.result() == "done" for j in ex.jobs), [
        (j.state, j.result()) for j in ex.jobs
    ]
    df = read_results(out)
    source = df[df["stages"] == "color-module"]["cell"].iloc[0]
    assert (df[df["stages"] == "last-layer"]["transfer"] == source).all()
    assert all((out / "submitit" / str(j.job_id)).is_dir() for j in ex.jobs)
    assert all("best val mean AUC" in (out / "cells" / c / "log.txt").read_text() for c in df["cell"].unique())


def fake_slurm(bin_dir: Path) -> Path:
    """``sbatch`` that keeps the script it is given and answers like SLURM; ``srun`` and ``squeue`` so that
    submitit and the executor believe it."""
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {bin_dir}/script.sh\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    for f in ("sbatch", "srun", "squeue"):
        (bin_dir / f).chmod((bin_dir / f).stat().st_mode | stat.S_IEXEC)
    return bin_dir / "script.sh"


def test_slurm_job_arrays_carry_the_spec_resources(tmp_path, monkeypatch):
    script = fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    text = CHAIN.format(root="/data").replace(
        "resources: {time: 10, cpus: 1}",
        "resources: {partition: gpu, gpus: 4, nodes: 2, time: '12:00:00', memory: 64G, cpus: 8, account: lab,\n"
        "            setup: ['module load cuda']}",
    )
    spec_path = tmp_path / "chain.yaml"
    spec_path.write_text(text)
    spec = load_spec(spec_path)
    plan = expand(spec)
    out = prepare_study_dir(spec, plan, tmp_path / "study").resolve()
    ex = make_executor("slurm", resources=spec.resources)
    cells = plan.levels[0] + plan.levels[1]  # two cells in one array (the runner submits one array per level)
    jobs = ex.submit(out, cells, "chain-L0")
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"]
    sbatch = script.read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",  # one task per GPU: Lightning DDP under SLURM
        "#SBATCH --nodes=2",
        "#SBATCH --time=720",
        "#SBATCH --mem=64GB",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --account=lab",
        "#SBATCH --job-name=chain-L0",
        "#SBATCH --array=0-1%2",
        "module load cuda",
    ):
        assert line in sbatch, (line, sbatch)
    assert "srun" in sbatch and "-m submitit.core._submit" in sbatch
    # each array task runs one cell, with DDP over 4 GPUs x 2 nodes
    pickles = sorted((out / "submitit").glob("4242_*/4242_*_submitted.pkl"))
    assert len(pickles) == 2
    with open(pickles[0], "rb") as f:
        delayed = pickle.load(f)
    assert isinstance(delayed.function, CellJob)
    assert delayed.args == (str(out), cells[0].id, os.getcwd(), None, 4, 2)


def test_submitit_parameters():
    one = submitit_parameters(Resources(gpus=1, time_min=60, memory_gb=16, partition="p"), "slurm", "s")
    assert one == {
        "name": "s",
        "timeout_min": 60,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": 1,
        "mem_gb": 16,
        "slurm_partition": "p",
    }
    local = submitit_parameters(Resources(gpus=2, partition="p", qos="high"), "local", "s")
    assert local["tasks_per_node"] == 2 and not any(k.startswith("slurm_") for k in local)


def test_gpu_slots_per_cell_and_worker_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    ex = LocalExecutor(workers=None, devices=2)
    assert ex.workers == 2 and ex.slots == [["0", "1"], ["2", "3"]] and ex.threads is None
    assert LocalExecutor(workers=1, devices=1).slots == [["0"]]
    with pytest.raises(StudyError, match="each cell needs 8 GPU"):
        LocalExecutor(devices=8)
    seen = {}

    class FakePopen:
        def __init__(self, cmd, **kw):
            seen.update(cmd=cmd, env=kw["env"])

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    cell = type("C", (), {"id": "cell_0000"})()
    ex._start(tmp_path, cell, ["2", "3"])
    env = seen["env"]
    assert seen["cmd"][1:] == ["-m", "medcolor.study.worker", str(tmp_path), "cell_0000"]
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["MEDCOLOR_DEVICES"] == "2"
    assert env["MEDCOLOR_STUDY_PARENT"] == str(os.getpid())
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(medcolor.__file__).resolve().parent.parent)
    cpu = LocalExecutor(workers=2, threads=1)
    cpu._start(tmp_path, cell, None)
    assert seen["env"]["OMP_NUM_THREADS"] == "1" and "MEDCOLOR_DEVICES" not in seen["env"]


def test_slurm_needs_sbatch(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StudyError, match="needs SLURM's sbatch, srun and squeue"):
        make_executor("slurm")


def test_spec_executor_takes_the_specs_section_and_the_values_given(tmp_path, synthetic_root):
    """``run_study(spec, out)`` without an executor and ``medcolor study run`` build it the same way: the spec's
    ``executor:`` and ``resources:``, each flag given taking the spec's value's place."""
    from medcolor.study.executors import spec_executor

    text = CHAIN + "executor: {{name: local, workers: 2, threads: 1}}\n"
    spec = load_spec(write_spec(tmp_path / "local.yaml", text, synthetic_root))
    ex = spec_executor(spec)
    assert isinstance(ex, LocalExecutor) and (ex.workers, ex.threads) == (2, 1)
    ex = spec_executor(spec, workers=0, threads=2)
    assert isinstance(ex, LocalExecutor) and (ex.workers, ex.threads) == (0, 2)
    sub = spec_executor(spec, "submitit-local", devices=2)
    assert isinstance(sub, SubmititExecutor) and sub.cluster == "local" and sub.threads == 1
    assert sub.resources.gpus == 2 and sub.resources.time_min == 10 and spec.resources.gpus == 0
