from __future__ import annotations

import pytest
import torch

from medcolor.backbones import create_backbone, imagenet_weights_available, list_backbones
from medcolor.errors import UnknownNameError, WeightsError

PAPER = ["resnet18", "densenet121", "mobilenet_v2"]


def test_list_has_torchvision_classifiers():
    names = list_backbones()
    assert set(PAPER) <= set(names)
    assert "efficientnet_b0" in names and "fasterrcnn_resnet50_fpn" not in names


@pytest.mark.parametrize(("name", "width"), [("resnet18", 512), ("densenet121", 1024), ("mobilenet_v2", 1280)])
def test_feature_width(name, width):
    torch.manual_seed(0)
    e = create_backbone(name).eval()
    assert e.num_features == width
    with torch.no_grad():
        assert e(torch.rand(2, 3, 64, 64)).shape == (2, width)


@pytest.mark.parametrize("name", ["efficientnet_b0", "convnext_tiny", "regnet_x_400mf", "googlenet"])
def test_any_torchvision_classifier(name):
    e = create_backbone(name).eval()
    with torch.no_grad():
        assert e(torch.rand(1, 3, 64, 64)).shape == (1, e.num_features)


def test_local_imagenet_file_loads_and_changes_outputs(mobilenet_weights):
    torch.manual_seed(0)
    rand = create_backbone("mobilenet_v2").eval()
    torch.manual_seed(0)
    real = create_backbone("mobilenet_v2", mobilenet_weights).eval()
    assert real.load_report is not None
    assert real.load_report.missing == ["classifier.1.bias", "classifier.1.weight"]
    assert real.load_report.unexpected == []
    sd = torch.load(mobilenet_weights, weights_only=True)
    assert torch.equal(real.net.features[0][0].weight, sd["features.0.0.weight"])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(rand(x), real(x))


def test_wrong_architecture_file_is_refused(mobilenet_weights):
    with pytest.raises(WeightsError, match=r"does not fit backbone 'resnet18'.*unexpected key.*features\.0\.0"):
        create_backbone("resnet18", mobilenet_weights)


def test_wrong_shapes_are_refused(tmp_path):
    sd = create_backbone("resnet18").net.state_dict()
    sd["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"wrong shape.*conv1\.weight \(64, 1, 7, 7\) vs \(64, 3, 7, 7\)"):
        create_backbone("resnet18", path)


def test_missing_feature_tensors_are_refused(tmp_path, mobilenet_weights):
    sd = torch.load(mobilenet_weights, weights_only=True)
    sd.pop("features.18.0.weight")
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"1 feature-extractor key\(s\) missing, e\.g\. features\.18\.0\.weight"):
        create_backbone("mobilenet_v2", tmp_path / "partial.pth")


def test_full_classifier_file_and_prefixes_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    full = create_backbone("resnet18")
    sd = {f"module.{k}": v for k, v in full.net.state_dict().items()}
    sd["module.fc.weight"] = torch.zeros(1000, 512)
    sd["module.fc.bias"] = torch.zeros(1000)
    torch.save({"state_dict": sd}, tmp_path / "ckpt.pth")
    e = create_backbone("resnet18", tmp_path / "ckpt.pth")
    assert e.load_report.missing == [] and e.load_report.unexpected == []
    assert torch.equal(e.net.conv1.weight, full.net.conv1.weight)
    save_file({k[7:]: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    e2 = create_backbone("resnet18", tmp_path / "w.safetensors")
    assert torch.equal(e2.net.layer4[1].conv2.weight, full.net.layer4[1].conv2.weight)


class Evil:
    """An arbitrary object: loading it would need unpickling."""


def test_pickled_objects_are_never_loaded(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="never unpickles"):
        create_backbone("resnet18", tmp_path / "evil.pth")


def test_missing_or_garbage_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        create_backbone("resnet18", tmp_path / "junk.pth")


def test_imagenet_without_network_explains_how_to_supply_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*a, **k):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert not imagenet_weights_available("resnet18")
    with pytest.raises(
        WeightsError,
        match=r"download https://download\.pytorch\.org/models/resnet18-f37072fd\.pth.*"
        r"--weights",
    ):
        create_backbone("resnet18", "imagenet")


def test_imagenet_from_the_torchvision_cache(tmp_path, monkeypatch):
    """A file in torchvision's cache is used without network (a hospital cluster setup)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    torch.manual_seed(3)
    ref = create_backbone("resnet18")
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    sd = {**ref.net.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    # torchvision checks that the file's sha256 starts with the hash in its name; fake a matching name
    import hashlib
    import io

    buf = io.BytesIO()
    torch.save(sd, buf)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    import torchvision

    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    name = f"resnet18-{digest}.pth"
    (ckpt / name).write_bytes(buf.getvalue())
    monkeypatch.setattr(type(weights), "url", property(lambda self: f"https://download.pytorch.org/models/{name}"))
    assert imagenet_weights_available("resnet18")
    e = create_backbone("resnet18", "imagenet")
    assert e.weights == "imagenet"
    assert torch.equal(e.net.conv1.weight, ref.net.conv1.weight)


def test_unknown_backbone():
    with pytest.raises(UnknownNameError, match=r"unknown backbone 'resnet81'\. Did you mean 'resnet18'"):
        create_backbone("resnet81")
