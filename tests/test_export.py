"""``medcolor export``: ONNX / TorchScript / safetensors files of a trained run give the PyTorch network's
probabilities on real X-rays (to 1e-4), with any batch size; ``predict`` takes the ONNX file; a model card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medcolor.cli import main
from medcolor.errors import ConfigError
from medcolor.export import (
    INPUT_NAME,
    ExportedNet,
    export_model,
    onnx_session,
    predict_onnx,
    read_onnx_metadata,
)
from medcolor.inference import ImageFiles, predict_files, predict_probs
from medcolor.io import load_model
from medcolor.model_card import model_card
from medcolor.training import train

pytestmark = pytest.mark.slow

TOL = 1e-4


@pytest.fixture(scope="module")
def xrays(shared_path: Callable[..., Path]) -> list[Path]:
    """16 real chest X-rays (Kermany, 8 normal + 8 pneumonia)."""
    root = shared_path("data", "kermany-pneumonia-224", "train")
    return sorted((root / "NORMAL").glob("*.jpeg"))[:8] + sorted((root / "PNEUMONIA").glob("*.jpeg"))[:8]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_config, mobilenet_weights: Path) -> Path:
    """A trained run: colorU + ImageNet MobileNetV2, 4 iterations at 64 px (synthetic training data)."""
    tmp = tmp_path_factory.mktemp("export")
    cfg = tiny_config(tmp / "run", tmp / "data")
    cfg.data.size = 64
    cfg.data.options = {"n": 120, "image_size": 72}
    cfg.model.weights = str(mobilenet_weights)
    cfg.name = "export test"
    return train(cfg).directory


@pytest.fixture(scope="module")
def reference(run_dir: Path, xrays: list[Path]) -> tuple[torch.nn.Module, dict, torch.Tensor, np.ndarray]:
    """The PyTorch network, its metadata, the [0, 1] inputs of the X-rays and its fp32 probabilities on them."""
    model, meta = load_model(run_dir / "model.safetensors")
    images = torch.stack([ImageFiles(xrays, meta["size"], 0.0, 1.0)[i]["image"] for i in range(len(xrays))])
    n = meta["normalization"]
    probs = predict_probs(model, ImageFiles(xrays, meta["size"], n["mean"], n["std"]), batch_size=16)
    assert probs.shape == (16, 3) and probs.min() > 0 and probs.max() < 1
    return model, meta, images, probs


@pytest.fixture(scope="module")
def onnx_export(run_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx-export")
    assert main(["export", str(run_dir), "--format", "onnx", "-o", str(out)]) == 0
    return out


def test_the_exported_wrapper_is_the_network_with_its_normalisation_and_a_sigmoid(reference):
    model, meta, images, probs = reference
    n = meta["normalization"]
    with torch.no_grad():
        got = ExportedNet(model, n["mean"], n["std"]).eval()(images).numpy()
    assert np.abs(got - probs).max() < 1e-6


def test_onnx_equals_pytorch_on_real_xrays_for_any_batch_size(onnx_export: Path, reference):
    _, meta, images, probs = reference
    path = onnx_export / "model.onnx"
    session = onnx_session(path)
    (inp,) = session.get_inputs()
    assert inp.name == INPUT_NAME and inp.shape[1:] == [1, meta["size"], meta["size"]]
    assert not isinstance(inp.shape[0], int)  # the batch dimension is dynamic
    whole = session.run(None, {INPUT_NAME: images.numpy()})[0]
    one_by_one = np.concatenate([session.run(None, {INPUT_NAME: images[i : i + 1].numpy()})[0] for i in range(16)])
    odd = session.run(None, {INPUT_NAME: images[:5].numpy()})[0]
    for got in (whole, one_by_one):
        assert got.shape == probs.shape and np.abs(got - probs).max() < TOL
    assert np.abs(odd - probs[:5]).max() < TOL
    info = read_onnx_metadata(path)
    assert info["label_names"] == meta["label_names"] and info["size"] == meta["size"]
    assert info["normalization"] == meta["normalization"]
    assert json.loads((onnx_export / "model.onnx.json").read_text()) == info


def test_torchscript_equals_pytorch_on_real_xrays(run_dir: Path, reference, tmp_path: Path):
    _, meta, images, probs = reference
    r = export_model(run_dir, "torchscript", tmp_path)
    extra = {"medcolor.json": ""}
    net = torch.jit.load(str(r.model_path), _extra_files=extra)
    assert json.loads(extra["medcolor.json"])["label_names"] == meta["label_names"]
    with torch.no_grad():
        for batch in (images, images[:3], images[7:8]):
            got = net(batch).numpy()
            want = probs[: len(batch)] if len(batch) != 1 else probs[7:8]
            assert np.abs(got - want).max() < TOL


def test_safetensors_export_is_a_medcolor_model_declaring_its_input(run_dir: Path, reference, tmp_path: Path):
    model, meta, _, _ = reference
    r = export_model(run_dir / "model.safetensors", "safetensors", tmp_path)
    again, again_meta = load_model(r.model_path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    assert again_meta["export"]["input"]["shape"] == ["batch", 1, meta["size"], meta["size"]]
    assert "to be applied by the user" in again_meta["export"]["input"]["normalization"]
    assert again_meta["label_names"] == meta["label_names"]


def test_predict_accepts_the_onnx_file(onnx_export: Path, run_dir: Path, xrays: list[Path], tmp_path: Path):
    want = predict_files(run_dir, xrays, precision="32-true", device="cpu")
    got = predict_onnx(onnx_export / "model.onnx", xrays, batch_size=5)
    assert list(got.columns) == list(want.columns) and list(got["path"]) == list(want["path"])
    labels = list(want.columns[1:])
    assert np.abs(got[labels].to_numpy() - want[labels].to_numpy()).max() < TOL
    csv = tmp_path / "p.csv"
    assert main(["predict", str(onnx_export / "model.onnx"), *map(str, xrays[:3]), "-o", str(csv)]) == 0
    assert np.abs(pd.read_csv(csv)[labels].to_numpy() - want[labels].to_numpy()[:3]).max() < TOL
    with pytest.raises(ConfigError, match="fixed when it was exported"):
        predict_onnx(onnx_export / "model.onnx", xrays[:1], size=96)


def test_the_model_card_names_the_network_data_labels_metrics_and_limits(onnx_export: Path, run_dir: Path):
    card = (onnx_export / "MODEL_CARD.md").read_text()
    test = json.loads((run_dir / "test" / "metrics.json").read_text())
    meta = read_onnx_metadata(onnx_export / "model.onnx")
    assert "Not a medical device" in card and "Research only" in card
    assert "`colorU`" in card and "`mobilenet_v2`" in card and "mobilenet_v2-imagenet-features.pth" in card
    assert "Dataset `synthetic`" in card and f"test {test['n_samples']}" in card
    for label in meta["label_names"]:
        assert f"{label}" in card
    assert f"| test | test | {test['n_samples']} | {test['mean_auc']:.3f}" in card  # the run's test metrics
    assert "(image - " in card and "inside the exported graph" in card
    ops = json.loads((run_dir / "operating_points.json").read_text())  # every run chooses them on validation
    for label, t in ops["thresholds"].items():
        value = t.get("threshold") if isinstance(t, dict) else t
        if value is not None:
            assert f"- {label}: {float(value):.3f}" in card


def test_the_model_card_reads_every_test_set_and_the_operating_threshold(run_dir: Path, tmp_path: Path):
    from medcolor.export import export_metadata

    _, m = load_model(run_dir / "model.safetensors")
    info = export_metadata(m, "onnx", run_dir / "model.safetensors")
    other = tmp_path / "run"
    other.mkdir()
    for name in ("config.yaml", "data.json", "summary.json"):
        (other / name).write_bytes((run_dir / name).read_bytes())
    (other / "test").mkdir()
    (other / "test" / "metrics.json").write_bytes((run_dir / "test" / "metrics.json").read_bytes())
    extra = json.loads((run_dir / "test" / "metrics.json").read_text()) | {"split": "valid", "n_samples": 7}
    (other / "evaluate-valid").mkdir()
    (other / "evaluate-valid" / "metrics.json").write_text(json.dumps(extra))
    labels = m["label_names"]
    ops = {"rule": "youden", "thresholds": {k: {"threshold": 0.25 + 0.1 * i} for i, k in enumerate(labels)}}
    (other / "operating_points.json").write_text(json.dumps(ops))
    card = model_card(info, other, other / "model.onnx")
    assert "| evaluate-valid | valid | 7 |" in card and "| test | test |" in card
    assert "rule `youden`" in card and f"- {labels[1]}: 0.350" in card


def test_bad_formats_and_sources_are_clear_errors(run_dir: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown export format 'tflite'; valid: onnx, torchscript, safetensors"):
        export_model(run_dir, "tflite", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        export_model(tmp_path / "missing", "onnx", tmp_path)
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--format", "tflite", "-o", str(tmp_path)])
