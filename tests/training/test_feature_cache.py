"""The frozen-E feature cache: C trained on cached E features gives the run of the ordinary path (real
Kermany images, the real ImageNet MobileNetV2 whose trailing dropout is applied to the cached features),
it is reused, and it is refused with a reason where it would not be exact."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from medcolor.cli import main
from medcolor.model import ColorTransferNet
from medcolor.training.features import trailing_dropout

pytestmark = pytest.mark.slow

COMMON = ["--size", "64", "--batch-size", "16", "--num-workers", "0", "--no-progress", "--bootstrap", "0"]


def _run(out: Path, root: Path, weights: Path, *extra: str) -> dict:
    args = [
        "train", "--dataset", "folder", "--root", str(root), "--train-split", "train",
        "--option", "patient_regex=kermany", "--subset", "64", "--val", "0.01", "--test", "0.01",
        "--backbone", "mobilenet_v2", "--weights", str(weights), "--stages", "baseline", "--lr", "0.05",
        "--iterations", "8", "--val-every", "4", "--no-augment", "--output", str(out), *COMMON, *extra,
    ]  # fmt: skip
    assert main(args) == 0
    history = json.loads((out / "1-baseline" / "history.json").read_text())
    return {"test": json.loads((out / "test" / "metrics.json").read_text()), "history": history}


def test_cached_and_uncached_training_agree(tmp_path, shared_path, mobilenet_weights, medcolor_log):
    root = shared_path("data", "kermany-pneumonia-224")
    plain = _run(tmp_path / "plain", root, mobilenet_weights, "--frozen-bn", "eval")
    assert "frozen-E feature cache" not in medcolor_log.text
    cache = tmp_path / "cache"
    cached = _run(
        tmp_path / "cached", root, mobilenet_weights, "--frozen-bn", "eval", "--feature-cache", "auto",
        "--cache-dir", str(cache),
    )  # fmt: skip
    assert "C trains on cached features" in medcolor_log.text
    assert cached["test"]["n_samples"] == plain["test"]["n_samples"] > 40
    assert abs(cached["test"]["mean_auc"] - plain["test"]["mean_auc"]) < 1e-4
    assert [h["step"] for h in cached["history"]] == [h["step"] for h in plain["history"]] == [4, 8]
    for a, b in zip(cached["history"], plain["history"], strict=True):
        assert abs(a["val_mean_auc"] - b["val_mean_auc"]) < 1e-4
    files = sorted(p.name for p in cache.glob("*-features-*"))
    assert len(files) == 3 and files[0].endswith(".f32")  # .f32, .index.json, .lock
    index = json.loads(next(cache.glob("*-features-*.index.json")).read_text())
    data = json.loads((tmp_path / "cached" / "data.json").read_text())
    assert len(index["rows"]) == data["train"] + data["val"] and data["train"] == 64
    # another seed reuses the features: nothing is appended
    size = next(cache.glob("*-features-*.f32")).stat().st_size
    _run(
        tmp_path / "seed1", root, mobilenet_weights, "--frozen-bn", "eval", "--feature-cache", "auto",
        "--cache-dir", str(cache), "--seed", "1",
    )  # fmt: skip
    assert next(cache.glob("*-features-*.f32")).stat().st_size == size


def test_feature_cache_is_refused_where_not_exact(tmp_path, shared_path, mobilenet_weights, medcolor_log):
    root = shared_path("data", "kermany-pneumonia-224")
    _run(tmp_path / "fastai", root, mobilenet_weights, "--feature-cache", "auto")  # frozen_bn fastai (default)
    assert "feature cache not used: frozen_bn is fastai" in medcolor_log.text


def test_trailing_dropout_and_stochastic_layers():
    torch.manual_seed(0)
    assert trailing_dropout(ColorTransferNet.create("replicate", "mobilenet_v2", 1)) == ([0.2], None)
    assert trailing_dropout(ColorTransferNet.create("replicate", "resnet18", 1)) == ([], None)
    assert trailing_dropout(ColorTransferNet.create("replicate", "timm:tf_efficientnet_lite0", 1)) == ([], None)
    _, reason = trailing_dropout(ColorTransferNet.create("replicate", "efficientnet_b0", 1))
    assert reason is not None and "draw random numbers in training" in reason


def test_computing_features_logs_a_line_every_30_seconds_with_images_rate_and_eta(caplog):
    """A sign of life while the frozen-E features are computed (minutes on a CPU): no line before 30 s nor after
    the last image; each line has the images done of the total, img/s and the ETA from them."""

    from medcolor.training.features import _FeatureProgress

    t = [0.0]
    progress = _FeatureProgress("[baseline] frozen-E features", 4172, clock=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="medcolor.training.features"):
        t[0] = 10.0
        progress.add(320)  # 10 s: not yet
        t[0] = 40.0
        progress.add(960)  # 1,280 images in 40 s: 32 img/s, 2,892 left: 90 s
        t[0] = 50.0
        progress.add(320)  # 10 s after the last line: not yet
        t[0] = 200.0
        progress.add(2892)  # the last image: the stage's own line follows
    assert [r.getMessage() for r in caplog.records] == [
        "[baseline] frozen-E features: 1,280/4,172 images (30%), 32.0 img/s, ETA 1:30"
    ]
