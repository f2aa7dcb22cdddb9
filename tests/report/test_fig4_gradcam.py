"""Fig. 4's Grad-CAM rows: training stores the Grad-CAM maps of its colorized samples (``gradcam_samples.npz``), the
report draws them over the gray input (files only), and a run without the file keeps its colour row alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_study import make_study
from PIL import Image

from medcolor.display import SAMPLES_FILE, read_colorized_samples
from medcolor.errors import DataError
from medcolor.evaluation.gradcam import (
    GRADCAM_FILE,
    GradCamSamples,
    read_gradcam_samples,
    write_gradcam_samples,
)
from medcolor.report import build_report
from medcolor.report.sections import GRADCAM_ALPHA, gradcam_overlay


def test_training_writes_grad_cam_maps_of_its_colorized_samples(real_runs) -> None:
    """The stored maps are those of the saved network on the same validation images, computed afresh (to the file's
    8-bit quantisation).  Whether a map is empty depends on the network: one of these 4-iteration networks gives the
    same output for every image on some CPUs, and Grad-CAM of a constant is zero (test_explain.py checks that the
    maps of a trained network follow a lesion)."""
    from medcolor.config import RunConfig
    from medcolor.data.bundle import build_data
    from medcolor.io import load_model
    from medcolor.training.pipeline import sample_gradcams

    for name in ("colorU-cm-all", "pixelshuffle-cm"):
        run = real_runs[name]
        cams = read_gradcam_samples(run / GRADCAM_FILE)
        samples = read_colorized_samples(run / SAMPLES_FILE)
        labels = json.loads((run / "summary.json").read_text())["data"]["label_names"]
        assert cams.names == samples.names and cams.labels == labels
        assert cams.maps.shape == (len(samples.names), len(cams.labels), *samples.grays.shape[1:])
        assert cams.maps.min() >= 0 and cams.maps.max() <= 1
        assert cams.layer.startswith("backbone.")
        bundle = build_data(RunConfig.from_yaml(run / "config.yaml").data, synthetic_dir=real_runs["data"])
        fresh = sample_gradcams(load_model(run / "model.safetensors")[0], bundle)
        assert fresh.names == cams.names and fresh.layer == cams.layer
        assert np.abs(fresh.maps - cams.maps).max() <= 0.5 / 255 + 1e-6


def test_gradcam_file_round_trip_and_damage(tmp_path: Path) -> None:
    maps = np.linspace(0, 1, 2 * 1 * 4 * 4).reshape(2, 1, 4, 4)
    write_gradcam_samples(tmp_path / GRADCAM_FILE, GradCamSamples(maps, ["A"], ["a.png", "b.png"], "backbone.x"))
    back = read_gradcam_samples(tmp_path / GRADCAM_FILE)
    assert np.abs(back.maps - maps).max() <= 0.5 / 255 + 1e-12 and back.names == ["a.png", "b.png"]
    assert back.labels == ["A"] and back.layer == "backbone.x"
    (tmp_path / GRADCAM_FILE).write_bytes(b"broken")
    with pytest.raises(DataError, match=f"{GRADCAM_FILE} is not a readable Grad-CAM samples file"):
        read_gradcam_samples(tmp_path / GRADCAM_FILE)
    with pytest.raises(DataError, match="without Grad-CAM samples"):
        read_gradcam_samples(tmp_path / "none.npz")


def test_overlay_is_the_colormap_blended_over_the_gray() -> None:
    from matplotlib import colormaps

    gray = np.full((2, 2), 0.5)
    heat = np.array([[0.0, 1.0], [0.25, 0.5]])
    out = gradcam_overlay(gray, heat)
    want = (1 - GRADCAM_ALPHA) * 0.5 + GRADCAM_ALPHA * np.asarray(colormaps["jet"](1.0)[:3])
    assert out.shape == (2, 2, 3) and np.allclose(out[0, 1], want)


def test_fig4_draws_a_grad_cam_row_per_condition_from_the_files(tmp_path: Path, real_runs) -> None:
    study = make_study(tmp_path / "study", real_runs, subsets=(None,), transfer=False)
    build_report(study, tmp_path / "with", n_boot=20)
    html = (tmp_path / "with" / "index.html").read_text()
    assert "feature map drives the Opacity logit" in html
    for f in study.rglob(GRADCAM_FILE):  # runs of a medcolor before Grad-CAM samples: colour rows only
        f.unlink()
    build_report(study, tmp_path / "without", n_boot=20)
    assert "Grad-CAM rows" not in (tmp_path / "without" / "index.html").read_text()
    sizes = {}
    for k in ("with", "without"):
        with Image.open(tmp_path / k / "figures" / "fig4_colorized_synthetic.jpg") as im:
            sizes[k] = im.size
    assert abs(sizes["with"][0] - sizes["without"][0]) <= 4  # the same columns (images)
    assert sizes["with"][1] > 1.5 * sizes["without"][1]  # input + 2 x (colour, Grad-CAM) rows against input + 2


def test_figure_file_names_shorten_paths_to_their_file_stem() -> None:
    """Fig. 4's and the validation curves' file names: a section's values, a path by its file's stem."""
    from medcolor.report.names import file_stem

    weights = "../shared/weights/efficientnet_lite0-imagenet-timm.pth"
    assert file_stem([weights]) == "efficientnet_lite0-imagenet-timm"
    assert file_stem(["timm:tf_efficientnet_lite0", "colorU"]) == "timm_tf_efficientnet_lite0_colorU"
    assert file_stem(["folder", 393, "", None, "gray", weights, 4172]) == (
        "folder_393_gray_efficientnet_lite0-imagenet-timm_4172"
    )


def test_two_figures_whose_values_shorten_alike_get_two_files() -> None:
    from medcolor.report.names import file_stem, unique_stem

    used: set[str] = set()
    a, b = file_stem(["../a/m.pth"]), file_stem(["../b/m.pth"])
    assert a == b == "m"
    assert [unique_stem(a, used), unique_stem(b, used), unique_stem("m", used), unique_stem("n", used)] == [
        "m",
        "m_2",
        "m_3",
        "n",
    ]


def test_a_transferred_rows_name_leaves_out_what_the_panels_title_says() -> None:
    """A fine-tuned row names its transfer source as ``from <arm>``, without the backbone, weights, start or dataset
    its panel's title already gives (they made each row label of the external study's Fig. 4 eight lines long)."""
    from medcolor.report.sections import _row_part
    from medcolor.study.stats import NONE, TRANSFER_FIELD

    source = "colorU · random · timm:tf_efficientnet_lite0 · ../w/lite0.pth · color-module · folder"
    title = {"folder", "393", "random", "timm:tf_efficientnet_lite0", "../w/lite0.pth"}
    assert _row_part(TRANSFER_FIELD, source, title) == "from ColorU · Color Module"
    assert _row_part(TRANSFER_FIELD, source, set()).startswith("from ColorU · random · timm:tf_efficientnet_lite0")
    assert _row_part(TRANSFER_FIELD, NONE, title) == "–"
    assert _row_part("model.colorizer", "colorU", {"colorU"}) == "ColorU"  # the arm is always named
