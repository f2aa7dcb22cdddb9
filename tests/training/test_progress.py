"""Progress bars only on a terminal: with output redirected (``medcolor evaluate ... > log 2>&1``) Lightning's and
tqdm's carriage-return updates would fill the log, so plain log lines stand in for them (tqdm's/Lightning's
non-TTY conventions)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import medcolor.utils
from medcolor.config import RunConfig, TrainerConfig
from medcolor.evaluation import predict_probs
from medcolor.training import train
from medcolor.training.runtime import make_trainer, resolve_runtime


class _Images(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((1, 8, 8), float(i)), "index": i}


class _Net(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))[:, None] * 0.01


def test_trainer_draws_a_bar_only_on_a_terminal(monkeypatch):
    rt = resolve_runtime(RunConfig(trainer=TrainerConfig(progress=True, precision="32-true", accelerator="cpu")))
    assert make_trainer(rt).progress_bar_callback is None  # pytest captures stdout: not a terminal
    monkeypatch.setattr(medcolor.utils, "is_terminal", lambda stream: True)
    assert make_trainer(rt).progress_bar_callback is not None
    quiet = resolve_runtime(RunConfig(trainer=TrainerConfig(progress=False, precision="32-true", accelerator="cpu")))
    assert make_trainer(quiet).progress_bar_callback is None


def test_prediction_logs_lines_instead_of_a_bar_without_a_terminal(capsys, medcolor_log, monkeypatch):
    predict_probs(_Net(), _Images(), batch_size=4, progress=True)
    assert "\r" not in capsys.readouterr().err
    lines = [r.getMessage() for r in medcolor_log.records if r.getMessage().startswith("predicting:")]
    assert lines == [f"predicting: {n} of 40 images" for n in range(4, 40, 4)]  # a tenth of them at a time
    medcolor_log.clear()
    monkeypatch.setattr(medcolor.utils, "is_terminal", lambda stream: True)
    predict_probs(_Net(), _Images(), batch_size=4, progress=True)
    assert "\r" in capsys.readouterr().err  # tqdm's bar on a terminal
    assert not [r for r in medcolor_log.records if r.getMessage().startswith("predicting:")]


def test_training_logs_a_line_per_chunk_without_a_terminal(tiny_config, tmp_path: Path, capsys, medcolor_log):
    cfg = tiny_config(tmp_path / "run", tmp_path / "data")
    cfg.trainer.progress = True
    train(cfg, evaluate_test=False)
    out = capsys.readouterr()
    assert "\r" not in out.out and "\r" not in out.err
    info = [r.getMessage() for r in medcolor_log.records if r.levelno == logging.INFO]
    chunks = [m for m in info if m.startswith("[color-module] step ")]
    assert [m.split(":")[0] for m in chunks] == ["[color-module] step 2/4", "[color-module] step 4/4"]
    assert "val mean AUC" in chunks[0]


# ------------------------------------------------------------------ progress lines, exact iterations, quiet libraries
class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_log_writes_a_line_every_30_seconds_with_step_loss_speed_and_eta(medcolor_log):
    from types import SimpleNamespace

    from medcolor.training.callbacks import ProgressLog

    clock = _Clock()
    cb = ProgressLog("training", clock=clock)
    trainer = SimpleNamespace(global_step=0, world_size=1, is_global_zero=True)
    module = SimpleNamespace(stage_name="color-module", total_steps=100)
    cb.on_train_start(trainer, module)
    batch = {"image": torch.zeros(8, 1, 4, 4)}
    for step in range(1, 100):
        clock.t = step * 2.0  # 2 s a step: 4 img/s, a line every 15 steps
        trainer.global_step = step
        cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(0.5)}, batch, step - 1)
    lines = [r.getMessage() for r in medcolor_log.records]
    assert len(lines) == 6  # at 30, 60, ... 180 s
    assert lines[0] == "[color-module] training: step 15/100 (15%), loss 0.5000, 4.0 img/s, ETA 2:50"
    assert lines[-1].startswith("[color-module] training: step 90/100 (90%)") and lines[-1].endswith("ETA 0:20")


def test_a_stage_runs_exactly_its_iterations_with_a_shorter_last_chunk():
    from medcolor.config import StageConfig
    from medcolor.training.plan import plan_stage

    s = plan_stage(StageConfig("color-module", iterations=20), n_train=100, batch_size=16, world_size=1)
    assert (s.total_steps, s.val_every, s.chunks) == (20, 7, 3)  # 7 + 7 + 6 (was 3 x 7 = 21 steps)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, tiny_config):
    """A two-stage tiny run whose stages do not divide into whole chunks (5 = 2 + 2 + 1), the second after an
    LR range test, trained with progress lines every step (as without a terminal), its output captured."""
    import medcolor.training.callbacks as callbacks
    from medcolor.config import LRFindConfig, StageConfig

    tmp = tmp_path_factory.mktemp("progress")
    cfg = tiny_config(tmp / "run", tmp / "data")
    cfg.data.options |= {"prevalence": 0.1}
    cfg.stages = [
        StageConfig("color-module", lr=0.05, iterations=5, val_every=2),
        StageConfig("all", lr="find", iterations=4, val_every=2, lr_find=LRFindConfig(1e-4, 1.0, 12)),
    ]
    cfg.trainer.progress = True
    logger = logging.getLogger("medcolor")
    saved = (logger.level, logger.propagate, callbacks.PROGRESS_EVERY_S)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    callbacks.PROGRESS_EVERY_S = 0.0
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            result = train(cfg)
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate, callbacks.PROGRESS_EVERY_S = saved
    return cfg, result, [r.getMessage() for r in records], out.getvalue() + err.getvalue()


def test_training_and_the_lr_range_test_log_progress_lines(logged_run):
    import re

    _, _result, lines, _ = logged_run
    lr = [m for m in lines if m.startswith("[all] LR range test: step ")]
    assert len(lr) >= 3 and lr[0].startswith("[all] LR range test: step 1/12 (8%), loss ")
    first = [m for m in lines if m.startswith("[color-module] training: step ")]
    assert [m.split(" (")[0] for m in first] == [f"[color-module] training: step {k}/5" for k in (1, 2, 3, 4)]
    pattern = r"\[color-module\] training: step \d/5 \(\d+%\), loss \d\.\d{4}, \d+\.\d img/s, ETA \d+:\d\d"
    assert all(re.fullmatch(pattern, m) for m in first)
    done = [m for m in lines if m.startswith("[color-module] best val mean AUC")]
    assert len(done) == 1 and re.match(r"\[color-module\] best val mean AUC \d\.\d{3} at step \d ", done[0])


def test_iterations_not_a_multiple_of_the_chunk_are_run_exactly(logged_run):
    import json

    _, result, _, _ = logged_run
    first = result.stages[0]
    history = json.loads((first.directory / "history.json").read_text())
    assert first.total_steps == 5 and [r["step"] for r in history] == [2, 4, 5]  # chunks of 2 + 2 + 1
    ckpt = torch.load(first.directory / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 5


def test_every_stage_writes_a_csv_log(logged_run):
    import pandas as pd

    _, result, _, _ = logged_run
    for stage in result.stages:
        logs = list((stage.directory / "logs" / "csv").glob("version_*/metrics.csv"))
        assert len(logs) == 1
        df = pd.read_csv(logs[0])
        val = df.dropna(subset=["val/mean_auc"])
        history = [r["val_mean_auc"] for r in json_rows(stage.directory / "history.json")]
        assert val["val/mean_auc"].tolist() == pytest.approx(history, abs=1e-7)


def json_rows(path: Path) -> list[dict]:
    import json

    return json.loads(path.read_text())


def test_the_python_api_prints_no_library_chatter(logged_run):
    _, _, _, printed = logged_run
    for noise in ("GPU available", "TPU available", "Tip", "eval mode", "srun", "LeafSpec", "Trainer.fit"):
        assert noise not in printed


def test_the_experiment_logger_changes_no_number(logged_run, monkeypatch, tmp_path: Path):
    import dataclasses

    import medcolor.training.pipeline as pipeline

    cfg, result, _, _ = logged_run
    monkeypatch.setattr(pipeline, "experiment_loggers", lambda *a, **k: False)  # Lightning without a logger
    again = train(dataclasses.replace(cfg, output=str(tmp_path / "no-logger")))
    assert not list((again.stages[0].directory).glob("logs"))
    for a, b in zip(result.stages, again.stages, strict=True):
        assert a.best_val_auc == b.best_val_auc and a.lr == b.lr
    assert result.test["auc"] == again.test["auc"]


def test_medcolor_warnings_are_one_line_without_a_source_line():
    """As a user's script sees it (pytest records warnings itself, so this runs in a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import warnings, medcolor\n"
        "from medcolor.data import MissingImagesWarning\n"
        "warnings.warn('kermany: skipped 1 of 2 rows of labels.csv whose image is missing', MissingImagesWarning)\n"
        "warnings.simplefilter('error', MissingImagesWarning)\n"
        "try:\n    warnings.warn('x', MissingImagesWarning)\nexcept MissingImagesWarning:\n    print('filters apply')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout == "filters apply\n"
    assert p.stderr == "warning: kermany: skipped 1 of 2 rows of labels.csv whose image is missing\n"
