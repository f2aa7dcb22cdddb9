"""End to end on the real data in ../shared/data, through the ``medcolor`` command (in-process).

Kermany pediatric pneumonia: ``color-module`` then ``all`` with the real ImageNet MobileNetV2 weights;
that run's T and E transferred to NIH ChestX-ray14 (1000 images, five paper labels) with ``last-layer``;
``predict``, ``colorize``, ``evaluate`` and ``export-colorizer`` round trips.  Small images (64 px)
and a few iterations: this checks the plumbing and the frozen/trained parts exactly, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medcolor.cli import main
from medcolor.io import load_colorizer, load_model

pytestmark = pytest.mark.slow

COMMON = ["--size", "64", "--batch-size", "16", "--num-workers", "0", "--no-progress", "--bootstrap", "20"]


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def _state(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def kermany_dir(shared_path) -> Path:
    return shared_path("data", "kermany-pneumonia-224")


@pytest.fixture(scope="module")
def kermany_run(tmp_path_factory, kermany_dir: Path, mobilenet_weights: Path) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "kermany"
    rc = cli(
        "train", "--dataset", "folder", "--root", kermany_dir, "--train-split", "train",
        "--option", "patient_regex=kermany", "--subset", "160", "--val", "0.03", "--test", "0.03",
        "--backbone", "mobilenet_v2", "--weights", mobilenet_weights, "--colorizer", "colorU",
        "--stages", "color-module,all", "--lr", "0.02", "--iterations", "6", "--val-every", "3",
        "--output", out, *COMMON,
    )  # fmt: skip
    assert rc == 0
    return out


def test_kermany_color_module_then_all(kermany_run: Path, mobilenet_weights: Path) -> None:
    out = kermany_run
    summary = json.loads((out / "summary.json").read_text())
    assert [s["strategy"] for s in summary["stages"]] == ["color-module", "all"]
    assert summary["data"]["label_names"] == ["PNEUMONIA"] or len(summary["data"]["label_names"]) == 1
    assert summary["data"]["train"] == 160
    for s in summary["stages"]:
        assert s["total_steps"] == 6 and s["val_every"] == 3
        assert 0.0 <= s["best_val_mean_auc"] <= 1.0
        history = json.loads((out / f"{s['index'] + 1}-{s['strategy']}" / "history.json").read_text())
        assert [h["step"] for h in history] == [3, 6]
    test = json.loads((out / "test" / "metrics.json").read_text())
    assert test["n_samples"] > 100 and 0.0 <= test["mean_auc"] <= 1.0
    lo, hi = test["ci95"]["mean_auc"]
    assert lo <= test["mean_auc"] <= hi

    # stage 1 (color-module) trains T and C; E's convolutions keep the ImageNet weights (BN layers
    # of frozen parts train, as in fastai); stage 2 (all) fine-tunes T and E
    imagenet = torch.load(mobilenet_weights, map_location="cpu", weights_only=True)
    s1 = _state(out / "1-color-module" / "model.safetensors")
    s2 = _state(out / "model.safetensors")
    convs = [k for k, v in imagenet.items() if v.ndim == 4]
    assert len(convs) == 52
    for k in convs:
        assert torch.equal(s1[f"backbone.net.{k}"], imagenet[k]), k
    assert sum(not torch.equal(s2[f"backbone.net.{k}"], imagenet[k]) for k in convs) >= 40
    t_keys = [k for k in s1 if k.startswith("colorizer.") and s1[k].is_floating_point()]
    assert any(not torch.equal(s1[k], s2[k]) for k in t_keys)
    assert (out / "colorizer.safetensors").is_file()


@pytest.fixture(scope="module")
def nih_run(tmp_path_factory, kermany_run: Path, shared_path) -> Path:
    nih_images = shared_path("data", "nih-chestxray14-1000", "images")
    nih_csv = shared_path("data", "labels", "nih", "Data_Entry_2017_v2020.csv.gz")
    out = tmp_path_factory.mktemp("e2e") / "nih-last-layer"
    rc = cli(
        "train", "--dataset", "chestxray14", "--root", nih_images, "--csv", nih_csv, "--on-missing", "present",
        "--init-from", kermany_run, "--frozen-bn", "eval", "--stages", "last-layer", "--lr", "0.05",
        "--iterations", "4", "--val-every", "2", "--val", "0.2", "--test", "0.2", "--output", out, *COMMON,
    )  # fmt: skip
    assert rc == 0
    return out


def test_last_layer_transfer_to_nih(kermany_run: Path, nih_run: Path) -> None:
    src = _state(kermany_run / "model.safetensors")
    dst = _state(nih_run / "model.safetensors")
    model, meta = load_model(nih_run / "model.safetensors")
    assert meta["label_names"] == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion"]
    assert model.head.fc.out_features == 5
    # T and E transferred and frozen (BN statistics too, frozen_bn=eval): exactly the Kermany run's
    for k, v in src.items():
        if k.startswith(("colorizer.", "backbone.")):
            assert torch.equal(dst[k], v), k
    assert not torch.equal(dst["head.fc.weight"][:1], src["head.fc.weight"][:1])
    data = json.loads((nih_run / "data.json").read_text())
    assert data["dataset_rows"] == 1000 and data["skipped_rows"] == 112120 - 1000
    assert len(pd.read_csv(nih_run / "skipped_rows.csv")) == 112120 - 1000
    test = json.loads((nih_run / "test" / "metrics.json").read_text())
    assert set(test["auc"]) == set(meta["label_names"])


def test_predict_matches_the_run_and_reads_dicom(kermany_run: Path, tmp_path: Path, write_dicom, capsys) -> None:
    preds = pd.read_csv(kermany_run / "test" / "predictions.csv")
    paths = preds["path"].tolist()[:5]
    dcm = write_dicom(tmp_path / "chest.dcm", (np.random.default_rng(0).random((80, 72)) * 4095).astype(np.uint16))
    out_csv = tmp_path / "pred.csv"
    assert cli("predict", kermany_run, *paths, dcm, "-o", out_csv, "--precision", "32-true") == 0
    got = pd.read_csv(out_csv)
    assert got["path"].tolist() == [*paths, str(dcm)]
    label = next(c for c in got.columns if c != "path")
    # the same images through predict and through the run's own test evaluation (fp32 both)
    np.testing.assert_allclose(got[label].to_numpy()[:5], preds[f"prob:{label}"].to_numpy()[:5], atol=1e-5)
    assert 0.0 <= got[label].iloc[5] <= 1.0
    # the default precision is evaluate's (fp32): the same probabilities; bf16-mixed is the fast option
    assert cli("predict", kermany_run, *paths, "-o", out_csv) == 0
    default = pd.read_csv(out_csv)[label].to_numpy()
    np.testing.assert_allclose(default, preds[f"prob:{label}"].to_numpy()[:5], atol=1e-5)
    assert cli("predict", kermany_run, *paths, "-o", out_csv, "--precision", "bf16-mixed") == 0
    fast = pd.read_csv(out_csv)[label].to_numpy()
    np.testing.assert_allclose(fast, preds[f"prob:{label}"].to_numpy()[:5], atol=0.03)
    # printing to stdout when no -o is given
    capsys.readouterr()
    assert cli("predict", kermany_run, paths[0]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"path,{label}"


def test_evaluate_reproduces_the_run_metrics(kermany_run: Path, tmp_path: Path) -> None:
    assert cli("evaluate", kermany_run, "-o", tmp_path / "eval", "--bootstrap", "20") == 0
    got = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    want = json.loads((kermany_run / "test" / "metrics.json").read_text())
    assert got["n_samples"] == want["n_samples"]
    assert got["mean_auc"] == pytest.approx(want["mean_auc"], abs=1e-6)


def test_export_colorize_and_transfer_a_colorizer(
    kermany_run: Path, kermany_dir: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "T.safetensors"
    assert cli("export-colorizer", kermany_run, "-o", exported) == 0
    t, meta = load_colorizer(exported)
    assert t.name == "colorU" and meta["backbone"] == "mobilenet_v2" and meta["size"] == 64
    assert json.loads(exported.with_suffix(".json").read_text())["colorizer"] == "colorU"
    run_t = {k[len("colorizer.") :]: v for k, v in _state(kermany_run / "model.safetensors").items()}
    for k, v in t.state_dict().items():
        assert torch.equal(v, run_t[k]), k

    images = pd.read_csv(kermany_run / "test" / "predictions.csv")["path"].tolist()[:3]
    a, b = tmp_path / "from-run", tmp_path / "from-T"
    assert cli("colorize", kermany_run, *images, "-o", a) == 0
    assert cli("colorize", exported, *images, "-o", b) == 0
    for img in images:
        name = f"{Path(img).stem}_colorized.png"
        pa, pb = np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))
        assert pa.shape[0] == 64 and pa.shape[2] == 3 and 128 <= pa.shape[1] <= 140  # input | gap | colorized
        assert np.array_equal(pa, pb)
        gray, color = pa[:, :64], pa[:, -64:]
        assert np.array_equal(gray[..., 0], gray[..., 1])
        assert not np.array_equal(color[..., 0], color[..., 1])  # T's output is not gray
    assert (a / "colorized_grid.png").is_file()

    # a new run starting from the exported T: last-layer keeps it exactly
    out = tmp_path / "from-exported"
    rc = cli(
        "train", "--dataset", "folder", "--root", kermany_dir, "--train-split", "train",
        "--option", "patient_regex=kermany", "--subset", "48", "--val", "0.02", "--test", "none",
        "--backbone", "mobilenet_v2", "--weights", mobilenet_weights, "--colorizer-from", exported,
        "--frozen-bn", "eval", "--stages", "last-layer", "--lr", "0.02", "--iterations", "2",
        "--val-every", "2", "--output", out, *COMMON,
    )  # fmt: skip
    assert rc == 0
    final = _state(out / "model.safetensors")
    for k, v in t.state_dict().items():
        assert torch.equal(final[f"colorizer.{k}"], v), k


def test_bad_input_gets_one_clear_message(tmp_path: Path, capsys) -> None:
    cases = [
        (["train", "--dataset", "folder", "--root", tmp_path / "nowhere", "--output", tmp_path / "r"], "nowhere"),
        (["train", "--backbone", "resnet19", "--output", tmp_path / "r2"], "resnet18"),
        (["train", "--colorizer", "colour", "--output", tmp_path / "r3"], "pixelshuffle"),
        (["train", "--stages", "color-module,al", "--output", tmp_path / "r4"], "transfer-all"),
        (["predict", tmp_path / "missing-run", "x.png"], "missing-run"),
        (["colorize", tmp_path, "x.png", "-o", tmp_path / "c"], "model.safetensors"),
        (["train", "--config", tmp_path / "absent.yaml"], "absent.yaml"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert cli(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"medcolor {argv[0]}: error: ") and needle in err, (argv, err)
        assert "Traceback" not in err
