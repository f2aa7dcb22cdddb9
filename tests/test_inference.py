from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medcolor.errors import WeightsError
from medcolor.inference import predict_probs
from medcolor.io import load_model, save_model
from medcolor.model import ColorTransferNet


def test_reduced_precision_predicts_channels_last_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = ColorTransferNet.create("colorU", "mobilenet_v2", 2, None, progress=False).train()
    view = [{"image": torch.randn(1, 32, 32)} for _ in range(5)]
    fp32 = predict_probs(model, view, batch_size=2)
    bf16 = predict_probs(model, view, batch_size=2, precision="bf16-mixed")
    assert fp32.shape == bf16.shape == (5, 2)
    assert abs(fp32 - bf16).max() < 0.05
    assert model.training
    assert all(p.is_contiguous() for p in model.parameters())  # back to the contiguous format
    again = predict_probs(model, view, batch_size=2)
    assert (again == fp32).all()  # full precision: unchanged by the bf16 call


# ----------------------------------------------------------------------------- the network carries its use

KERMANY = ("data", "kermany-pneumonia-224", "train")


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory, shared_path) -> Path:
    """12 real Kermany images (6 per class) as 8-bit PNGs in a NORMAL / PNEUMONIA folder dataset."""
    root = tmp_path_factory.mktemp("kermany12")
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir()
        for src in sorted(shared_path(*KERMANY, cls).glob("*.jpeg"))[:6]:
            Image.open(src).convert("L").save(root / cls / f"{src.stem}.png")
    return root


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = ColorTransferNet.create("pixelshuffle", "mobilenet_v2", 1, None).eval()
    net.set_usage(["PNEUMONIA"], {"mean": 0.5, "std": 0.25}, 48)
    return save_model(net, tmp_path_factory.mktemp("model") / "model.safetensors")


def test_loaded_network_carries_labels_normalisation_size_and_data_config(model_file):
    model, meta = load_model(model_file)
    assert model.labels == ["PNEUMONIA"] and model.normalization == {"mean": 0.5, "std": 0.25}
    assert model.input_size == 48 and meta["size"] == 48
    assert (
        model.pretrained_cfg["mean"] == [0.485, 0.456, 0.406]
        and meta["backbone_data_config"]["family"] == "torchvision"
    )
    assert model.usage() == (["PNEUMONIA"], {"mean": 0.5, "std": 0.25}, 48)


def test_a_file_without_usage_metadata_is_a_clear_error(tmp_path, small_folder):
    from medcolor.inference import predict_files

    net = ColorTransferNet.create("replicate", "mobilenet_v2", 1, None)
    path = save_model(net, tmp_path / "bare.safetensors")  # no labels, normalisation, size
    model, _ = load_model(path)
    with pytest.raises(WeightsError, match=r"does not record its label_names, normalization, size.*save_model"):
        model.usage(str(path))
    with pytest.raises(WeightsError, match=r"bare.safetensors does not record"):
        predict_files(path, [small_folder])


def test_predict_and_evaluate_agree_by_default(model_file, small_folder, tmp_path):
    """One precision rule: `predict` with its defaults gives the probabilities `evaluate` writes (fp32 both)."""
    from medcolor.cli import main
    from medcolor.inference import INFERENCE_PRECISION, predict_files

    assert INFERENCE_PRECISION == "32-true"
    out = tmp_path / "eval"
    args = ["evaluate", str(model_file), "--dataset", "folder", "--root", str(small_folder), "--bootstrap", "0"]
    assert main([*args, "--num-workers", "0", "-o", str(out)]) == 0
    evaluated = pd.read_csv(out / "predictions.csv")
    predicted = predict_files(model_file, evaluated["path"].tolist())  # defaults
    assert predicted["path"].tolist() == evaluated["path"].tolist() and len(predicted) == 12
    np.testing.assert_allclose(predicted["PNEUMONIA"], evaluated["prob:PNEUMONIA"], atol=1e-6)


def test_model_predict_takes_arrays_pil_and_tensors(model_file, small_folder):
    from medcolor.inference import predict_files

    files = sorted(small_folder.rglob("*.png"))[:4]
    want = predict_files(model_file, files)["PNEUMONIA"].to_numpy()
    model, _ = load_model(model_file)
    arrays = [np.asarray(Image.open(f)) for f in files]
    for images in (arrays, [Image.open(f) for f in files], np.stack(arrays)):
        got = model.predict(images)
        assert list(got.columns) == ["PNEUMONIA"]
        np.testing.assert_allclose(got["PNEUMONIA"].to_numpy(), want, atol=1e-6)
    floats = torch.from_numpy(np.stack(arrays).astype(np.float32) / 255)[:, None]  # (B, 1, H, W) in [0, 1]
    np.testing.assert_allclose(model.predict(floats)["PNEUMONIA"].to_numpy(), want, atol=2e-3)
    with pytest.raises(Exception, match=r"\[0, 1\]"):
        model.predict(torch.full((1, 1, 8, 8), 3.0))


@pytest.mark.slow
def test_notebook_five_lines(tmp_path, shared_path, mobilenet_weights):
    import medcolor

    data = {
        "dataset": "folder",
        "root": str(shared_path(*KERMANY[:2])),
        "train_split": "train",
        "subset": 48,
        "options": {"patient_regex": "kermany"},
        "val": 0.01,
        "test": 0.01,
        "size": 32,
        "num_workers": 0,
    }
    stage = {"strategy": "baseline", "lr": 0.05, "iterations": 2, "val_every": 2}
    model_cfg = {"backbone": "mobilenet_v2", "weights": str(mobilenet_weights)}
    trainer = {"progress": False, "bootstrap": 0}
    # the five lines
    cfg = medcolor.RunConfig.from_dict({"data": data, "model": model_cfg, "stages": [stage], "trainer": trainer,
                                        "output": str(tmp_path / "run")})  # fmt: skip
    result = medcolor.train(cfg)
    metrics, _ = medcolor.evaluate(result.directory, bootstrap=0, progress=False)
    model = medcolor.load(result.directory)
    probs = model.predict(
        [np.asarray(Image.open(p).convert("L")) for p in sorted(Path(data["root"]).rglob("*.jpeg"))[:3]]
    )
    assert metrics["mean_auc"] == pytest.approx(result.test["mean_auc"], abs=1e-6)
    assert list(probs.columns) == ["PNEUMONIA"] and probs.shape == (3, 1) and probs.to_numpy().max() <= 1
    assert model.labels == ["PNEUMONIA"] and model.input_size == 32


# ------------------------------------------------------------- crafted metadata: every command that loads a network
def _craft(src: Path, dst: Path, **over) -> Path:
    """``src`` with its medcolor metadata changed by ``over`` (the tensors as they are)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta, tensors = json.loads(f.metadata()["medcolor"]), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(dst), metadata={"medcolor": json.dumps({**meta, **over})})
    return dst


#: metadata no network can be used with, and what the message says (MAX_IMAGE_SIZE + 1: were the cap gone, a
#: test image would cost 0.3 GB, not the 40 GB of the `size: 100000` that was reported)
CRAFTED = {
    "size over the cap": ({"size": 8193}, r"metadata's size 8193 px is over medcolor's cap of 8192 px"),
    "fewer label names": ({"label_names": []}, r"metadata names 0 label\(s\) \(\) but the network has 1 outputs"),
    "more label names": ({"label_names": ["a", "b"]}, r"metadata names 2 label\(s\) \(a, b\) but the network has 1"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_usage_metadata_is_a_weights_error_naming_the_file_in_every_command(
    model_file, small_folder, tmp_path, capsys, case
):
    from medcolor.cli import main
    from medcolor.io import read_metadata

    over, message = CRAFTED[case]
    bad = _craft(model_file, tmp_path / "crafted.safetensors", **over)
    with pytest.raises(WeightsError, match=message):
        read_metadata(bad)  # the header alone: before any tensor or image is read
    img = next(small_folder.rglob("*.png"))
    commands = {
        "predict": ["predict", bad, img],
        "evaluate": ["evaluate", bad, "--dataset", "folder", "--root", small_folder, "--bootstrap", "0"],
        "export": ["export", bad, "-o", tmp_path / "exported"],
        "explain": ["explain", bad, img, "-o", tmp_path / "explained"],
        "colorize": ["colorize", bad, img, "-o", tmp_path / "colorized"],
    }
    for name, argv in commands.items():
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2 and str(bad) in err and "Traceback" not in err, (name, err)
        assert re.search(message, err), (name, err)


def test_a_size_in_metadata_far_over_the_cap_is_refused_from_the_header(model_file, tmp_path):
    from medcolor.io import read_metadata
    from medcolor.normalization import MAX_IMAGE_SIZE

    bad = _craft(model_file, tmp_path / "huge.safetensors", size=100_000)
    with pytest.raises(WeightsError, match=rf"huge.safetensors: .*size 100000 px is over .*cap of {MAX_IMAGE_SIZE} px"):
        load_model(bad)
    with pytest.raises(WeightsError, match=r"huge\.safetensors"):
        read_metadata(bad)


def test_predict_files_on_an_onnx_file_says_which_function_reads_it(tmp_path: Path) -> None:
    """An exported .onnx given to the PyTorch path: a ConfigError naming predict_onnx (not a header error)."""
    from medcolor.errors import ConfigError
    from medcolor.inference import predict_files

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07" + b"\x00" * 64)
    with pytest.raises(ConfigError, match=r"model\.onnx is an ONNX file.*predict_onnx"):
        predict_files(onnx, [tmp_path])
    from medcolor.io import load_model, read_metadata

    for reader in (load_model, read_metadata):  # evaluate, colorize, explain, export read through these
        with pytest.raises(ConfigError, match=r"model\.onnx is an ONNX file.*predict_onnx"):
            reader(onnx)


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"size": 100000, "label_names": ["a"], "normalization": {"mean": 0.5, "std": 0.3}}, "8192"),
        ({"size": 64, "label_names": ["a"], "architecture": {"num_classes": 3}}, "1 label"),
        ([1, 2], "not a mapping"),
    ],
    ids=["size", "labels", "shape"],
)
def test_onnx_metadata_is_checked_like_a_safetensors_header(tmp_path: Path, meta: object, problem: str) -> None:
    """A crafted .onnx (size 100000 would allocate 40 GB per batch): refused naming the file, before any image."""
    import json

    import onnx  # the dev extras hold the export extra

    from medcolor.errors import WeightsError
    from medcolor.export import METADATA_KEY, read_onnx_metadata

    proto = onnx.ModelProto()
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    path = tmp_path / "crafted.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(WeightsError, match=rf"crafted\.onnx.*{problem}"):
        read_onnx_metadata(path)
