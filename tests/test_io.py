from __future__ import annotations

import json

import pytest
import torch

from medcolor.colorizers import list_colorizers
from medcolor.errors import WeightsError
from medcolor.io import load_colorizer, load_model, save_colorizer, save_model, sidecar_path
from medcolor.model import ColorTransferNet


@pytest.mark.parametrize("name", list_colorizers())
def test_colorizer_round_trip_gives_identical_outputs(tmp_path, name):
    torch.manual_seed(0)
    net = ColorTransferNet.create(name, "mobilenet_v2", 5)
    t = net.colorizer
    # move BN statistics away from their defaults so the round trip must carry buffers too
    t.train()
    with torch.no_grad():
        for _ in range(3):
            t(torch.rand(4, 1, 48, 48))
    t.eval()
    path = save_colorizer(
        t,
        tmp_path / "T.safetensors",
        normalization={"mean": 0.5028, "std": 0.2902},
        backbone="mobilenet_v2",
        strategy="color-module",
        dataset="chexpert",
        size=320,
    )
    loaded, meta = load_colorizer(path)
    loaded.eval()
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(t(x), loaded(x))
    assert meta["colorizer"] == name and meta["backbone"] == "mobilenet_v2"
    assert meta["normalization"] == {"mean": 0.5028, "std": 0.2902}
    side = json.loads(sidecar_path(path).read_text())
    assert side["strategy"] == "color-module" and side["format"] == "medcolor-colorizer"


def test_transferred_colorizer_enables_last_layer(tmp_path):
    torch.manual_seed(0)
    src = ColorTransferNet.create("colorU", "mobilenet_v2", 5)
    path = save_colorizer(src.colorizer, tmp_path / "T.safetensors")
    dst = ColorTransferNet.create("replicate", "mobilenet_v2", 1)
    t, _ = load_colorizer(path)
    dst.replace_colorizer(t)
    dst.apply_strategy("last-layer", frozen_bn="eval")
    assert dst.trainable_parameter_names() == ["head.fc.weight", "head.fc.bias"]


def test_model_round_trip_and_colorizer_extraction(tmp_path):
    torch.manual_seed(0)
    net = ColorTransferNet.create("pixelshuffle", "resnet18", 5).eval()
    path = save_model(net, tmp_path / "model.safetensors", label_names=list("abcde"), size=64)
    again, meta = load_model(path)
    again.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    assert meta["label_names"] == list("abcde") and again.colorizer_transferred
    t, tmeta = load_colorizer(path)
    with torch.no_grad():
        assert torch.equal(t.eval()(x), net.colorizer(x))
    assert tmeta["colorizer"] == "pixelshuffle"


def test_bad_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(WeightsError, match="does not exist"):
        load_colorizer(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(WeightsError, match="cannot read"):
        load_colorizer(tmp_path / "junk.safetensors")
    save_file({"a": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(WeightsError, match="without medcolor metadata"):
        load_colorizer(tmp_path / "foreign.safetensors")
    t = ColorTransferNet.create("colorU", "mobilenet_v2", 1).colorizer
    path = save_colorizer(t, tmp_path / "T.safetensors")
    with pytest.raises(WeightsError, match="expected a 'medcolor-model'"):
        load_model(path)
    # weights that do not match the architecture named in the metadata
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match="does not fit the architecture"):
        load_colorizer(tmp_path / "broken.safetensors")


def test_atomic_writes_leave_no_temporary_file_and_usual_permissions(tmp_path):
    import os
    import stat

    from medcolor.utils import atomic_path, write_json

    target = write_json(tmp_path / "m.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    try:
        with atomic_path(tmp_path / "half.csv") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("{not json", "metadata is not valid JSON"),
        ("[1, 2]", "metadata must be a JSON object, not list"),
        ('"text"', "metadata must be a JSON object, not str"),
        ('{"format": "medcolor-model"}', "has no 'architecture' object"),
        ('{"format": "medcolor-model", "architecture": [1]}', "has no 'architecture' object"),
        ('{"format": "medcolor-model", "architecture": {"colorizer": "colorU"}}', "lacks backbone, num_classes"),
        ('{"format": "medcolor-colorizer"}', "names no colorizer"),
    ],
)
def test_damaged_metadata_is_a_clear_error(tmp_path, header, message):
    from safetensors.torch import save_file

    from medcolor.io import colorizer_name

    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={"medcolor": header})
    loaders = [load_colorizer, colorizer_name] + ([load_model] if "model" in header or "[" in header else [])
    for load in loaders:
        with pytest.raises(WeightsError, match=message):
            load(path)


def test_export_colorizer_writes_a_learned_t_and_refuses_the_gray_copy(tmp_path):
    from medcolor.errors import ConfigError
    from medcolor.inference import export_colorizer

    torch.manual_seed(0)
    net = ColorTransferNet.create("colorU", "mobilenet_v2", 2).eval()
    model = save_model(net, tmp_path / "model.safetensors", label_names=["a", "b"], size=64)
    path, t = export_colorizer(model, tmp_path / "t.safetensors")
    again, meta = load_colorizer(path)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), net.colorizer(x))
    assert t.name == "colorU" and meta["size"] == 64 and path.with_suffix(".json").is_file()

    gray = save_model(ColorTransferNet.create("replicate", "mobilenet_v2", 2), tmp_path / "g.safetensors")
    with pytest.raises(
        ConfigError, match=r"g\.safetensors has no learned colorization module \(its T is 'replicate'\)"
    ):
        export_colorizer(gray, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()
