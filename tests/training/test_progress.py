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


@pytest.fixture
def medcolor_log(caplog):
    """Records of the ``medcolor`` logger, each once (whether or not it propagates to the root logger)."""
    logger = logging.getLogger("medcolor")
    saved = (logger.level, logger.propagate)
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.level, logger.propagate = saved


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
