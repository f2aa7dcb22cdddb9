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


# ----------------------------------------------------------------------------- timm backbones
LITE0 = "efficientnet_lite0-imagenet-timm.pth"


def test_names_resolve_to_both_families():
    from medcolor.backbones import canonical_backbone_name, is_backbone, resolve_backbone

    assert resolve_backbone("resnet18") == ("torchvision", "resnet18")  # bare names keep their old meaning
    assert resolve_backbone("torchvision:resnet18") == ("torchvision", "resnet18")
    assert resolve_backbone("timm:resnet18") == ("timm", "resnet18")
    assert resolve_backbone("tf_efficientnet_lite0") == ("timm", "tf_efficientnet_lite0")  # only timm has it
    assert canonical_backbone_name("tf_efficientnet_lite0") == "timm:tf_efficientnet_lite0"
    assert canonical_backbone_name("mobilenet_v2") == "mobilenet_v2"
    assert not is_backbone("timm:no_such_net") and not is_backbone("keras:resnet18")
    with pytest.raises(UnknownNameError, match="Did you mean 'timm:tf_efficientnet_lite0'"):
        create_backbone("tf_efficientnet_lite00")


def test_data_config_travels_with_e():
    from medcolor.backbones import data_config

    tv = create_backbone("mobilenet_v2")
    assert tv.pretrained_cfg["mean"] == [0.485, 0.456, 0.406] and tv.pretrained_cfg["std"] == [0.229, 0.224, 0.225]
    lite = data_config("timm:tf_efficientnet_lite0")  # TF's (x - 127) / 128, as the weights README says
    assert lite["mean"] == pytest.approx([0.498] * 3, abs=1e-3) and lite["std"] == pytest.approx([0.502] * 3, abs=1e-3)
    assert lite["input_size"] == [3, 224, 224] and lite["interpolation"] == "bicubic"
    assert data_config("timm:vit_tiny_patch16_224")["fixed_input_size"] is True


def test_replicate_imagenet_uses_e_statistics():
    """replicate-imagenet feeds E its own statistics: for tf_efficientnet_lite0 gray g becomes (g - 0.498) / 0.502."""
    from medcolor.colorizers import create_colorizer
    from medcolor.training.pipeline import colorizer_kwargs

    kw = colorizer_kwargs("replicate-imagenet", "random", 0.5, 0.25, "timm:tf_efficientnet_lite0")
    t = create_colorizer("replicate-imagenet", **kw)
    x = torch.full((1, 1, 4, 4), 0.4)  # gray 0.5 + 0.4 * 0.25 = 0.6
    assert torch.allclose(t(x), torch.full((1, 3, 4, 4), (0.6 - 127 / 255) / (128 / 255)), atol=1e-6)
    tv = colorizer_kwargs("replicate-imagenet", "random", 0.5, 0.25, "mobilenet_v2")
    assert "e_mean" not in create_colorizer("replicate-imagenet", **tv).init_kwargs  # torchvision: ImageNet's


def test_timm_file_weights_give_the_full_models_pooled_features(shared_path):
    """E built from timm:tf_efficientnet_lite0 + the shared file == timm's full model's pre-logits on a fixed image."""
    import timm

    path = shared_path("weights", LITE0)
    e = create_backbone("timm:tf_efficientnet_lite0", path).eval()
    assert e.num_features == 1280 and e.weights == str(path) and e.load_report.missing == []
    full = timm.create_model("tf_efficientnet_lite0")
    full.load_state_dict(torch.load(path, weights_only=True))  # strict: classifier included
    full.eval()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = e(x), full.forward_head(full.forward_features(x), pre_logits=True)
        logits = full(x)
    assert (ours - theirs).abs().max().item() < 1e-5
    assert torch.allclose(full.get_classifier()(ours), logits, atol=1e-4)


def test_timm_full_model_names_natural_photos(shared_path):
    """The weights are real ImageNet ones: scikit-image's cat photos are cats, the coffee photo a coffee cup."""
    skdata = pytest.importorskip("skimage.data")  # a dev dependency (pyproject [dev])
    import timm
    from PIL import Image

    from medcolor.backbones import data_config

    full = timm.create_model("tf_efficientnet_lite0")
    full.load_state_dict(torch.load(shared_path("weights", LITE0), weights_only=True))
    cfg = data_config("timm:tf_efficientnet_lite0")
    tf = timm.data.create_transform(
        input_size=tuple(cfg["input_size"]),
        interpolation=cfg["interpolation"],
        crop_pct=cfg["crop_pct"],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )
    photos = {"chelsea": {281, 282, 283, 284, 285}, "coffee": {504, 967, 968}, "rocket": {657, 744, 812}}
    x = torch.stack([tf(Image.fromarray(getattr(skdata, n)()).convert("RGB")) for n in photos])
    with torch.no_grad():
        top = full.eval()(x).argmax(1).tolist()
    for (name, ok), cls in zip(photos.items(), top, strict=True):
        assert cls in ok, (name, cls)


def test_timm_imagenet_offline_is_a_clear_error(monkeypatch):
    import timm

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsError, match=r"cannot get the ImageNet weights of timm:tf_efficientnet_lite0.*--weights"):
        create_backbone("timm:tf_efficientnet_lite0", "imagenet")


def test_timm_wrong_file_is_refused(shared_path):
    with pytest.raises(WeightsError, match=r"does not fit backbone 'convnext_atto'.*timm's key layout"):
        create_backbone("timm:convnext_atto", shared_path("weights", LITE0))


def test_backbone_table_counts_parameters_and_flops():
    from medcolor.backbone_table import backbone_table

    rows = {r["backbone"]: r for r in backbone_table(["mobilenet_v2", "timm:tf_efficientnet_lite0"], size=224)}
    assert rows["mobilenet_v2"]["parameters"] == sum(p.numel() for p in create_backbone("mobilenet_v2").parameters())
    assert rows["timm:tf_efficientnet_lite0"]["parameters"] == 3_371_008
    assert 0.5 < rows["mobilenet_v2"]["gflops"] < 0.7 and 0.7 < rows["timm:tf_efficientnet_lite0"]["gflops"] < 0.85


def test_a_run_with_a_fixed_size_backbone_at_another_size_is_refused_before_training():
    from medcolor.config import RunConfig, check_run_config
    from medcolor.errors import ConfigError

    cfg = RunConfig.from_dict(
        {"model": {"backbone": "timm:vit_tiny_patch16_224", "weights": "none"}, "data": {"size": 64}}
    )
    with pytest.raises(ConfigError, match=r"data.size.*takes only 224 px"):
        check_run_config(cfg)
    cfg.data.size = 224
    check_run_config(cfg)  # the ViT's own size is fine
