"""A diverged run is an error, never a result: NaN/inf in the loss, the weights or the outputs stops training
with one line saying what diverged and where; NaN/inf inputs are reported as bad data, not as a learning rate
to lower; no AUC is ever computed from NaN probabilities; ``predict``/``evaluate``/``colorize`` refuse a network
whose weights are NaN."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medcolor.config import DataConfig, StageConfig
from medcolor.errors import DataError, TrainingError, WeightsError
from medcolor.evaluation import bootstrap_ci, summarize
from medcolor.io import save_model
from medcolor.model import ColorTransferNet
from medcolor.training import ColorTransferModule, train
from medcolor.training.pipeline import check_normalization


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


def test_a_diverged_run_stops_with_one_line_and_no_result(tiny_config, tmp_path, data_dir):
    out = tmp_path / "run"
    cfg = tiny_config(out, data_dir)
    cfg.stages = [StageConfig("color-module", lr=1e6, iterations=4, val_every=2)]  # `--lr 1e6`
    with pytest.raises(TrainingError) as e:
        train(cfg)
    message = str(e.value)
    assert "\n" not in message
    assert re_search(r"(weights|loss) became .*at step \d+ of stage 'color-module'.*Lower the learning rate", message)
    assert not (out / "test").exists() and not (out / "model.safetensors").exists()
    assert not list(out.rglob("*.ckpt"))  # no checkpoint of a diverged state


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_a_nonfinite_loss_names_the_step_and_the_batch(tiny_config, tmp_path, data_dir, monkeypatch):
    import medcolor.training.module as module

    bce = module.masked_bce_with_logits
    monkeypatch.setattr(module, "masked_bce_with_logits", lambda logits, t: bce(logits, t) * math.inf)
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) at step 0 of stage 'color-module' \(batch 0 "):
        train(tiny_config(tmp_path / "run", data_dir))


def test_nonfinite_inputs_are_bad_data_not_divergence(tiny_config, tmp_path, data_dir, monkeypatch):
    original = ColorTransferModule._input
    monkeypatch.setattr(ColorTransferModule, "_input", lambda self, b, train: original(self, b, train) * math.nan)
    with pytest.raises(DataError, match=r"input images of step 0 .* hold NaN/inf .*--mean/--std") as e:
        train(tiny_config(tmp_path / "run", data_dir))
    assert "learning rate" not in str(e.value)


def test_nonfinite_normalisation_stops_before_training():
    check_normalization(0.5, 0.25, None)
    with pytest.raises(DataError, match=r"mean/std is nan/0.25, given by --mean/--std"):
        check_normalization(math.nan, 0.25, math.nan)
    with pytest.raises(DataError, match=r"computed from the training images .*NaN/inf pixels"):
        check_normalization(0.5, math.nan, "compute")


def test_no_auc_from_nan_probabilities():
    probs = np.array([[0.1], [np.nan], [0.8], [0.3]])
    targets = np.array([[0.0], [1.0], [1.0], [0.0]])
    with pytest.raises(DataError, match=r"1 of 4 predicted probabilities are NaN/inf: no AUC"):
        summarize(probs, targets, ["x"])
    with pytest.raises(DataError, match="no AUC"):
        bootstrap_ci(probs, targets, 10, 0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = [d / f"x{i}.png" for i in range(2)]
    for p in paths:
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(p)
    return paths


def _model_file(path: Path, poison) -> Path:
    torch.manual_seed(0)
    model = ColorTransferNet.create("colorU", "mobilenet_v2", 3, None)
    with torch.no_grad():
        poison(model)
    meta = {"label_names": ["a", "b", "c"], "normalization": {"mean": 0.5, "std": 0.25}, "size": 32}
    return save_model(model, path, **meta)


def test_predict_evaluate_colorize_refuse_nan_weights(tmp_path, images):
    from medcolor.cli import main
    from medcolor.inference import colorize_files, evaluate_model, predict_files

    def poison(m):
        m.colorizer.get_parameter("out.4.weight").fill_(math.nan)

    path = _model_file(tmp_path / "model.safetensors", poison)
    named = r"holds NaN/inf weights \(1 tensors, e.g. colorizer\.out\.4\.weight"
    with pytest.raises(WeightsError, match=rf"{path} {named}"):
        predict_files(path, images)
    with pytest.raises(WeightsError, match="holds NaN/inf weights"):
        evaluate_model(path, data=DataConfig(dataset="synthetic", root=str(tmp_path / "syn")), progress=False)
    with pytest.raises(WeightsError, match="holds NaN/inf weights"):
        colorize_files(path, images, tmp_path / "colorized")
    assert main(["predict", str(path), str(images[0]), "-o", str(tmp_path / "p.csv")]) == 2
    assert not (tmp_path / "p.csv").exists()


def test_predict_refuses_nonfinite_outputs(tmp_path, images):
    from medcolor.inference import predict_files

    def overflow(m):  # finite weights whose outputs overflow: E's last features ~1, C's weights 3e38
        m.backbone.net.features[-1][1].bias.fill_(1.0)
        m.head.fc.weight.fill_(3e38)

    path = _model_file(tmp_path / "model.safetensors", overflow)
    with pytest.raises(WeightsError, match=r"outputs are NaN/inf for 2 images \(e.g. .*x0.png"):
        predict_files(path, images)
