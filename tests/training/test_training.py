"""Training engine on the built-in synthetic data (tiny images, few iterations)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medcolor.config import LRFindConfig, RunConfig, StageConfig
from medcolor.errors import ConfigError, TrainingError, UnknownNameError
from medcolor.io import load_colorizer, load_model
from medcolor.training import ColorTransferModule, check_run_config, plan_stage, read_run, resolve_stage, train
from medcolor.training.runtime import resolve_runtime

QUIET: dict = {}  # training logs through logging.getLogger("medcolor"); nothing to silence


@pytest.fixture
def medcolor_log(caplog):
    """Records of the ``medcolor`` logger (whatever handlers the CLI tests left on it)."""
    logger = logging.getLogger("medcolor")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


#: Synthetic labels at 10 % prevalence: a fresh C's loss (~0.69) has far to fall (to ~0.33), so a 12-step LR range
#: test sees a real descent rather than noise (at the default 40 % a tiny random-init network learns nothing in
#: 12 steps and the curve is noise: no rule should find a learning rate in it)
RARE = {"prevalence": 0.1}


@pytest.fixture(scope="module")
def two_stage_run(tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "two-stage"
    cfg = tiny_config(out, tmp_path_factory.mktemp("synthetic-rare"))
    cfg.data.options |= RARE
    cfg.stages = [
        StageConfig("color-module", lr=0.05, iterations=4, val_every=2),
        StageConfig("all", lr="find", iterations=4, val_every=2, lr_find=LRFindConfig(1e-4, 1.0, 12)),
    ]
    return cfg, train(cfg, **QUIET)


def test_plan_stage():
    p = plan_stage(StageConfig("all", epochs=2), n_train=100, batch_size=16, world_size=1)
    assert (p.iterations_per_epoch, p.total_steps, p.val_every, p.chunks) == (7, 14, 7, 2)
    p = plan_stage(StageConfig("all", iterations=4801, val_every=4800), 10**5, 16, 1)
    assert p.chunks == 2 and p.val_every == 2401 and p.total_steps == 4801  # exactly: the last chunk is shorter
    p = plan_stage(StageConfig("all", epochs=1), 1000, 10, 4)  # DDP: 4 processes share each epoch
    assert p.iterations_per_epoch == 25


@pytest.mark.parametrize("momentum", [0.95, 0.9])
def test_momentum_is_the_upper_bound_of_the_cycle(momentum):
    from medcolor.model import ColorTransferNet

    net = ColorTransferNet.create("replicate", "mobilenet_v2", 3, None)
    m = ColorTransferModule(net, ["a", "b", "c"], lr=0.1, total_steps=8, momentum=momentum, pct_start=0.5)
    conf = m.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(momentum) and min(seen) == pytest.approx(momentum - 0.1)


def test_num_workers_auto_is_sized_to_the_machine(tiny_config, monkeypatch, tmp_path):
    import medcolor.utils as rt

    monkeypatch.setattr(rt.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert rt.resolve_num_workers("auto", "cpu") == 2  # the model uses the cores
    assert rt.resolve_num_workers("auto", "cuda") == 8  # one GPU, 16 cores: 8 decoding workers
    assert rt.resolve_num_workers("auto", "cuda", devices=4) == 3  # 4 DDP processes share the 16 cores
    assert rt.resolve_num_workers(5, "cuda") == 5 and rt.resolve_num_workers(0, "cpu") == 0
    monkeypatch.setattr(rt.os, "sched_getaffinity", lambda pid: {0})
    assert rt.resolve_num_workers("auto", "cpu") == 1 and rt.resolve_num_workers("auto", "cuda") == 1
    cfg = tiny_config(tmp_path / "auto", tmp_path)
    cfg.data.num_workers = "auto"
    check_run_config(cfg)  # "auto" is a valid value
    plan = resolve_stage(
        0, cfg.stages[0], cfg, runtime=resolve_runtime(cfg), n_train=10, world_size=1, directory=tmp_path
    )
    assert plan.num_workers == 1
    cfg.data.num_workers = "many"
    with pytest.raises(ConfigError, match=r"data\.num_workers"):
        check_run_config(cfg)


def test_a_stage_is_resolved_once(tiny_config, tmp_path):
    cfg = tiny_config(tmp_path / "plan", tmp_path)
    runtime = resolve_runtime(cfg)
    stage = StageConfig("Color-Module", lr="find", epochs=2, lr_find=LRFindConfig(1e-4, 1.0, 12))
    plan = resolve_stage(1, stage, cfg, runtime=runtime, n_train=100, world_size=1, directory=tmp_path)
    assert plan.name == "color-module" and plan.needs_lr_find and plan.lr is None
    assert plan.schedule == plan_stage(stage, 100, cfg.data.batch_size, 1)
    assert (plan.batch_size, plan.num_workers, plan.frozen_bn) == (8, 0, "fastai")
    found = plan.with_lr(0.03)
    assert found.lr == 0.03 and not found.needs_lr_find and plan.lr is None
    module = ColorTransferModule.from_plan(torch.nn.Linear(1, 1), ["a"], found)  # any network will do here
    assert module.lr == 0.03 and module.total_steps == found.schedule.total_steps
    for bad, message in [  # refused when the stage is built, before any plan
        ({"lr": "fnd"}, r"lr: must be a number > 0, got 'fnd' \(or 'find'"),
        ({"lr": "find", "lr_find": {"min_lr": 1.0, "max_lr": 0.1}}, "the LR range test needs min_lr < max_lr"),
    ]:
        with pytest.raises(ConfigError, match=message):
            StageConfig("all", **bad)


def test_two_stage_run_writes_everything(two_stage_run):
    cfg, r = two_stage_run
    out = Path(cfg.output)
    assert [s.strategy for s in r.stages] == ["color-module", "all"]
    for s in r.stages:
        assert (s.directory / "model.safetensors").is_file() and (s.directory / "result.json").is_file()
        history = json.loads((s.directory / "history.json").read_text())
        assert [h["step"] for h in history] == [2, 4]
        assert all(0 <= h["val_mean_auc"] <= 1 for h in history)
        assert (s.directory / "checkpoints" / "best.ckpt").is_file()
        assert s.best_val_mean_auc == max(h["val_mean_auc"] for h in history)
    # the LR range test of stage 2 was run, plotted and used
    lr_find = json.loads((r.stages[1].directory / "lr_find.json").read_text())
    assert r.stages[1].lr == lr_find["suggestion"] and 1e-4 <= r.stages[1].lr <= 1.0
    assert lr_find["rule"] == "steepest" and lr_find["suggestions"]["steepest"] == lr_find["suggestion"]
    assert len(lr_find["raw_loss"]) == len(lr_find["loss"]) == len(lr_find["lr"])
    assert lr_find["loss"][0] == lr_find["raw_loss"][0]  # the bias-corrected smoothing starts at the loss
    assert (r.stages[1].directory / "lr_find.png").stat().st_size > 1000
    assert not (r.stages[1].directory / "lr_find_tmp").exists()
    # color-module trains T and C only; all trains everything
    assert r.stages[0].trainable_parameters < r.stages[1].trainable_parameters
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    assert set(metrics["auc"]) == {"Opacity", "Fine texture", "Enlarged heart"}
    assert metrics["n_samples"] == r.info["test"]
    lo, hi = metrics["ci95"]["mean_auc"]
    assert lo <= metrics["mean_auc"] <= hi
    preds = pd.read_csv(out / "test" / "predictions.csv")
    assert len(preds) == r.info["test"] and preds.filter(like="prob:").to_numpy().max() <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["mean_auc"] == metrics["mean_auc"]


def test_each_stage_records_where_it_computed(two_stage_run, monkeypatch):
    """result.json and summary.json say on which CPU/GPU and at which precision each stage ran (bf16 kernels
    differ between CPUs), read back by the study table; an older result without it still reads."""
    from medcolor.training import runtime
    from medcolor.training.rundir import StageResult

    cfg, r = two_stage_run
    want = resolve_runtime(cfg)
    summary = json.loads((Path(cfg.output) / "summary.json").read_text())
    for s, stored in zip(r.stages, summary["stages"], strict=True):
        env = json.loads((s.directory / "result.json").read_text())["environment"]
        assert env == stored["environment"] == s.environment
        assert env["device"] == runtime.cpu_name() and env["accelerator"] == want.accelerator == "cpu"
        assert env["precision"] == want.precision and env["channels_last"] == want.channels_last
        assert env["torch"] == torch.__version__ and env["torch_threads"] >= 1
        assert set(env["cpu_bf16"]) <= {"amx_bf16", "avx512_bf16"}
        assert bool(env["cpu_bf16"]) == runtime.cpu_has_bf16()
    old = {k: v for k, v in summary["stages"][0].items() if k != "environment"}
    assert StageResult.from_dict(old).environment == {}
    info = "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx512_bf16 amx_tile\n"
    monkeypatch.setattr(runtime, "_cpuinfo", lambda: info)
    assert runtime.cpu_name() == "Some CPU 9000" and runtime.cpu_bf16_flags() == ["avx512_bf16"]
    monkeypatch.setattr(runtime, "_cpuinfo", lambda: "")
    assert runtime.cpu_name() and runtime.cpu_bf16_flags() == [] and not runtime.cpu_has_bf16()


def test_final_model_is_the_best_checkpoint(two_stage_run):
    cfg, r = two_stage_run
    final, meta = load_model(Path(cfg.output) / "model.safetensors")
    best = torch.load(r.stages[-1].directory / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    for k, v in final.state_dict().items():
        assert torch.equal(v, best[f"model.{k}"]), k
    assert meta["label_names"] == ["Opacity", "Fine texture", "Enlarged heart"]
    assert meta["normalization"] == {"mean": 0.5028, "std": 0.2902} and meta["size"] == 32
    t, tmeta = load_colorizer(Path(cfg.output) / "colorizer.safetensors")
    assert tmeta["strategy"] == "all" and tmeta["backbone"] == "mobilenet_v2"
    assert torch.equal(t.state_dict()["out.4.weight"], final.colorizer.state_dict()["out.4.weight"])


def test_last_checkpoint_is_the_latest_state_not_the_best(tiny_config, tmp_path, data_dir, monkeypatch):
    """Lightning 2.6's ``save_last`` rewrites last.ckpt only with the best one; ours is the latest state."""
    import medcolor.training.module as module

    scores = iter([0.9, 0.8, 0.7])  # validation mean AUC falls: the best is the first chunk
    monkeypatch.setattr(module, "mean_auc", lambda aucs: next(scores))
    cfg = tiny_config(tmp_path / "run", data_dir)
    cfg.stages = [StageConfig("color-module", lr=0.05, iterations=6, val_every=2)]
    r = train(cfg, evaluate_test=False)
    ckpts = r.stages[0].directory / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    best = torch.load(ckpts / "best.ckpt", weights_only=True)
    assert last["global_step"] == r.stages[0].total_steps == 6
    assert best["global_step"] == r.stages[0].best_step == 2
    # the latest checkpoint carries the best-checkpoint callback's state as of its step (resume needs it)
    state = next(v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert float(state["best_model_score"]) == pytest.approx(0.9)
    final, _ = load_model(r.stages[0].directory / "model.safetensors")
    for k, v in final.state_dict().items():
        assert torch.equal(v, best["state_dict"][f"model.{k}"]), k


def test_checkpoints_load_without_unpickling(two_stage_run):
    _, r = two_stage_run
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(r.stages[0].directory / "checkpoints" / name, weights_only=True)
        assert "state_dict" in ckpt and "optimizer_states" in ckpt


def test_rerunning_a_finished_run_reuses_it(two_stage_run, medcolor_log):
    cfg, r = two_stage_run
    t0 = time.time()
    again = train(cfg, **QUIET)
    assert again.test["mean_auc"] == r.test["mean_auc"]
    assert [s.best_val_mean_auc for s in again.stages] == [s.best_val_mean_auc for s in r.stages]
    assert time.time() - t0 < 60
    messages = [rec.getMessage() for rec in medcolor_log.records if rec.levelno == logging.INFO]
    assert messages[0].startswith("data: synthetic train ")
    assert any(m.startswith("[color-module] already done (best val mean AUC ") for m in messages)
    assert any(m.startswith("[all] already done") for m in messages)


def test_read_run_gives_back_the_result(two_stage_run):
    cfg, r = two_stage_run
    back = read_run(cfg.output)
    assert back.stages == r.stages and back.test == r.test and back.info == r.info
    assert back.model_path == r.model_path and back.colorizer_path == r.colorizer_path


def test_evaluate_is_the_test_step_of_training(two_stage_run, tmp_path):
    from medcolor.inference import evaluate_model

    cfg, _ = two_stage_run
    metrics, out = evaluate_model(cfg.output, output=tmp_path / "eval", bootstrap=cfg.trainer.bootstrap, progress=False)
    assert out == tmp_path / "eval"
    assert metrics.pop("model") == str(Path(cfg.output) / "model.safetensors")
    assert metrics == json.loads((Path(cfg.output) / "test" / "metrics.json").read_text())
    a = pd.read_csv(out / "predictions.csv")
    b = pd.read_csv(Path(cfg.output) / "test" / "predictions.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_same_seed_same_result(tmp_path, data_dir, two_stage_run):
    cfg, r = two_stage_run
    cfg2 = RunConfig.from_dict(cfg.to_dict())
    cfg2.output = str(tmp_path / "again")
    r2 = train(cfg2, **QUIET)
    assert r2.test["mean_auc"] == pytest.approx(r.test["mean_auc"], abs=1e-6)
    a = pd.read_csv(Path(cfg.output) / "test" / "predictions.csv").filter(like="prob:").to_numpy()
    b = pd.read_csv(tmp_path / "again" / "test" / "predictions.csv").filter(like="prob:").to_numpy()
    assert np.allclose(a, b, atol=1e-6)


def test_output_directory_holding_another_run(tiny_config, tmp_path, data_dir, two_stage_run):
    cfg, _ = two_stage_run
    other = RunConfig.from_dict(cfg.to_dict())
    other.stages[0].lr = 0.01
    with pytest.raises(ConfigError, match=r"holds another run .*stages.*--resume.*--overwrite"):
        train(other, **QUIET)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"not empty but holds no config\.yaml"):
        train(tiny_config(tmp_path / "junk", data_dir), **QUIET)
    with pytest.raises(ConfigError, match=r"not a medcolor run directory \(it holds no \.medcolor-run\); refusing"):
        train(tiny_config(tmp_path / "junk", data_dir), overwrite=True, **QUIET)
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_overwrite_replaces_a_run(tiny_config, tmp_path, data_dir):
    out = tmp_path / "run"
    train(tiny_config(out, data_dir), **QUIET)
    cfg = tiny_config(out, data_dir)
    cfg.stages[0].lr = 0.02
    r = train(cfg, overwrite=True, **QUIET)
    assert r.stages[0].lr == 0.02


@pytest.mark.slow
def test_extra_callbacks_see_every_step_and_change_nothing(tiny_config, tmp_path, data_dir):
    from lightning.pytorch.callbacks import Callback

    class CountSteps(Callback):
        steps = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            CountSteps.steps += 1

    plain = train(tiny_config(tmp_path / "plain", data_dir), evaluate_test=False, **QUIET)
    timed = train(tiny_config(tmp_path / "timed", data_dir), evaluate_test=False, callbacks=[CountSteps()], **QUIET)
    assert CountSteps.steps == 4 and timed.test is None
    assert timed.stages[0].best_val_mean_auc == plain.stages[0].best_val_mean_auc


def test_deterministic_runs_skip_filling_uninitialized_memory(tiny_config, tmp_path):
    from medcolor.training import make_trainer

    fill, det = torch.utils.deterministic.fill_uninitialized_memory, torch.are_deterministic_algorithms_enabled()
    try:
        torch.utils.deterministic.fill_uninitialized_memory = True
        make_trainer(resolve_runtime(tiny_config(tmp_path, tmp_path)), max_epochs=1)  # deterministic: warn
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory  # ~1,000 fill_ per step, no result changes
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.use_deterministic_algorithms(det)


def test_config_errors_come_before_any_work(tiny_config, tmp_path, data_dir):
    out = tmp_path / "never"
    bad = tiny_config(out, data_dir)
    bad.model.backbone = "resnet81"
    with pytest.raises(ConfigError, match="Did you mean 'resnet18'"):
        train(bad, **QUIET)
    bad = tiny_config(out, data_dir)
    bad.stages = [StageConfig("color-module"), StageConfig("al")]
    with pytest.raises(UnknownNameError, match=r"unknown strategy 'al'.*Valid strategys?: baseline"):
        train(bad, **QUIET)
    bad = tiny_config(out, data_dir)
    bad.stages = [StageConfig("last-layer")]
    with pytest.raises(ConfigError, match=r"needs a transferred colorization module T.*--colorizer-from"):
        train(bad, **QUIET)
    bad = tiny_config(out, data_dir)
    bad.stages = [StageConfig("baseline")]
    with pytest.raises(ConfigError, match=r"baseline.*copied to 3 channels.*learned colorizer"):
        train(bad, **QUIET)
    bad = tiny_config(out, data_dir)
    bad.data.dataset = "chexpret"
    with pytest.raises(ConfigError, match=r"unknown dataset 'chexpret'; valid datasets: .*chexpert"):
        train(bad, **QUIET)
    assert not out.exists()
    ok = tiny_config(out, data_dir)
    ok.stages = [StageConfig("color-module"), StageConfig("last-layer")]
    check_run_config(ok)  # T trained in stage 1 is transferred to stage 2


def test_nan_loss_stops_with_step_and_batch(tiny_config, tmp_path, data_dir):
    cfg = tiny_config(tmp_path / "nan", data_dir)
    cfg.stages = [StageConfig("color-module", lr=1e9, iterations=8, val_every=2)]
    with pytest.raises(
        TrainingError,
        match=r"(loss became (nan|inf)|weights became NaN/inf) at step \d+ of stage 'color-module'.*Lower the learning",
    ):
        train(cfg, **QUIET)


def test_lr_finder_that_diverges(tiny_config, tmp_path, data_dir):
    cfg = tiny_config(tmp_path / "div", data_dir)
    cfg.stages = [StageConfig("color-module", lr="find", iterations=4, lr_find=LRFindConfig(1e6, 1e9, 20))]
    with pytest.raises(TrainingError, match=r"LR finder of stage 'color-module' diverged.*--lr"):
        train(cfg, **QUIET)


def test_out_of_memory_gets_a_hint(tiny_config, tmp_path, data_dir, monkeypatch):
    def boom(self, batch, batch_idx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ColorTransferModule, "training_step", boom)
    with pytest.raises(TrainingError, match=r"out of memory .*smaller --batch-size.*--size.*bf16"):
        train(tiny_config(tmp_path / "oom", data_dir), **QUIET)


# ----------------------------------------------------------------------------- kill and resume
def _cli_config(path: Path, cfg: RunConfig) -> Path:
    cfg.stages = [
        StageConfig("color-module", lr=0.05, iterations=24, val_every=6),
        StageConfig("all", lr=0.01, iterations=12, val_every=6),
    ]
    path.write_text(cfg.to_yaml())
    return path


def _run_cli(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medcolor.cli", "train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_config, tmp_path_factory, data_dir) -> Path:
    d = tmp_path_factory.mktemp("resume")
    out = d / "reference"
    r = _run_cli(_cli_config(d / "ref.yaml", tiny_config(out, data_dir)))
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT])  # SIGKILL in every phase: test_resume.py
def test_killed_run_resumes_to_the_same_result(tiny_config, tmp_path, data_dir, uninterrupted, sig):
    out = tmp_path / "run"
    config = _cli_config(tmp_path / "run.yaml", tiny_config(out, data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "medcolor.cli", "train", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = out / "1-color-module" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert not (out / "1-color-module" / "result.json").exists(), "the run finished before it could be killed"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Re-run the same command to resume" in err
    history = json.loads((out / "1-color-module" / "history.json").read_text())
    assert 1 <= len(history) < 4  # killed after the first checkpoint, before the end of the stage
    r = _run_cli(config)
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "test" / "metrics.json").read_text())
    want = json.loads((uninterrupted / "test" / "metrics.json").read_text())
    assert got["mean_auc"] == pytest.approx(want["mean_auc"], abs=1e-6)
    for label, auc in want["auc"].items():
        assert got["auc"][label] == pytest.approx(auc, abs=1e-6)
    a = pd.read_csv(out / "test" / "predictions.csv").filter(like="prob:").to_numpy()
    b = pd.read_csv(uninterrupted / "test" / "predictions.csv").filter(like="prob:").to_numpy()
    assert np.allclose(a, b, atol=1e-6)
    h_got = json.loads((out / "2-all" / "history.json").read_text())
    h_want = json.loads((uninterrupted / "2-all" / "history.json").read_text())
    assert [h["val_mean_auc"] for h in h_got] == pytest.approx([h["val_mean_auc"] for h in h_want], abs=1e-6)
