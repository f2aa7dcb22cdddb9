"""Grad-CAM (medcolor.explain) on real Kermany X-rays: E's last block for torchvision and timm backbones, maps'
shapes and range, a map that follows a synthetic lesion, and ``medcolor explain``'s files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medcolor.cli import main
from medcolor.data.readers import load_reduced, to_float
from medcolor.data.transforms import CHEXPERT_MEAN, CHEXPERT_STD, EvalTransform
from medcolor.errors import ConfigError, WeightsError
from medcolor.explain import center_of_mass, explain, find_target_layer, resolve_labels
from medcolor.io import save_model
from medcolor.model import ColorTransferNet


@pytest.fixture(scope="module")
def kermany_images(shared_path: Callable[..., Path]) -> list[Path]:
    root = shared_path("data", "kermany-pneumonia-224", "train")
    return [sorted((root / "NORMAL").glob("*.jpeg"))[0], sorted((root / "PNEUMONIA").glob("*.jpeg"))[0]]


def _gray(path: Path, size: int) -> torch.Tensor:
    """A real X-ray as the network's reader gives it: (1, size, size) in [0, 1]."""
    return torch.from_numpy(to_float(load_reduced(path, size)))[None]


def _inputs(paths: list[Path], size: int) -> torch.Tensor:
    t = EvalTransform(size, CHEXPERT_MEAN, CHEXPERT_STD)
    return torch.stack([t(_gray(p, size)) for p in paths])


def _net(colorizer: str, backbone: str, n: int, weights: Path | None = None) -> ColorTransferNet:
    """A seeded network whose C has positive weights: every logit grows with E's (non-negative) features, so no
    Grad-CAM map is empty (a map is all zero where nothing in the image raises the logit)."""
    torch.manual_seed(0)
    m = ColorTransferNet.create(colorizer, backbone, n, weights, progress=False).eval()
    with torch.no_grad():
        m.head.fc.weight.abs_()
    return m


# ---------------------------------------------------------------------------------------------------- target layer
@pytest.mark.parametrize(
    ("backbone", "size", "expected", "shape"),
    [("resnet18", 64, "net.layer4", (1, 512, 2, 2)), ("mobilenet_v2", 64, "net.features", (1, 1280, 2, 2))],
)
def test_target_layer_of_torchvision_backbones(backbone: str, size: int, expected: str, shape: tuple) -> None:
    m = _net("replicate", backbone, 1)
    layer = find_target_layer(m.backbone, torch.zeros(1, 3, size, size))
    assert (layer.name, layer.shape) == (expected, shape)
    assert layer.module is m.backbone.get_submodule(expected)


def test_target_layer_skips_one_by_one_maps_and_works_for_timm() -> None:
    timm = pytest.importorskip("timm")
    # MobileNetV3 runs its head conv after global pooling (a 1 x 1 map), and squeeze-excitation gates (B, C, 1, 1)
    # inside its blocks: E's last spatial map is the output of its blocks
    mnv3 = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=0)
    layer = find_target_layer(mnv3, torch.zeros(1, 3, 64, 64))
    assert (layer.name, layer.shape) == ("blocks", (1, 288, 2, 2))
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    with pytest.raises(ConfigError, match="Grad-CAM needs a convolutional E"):
        find_target_layer(vit, torch.zeros(1, 3, 32, 32))
    # too small an input: the last stage is 1 x 1, so the block before it is chosen, never a pooled map
    res = _net("replicate", "resnet18", 1).backbone
    assert find_target_layer(res, torch.zeros(1, 3, 32, 32)).name == "net.layer3"


# ---------------------------------------------------------------------------------------------------- maps
def test_maps_on_real_images_have_the_input_shape_and_lie_in_0_1(kermany_images: list[Path]) -> None:
    m = _net("colorU", "resnet18", 3)
    x = _inputs(kermany_images, 64)
    maps = explain(m, x)
    assert maps.shape == (2, 3, 64, 64) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert (maps.reshape(6, -1).max(1) > 0.99).all()  # every map spans [0, 1] (min-max scaled, not empty)
    assert (maps.reshape(6, -1).min(1) < 0.01).all()
    assert not np.allclose(maps[0, 0], maps[1, 0])  # two images, two maps
    named = explain(m, x, ["C", 0], label_names=["A", "B", "C"])
    np.testing.assert_allclose(named[:, 0], maps[:, 2], atol=1e-5)
    np.testing.assert_allclose(named[:, 1], maps[:, 0], atol=1e-5)
    with pytest.raises(ConfigError, match=r"unknown label 'D': the network predicts A, B, C"):
        explain(m, x, ["D"], label_names=["A", "B", "C"])
    with pytest.raises(ConfigError, match="out of range"):
        resolve_labels([3], ["A", "B", "C"], 3)


def test_maps_need_no_trainable_parameter_and_leave_the_mode(kermany_images: list[Path]) -> None:
    m = _net("replicate", "resnet18", 1)
    m.apply_strategy("last-layer", reset_head=False)  # E frozen, as in a frozen-E run
    m.requires_grad_(False)
    m.train()
    maps = explain(m, _inputs(kermany_images[:1], 64))
    assert maps.max() > 0.99
    assert m.training  # restored
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.slow
def test_the_map_follows_a_bright_lesion_from_left_to_right(kermany_images: list[Path], mobilenet_weights: Path):
    """A real X-ray with a bright disc at 20 % / 50 % / 80 % of its width; C is set (deterministically) to sum the
    16 channels of E's features that the disc raises most relative to the plain image, wherever the disc is.
    The map's centre of mass must move with the disc: left of centre, then right of it."""
    size, r = 128, 16
    m = _net("replicate-imagenet", "mobilenet_v2", 1, mobilenet_weights)
    gray = _gray(kermany_images[0], size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    t = EvalTransform(size, CHEXPERT_MEAN, CHEXPERT_STD)

    def with_lesion(cx: int) -> torch.Tensor:
        disc = (xx - cx) ** 2 + (yy - size // 2) ** 2 <= r * r
        return t(torch.where(disc, torch.full_like(gray, 0.95), gray))[None]

    xs = {c: with_lesion(int(c * size)) for c in (0.2, 0.5, 0.8)}
    with torch.no_grad():
        plain = m.backbone(m.colorizer(t(gray)[None]))[0]
        raised = torch.stack([m.backbone(m.colorizer(x))[0] - plain for x in xs.values()]).mean(0)
        channels = (raised / (plain + plain.mean())).topk(16).indices
        m.head.fc.weight.zero_()
        m.head.fc.weight[0, channels] = 1.0
        m.head.fc.bias.zero_()
    centers = {c: center_of_mass(explain(m, x)[0, 0])[1] for c, x in xs.items()}
    assert centers[0.2] < 0.46 and centers[0.8] > 0.56, centers
    assert centers[0.2] < centers[0.5] < centers[0.8], centers
    assert centers[0.8] - centers[0.2] > 0.15, centers


def test_center_of_mass() -> None:
    heat = np.zeros((4, 10))
    heat[1, 7] = 1.0
    assert center_of_mass(heat) == (pytest.approx(0.375), pytest.approx(0.75))
    assert center_of_mass(np.zeros((3, 3))) == (None, None)


# ---------------------------------------------------------------------------------------------------- command
def test_explain_command_writes_a_figure_per_image_and_label(kermany_images: list[Path], tmp_path: Path) -> None:
    m = _net("colorU", "resnet18", 2)
    model = save_model(
        m,
        tmp_path / "model.safetensors",
        label_names=["NORMAL", "PNEUMONIA"],
        normalization={"mean": CHEXPERT_MEAN, "std": CHEXPERT_STD},
        size=64,
    )
    out = tmp_path / "cam"
    assert main(["explain", str(model), *map(str, kermany_images), "-o", str(out), "--labels", "PNEUMONIA,0"]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    stems = [p.stem for p in kermany_images]
    assert names == sorted(f"{s}_{lab}_gradcam.png" for s in stems for lab in ("NORMAL", "PNEUMONIA"))
    for n in names:
        assert (out / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "gradcam.csv")
    assert list(table["label"]) == ["PNEUMONIA", "NORMAL"] * 2
    assert set(table["target_layer"]) == {"backbone.net.layer4"}
    with torch.no_grad():
        p = torch.sigmoid(m(_inputs(kermany_images, 64))).numpy()
    np.testing.assert_allclose(table["probability"], [p[0, 1], p[0, 0], p[1, 1], p[1, 0]], atol=1e-5)
    assert table["center_x"].between(0, 1).all()


def test_explain_refuses_pickles_and_unknown_labels(kermany_images: list[Path], tmp_path: Path, capsys) -> None:
    m = _net("replicate", "resnet18", 1)
    pickled = tmp_path / "model.pth"
    torch.save(m.state_dict(), pickled)
    with pytest.raises(WeightsError, match=r"cannot read .* as safetensors"):
        from medcolor.explain import explain_files

        explain_files(pickled, kermany_images[:1], tmp_path / "out")
    model = save_model(
        m,
        tmp_path / "m.safetensors",
        label_names=["PNEUMONIA"],
        normalization={"mean": CHEXPERT_MEAN, "std": CHEXPERT_STD},
        size=64,
    )
    rc = main(["explain", str(model), str(kermany_images[0]), "-o", str(tmp_path / "o"), "--labels", "Edema"])
    assert rc != 0
    assert "unknown label 'Edema': the network predicts PNEUMONIA" in capsys.readouterr().err
