from __future__ import annotations

import functools
import itertools

import pytest
import torch

from medcolor.colorizers import COLORIZERS, create_colorizer, list_colorizers
from medcolor.errors import ConfigError, UnknownNameError
from medcolor.model import ColorTransferNet
from medcolor.strategies import FROZEN_BN_MODES, get_strategy, list_strategies

BACKBONES = ["resnet18", "densenet121", "mobilenet_v2"]
BN = torch.nn.modules.batchnorm._BatchNorm


def _net(colorizer: str, backbone: str, classes: int = 5) -> ColorTransferNet:
    torch.manual_seed(0)
    return ColorTransferNet.create(colorizer, backbone, classes)


def _colorizer_for(strategy: str) -> str:
    return "replicate" if get_strategy(strategy).colorizer == "replicate" else "pixelshuffle"


def _bn_parameter_names(net: ColorTransferNet) -> set[str]:
    return {
        f"{mname}.{pname}"
        for mname, m in net.named_modules()
        if isinstance(m, BN)
        for pname, _ in m.named_parameters(recurse=False)
    }


def _expected_trainable(net: ColorTransferNet, strategy: str, frozen_bn: str) -> set[str]:
    s = get_strategy(strategy)
    bn = _bn_parameter_names(net)
    trained_parts = {"colorizer": s.train_colorizer, "backbone": s.train_backbone, "head": True}
    return {
        n for n, _ in net.named_parameters() if trained_parts[n.split(".")[0]] or (frozen_bn == "fastai" and n in bn)
    }


def test_strategies_registered():
    assert list_strategies() == [
        "baseline",
        "baseline-all",
        "color-module",
        "all",
        "last-layer",
        "transfer-all",
    ]
    with pytest.raises(UnknownNameError, match=r"Valid strategys?: baseline"):
        get_strategy("color_modul")


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("strategy", list_strategies())
@pytest.mark.parametrize("frozen_bn", FROZEN_BN_MODES)
def test_backward_reaches_exactly_the_trained_parameters(backbone, strategy, frozen_bn):
    net = _net(_colorizer_for(strategy), backbone, 5)
    net.mark_colorizer_transferred()  # as if T came from an earlier stage / a file
    net.apply_strategy(strategy, frozen_bn=frozen_bn)
    net.train()
    x = torch.rand(2, 1, 32, 32)
    net(x).sum().backward()
    expected = _expected_trainable(net, strategy, frozen_bn)
    assert set(net.trainable_parameter_names()) == expected
    reached = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    has_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert has_grad == expected
    # a parameter may get an all-zero gradient by chance (e.g. dead units); nearly all must be reached
    assert len(reached) >= 0.95 * len(expected) and reached <= expected
    s = get_strategy(strategy)
    assert any(n.startswith("head.") for n in reached)
    backbone_weights = {n for n in reached if n.startswith("backbone.")} - _bn_parameter_names(net)
    assert bool(backbone_weights) == s.train_backbone


@pytest.mark.parametrize("colorizer", [c for c in list_colorizers() if COLORIZERS.get(c).learnable])
@pytest.mark.parametrize("strategy", ["color-module", "all", "transfer-all"])
def test_every_colorizer_is_trained_by_colorization_strategies(colorizer, strategy):
    net = _net(colorizer, "mobilenet_v2", 1)
    net.mark_colorizer_transferred()
    net.apply_strategy(strategy, frozen_bn="eval")
    net.train()
    net(torch.rand(2, 1, 40, 40)).sum().backward()
    t = [p for p in net.colorizer.parameters()]
    assert t and all(p.grad is not None for p in t)
    e_grads = [p.grad is not None for p in net.backbone.parameters()]
    assert all(e_grads) if strategy != "color-module" else not any(e_grads)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_eval_mode_keeps_frozen_bn_statistics(backbone):
    net = _net("pixelshuffle", backbone)
    net.apply_strategy("color-module", frozen_bn="eval")
    net.train()
    bns = [m for m in net.backbone.modules() if isinstance(m, BN)]
    assert bns and all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    net(torch.rand(3, 1, 32, 32))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns, strict=True))
    assert all(m.training for m in net.colorizer.modules() if isinstance(m, BN))


@pytest.mark.parametrize("frozen_bn", ["fastai", "stats"])
def test_other_modes_update_frozen_bn_statistics(frozen_bn):
    net = _net("pixelshuffle", "resnet18")
    net.apply_strategy("color-module", frozen_bn=frozen_bn)
    net.train()
    before = net.backbone.net.bn1.running_mean.clone()
    net(torch.rand(3, 1, 32, 32))
    assert not torch.equal(before, net.backbone.net.bn1.running_mean)
    assert net.backbone.net.bn1.weight.requires_grad == (frozen_bn == "fastai")


def test_new_stage_reinitialises_c():
    net = _net("pixelshuffle", "resnet18")
    net.apply_strategy("color-module")
    with torch.no_grad():
        net.head.fc.weight.fill_(3.0)
    net.apply_strategy("all")
    assert not torch.all(net.head.fc.weight == 3.0)
    with torch.no_grad():
        net.head.fc.weight.fill_(3.0)
    net.apply_strategy("all", reset_head=False)
    assert torch.all(net.head.fc.weight == 3.0)


def test_strategy_colorizer_mismatches_are_explained():
    with pytest.raises(ConfigError, match="use colorizer 'replicate'"):
        _net("pixelshuffle", "resnet18").apply_strategy("baseline")
    with pytest.raises(ConfigError, match="has no parameters; choose deconv, pixelshuffle or colorU"):
        _net("replicate", "resnet18").apply_strategy("color-module")
    with pytest.raises(ConfigError, match=r"needs a transferred colorization module.*--colorizer-from"):
        _net("colorU", "resnet18").apply_strategy("last-layer")
    with pytest.raises(ConfigError, match="unknown frozen_bn mode 'freeze'"):
        _net("colorU", "resnet18").apply_strategy("color-module", frozen_bn="freeze")


def test_last_layer_with_replicate_is_allowed():
    net = _net("replicate", "resnet18")
    net.apply_strategy("last-layer")
    assert set(net.trainable_parameter_names()) >= {"head.fc.weight", "head.fc.bias"}


def test_parameter_budget_color_module_vs_all():
    """Paper Sec. V-A: Color Module updates ~10^5 parameters, Baseline All ~10^7 (ResNet18)."""
    net = _net("pixelshuffle", "resnet18")
    net.apply_strategy("color-module", frozen_bn="eval")
    s = net.parameter_summary()
    trainable_cm = sum(v["trainable"] for v in s.values())
    assert 1e5 < trainable_cm < 1e6
    net.apply_strategy("all")
    trainable_all = sum(v["trainable"] for v in net.parameter_summary().values())
    assert 1e7 < trainable_all < 2e7


def test_paper_aliases_and_architecture_round_trip():
    net = _net("colorU", "mobilenet_v2", 3)
    assert net.T is net.colorizer and net.E is net.backbone and net.C is net.head
    again = ColorTransferNet.from_architecture(net.architecture())
    assert again.architecture() == net.architecture()
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- the T x E x strategy contract
#: one backbone per architecture family of torchvision (random init, small input)
CONTRACT_BACKBONES = [
    "resnet18",
    "densenet121",
    "mobilenet_v2",
    "efficientnet_b0",
    "regnet_y_400mf",
    "shufflenet_v2_x0_5",
    "convnext_tiny",
    # timm families (small variants): EfficientNet (TF padding), ConvNeXt, ResNet, a ViT (fixed input size)
    "timm:tf_efficientnet_lite0",
    "timm:convnext_atto",
    "timm:resnet10t",
    "timm:vit_tiny_patch16_224",
]


@functools.cache
def _contract_net(backbone: str) -> ColorTransferNet:
    torch.manual_seed(0)
    return ColorTransferNet.create("replicate", backbone, 3)


@functools.cache
def _contract_colorizer(name: str):
    torch.manual_seed(0)
    return create_colorizer(name)


@functools.cache
def _contract_output_shape(backbone: str, colorizer: str) -> tuple[int, ...]:
    net = _contract_net(backbone)
    net.replace_colorizer(_contract_colorizer(colorizer))
    size = 36  # not a multiple of the colorizers' strides
    if net.backbone.pretrained_cfg["fixed_input_size"]:  # a ViT: any other size is refused with a clear error
        with pytest.raises(ConfigError, match=r"takes only 224x224 inputs.*--size 224"), torch.no_grad():
            net.eval()(torch.rand(1, 1, size, size))
        size = net.backbone.pretrained_cfg["input_size"][-1]
    with torch.no_grad():
        y = net.eval()(torch.rand(2, 1, size, size))
    assert y.dtype == torch.float32
    return tuple(y.shape)


@pytest.mark.parametrize("strategy", list_strategies())
@pytest.mark.parametrize("colorizer", list_colorizers())
@pytest.mark.parametrize("backbone", CONTRACT_BACKBONES)
def test_every_colorizer_backbone_and_strategy(backbone, colorizer, strategy):
    """Each strategy either refuses the T it is given (as the strategy table says) or gives a network
    whose output is (B, labels) and in which exactly the parts of the table train.  (Gradients reaching
    exactly those parameters: test_backward_reaches_exactly_the_trained_parameters.)"""
    assert _contract_output_shape(backbone, colorizer) == (2, 3)
    net = _contract_net(backbone)
    net.replace_colorizer(_contract_colorizer(colorizer), transferred=False)
    s = get_strategy(strategy)
    learnable = net.colorizer.learnable
    if (s.colorizer == "replicate" and learnable) or (s.colorizer == "learned" and not learnable):
        with pytest.raises(ConfigError):
            net.apply_strategy(strategy)
        return
    if s.colorizer == "transferred" and learnable:
        with pytest.raises(ConfigError, match="needs a transferred colorization module"):
            net.apply_strategy(strategy)  # a fresh T is not a transferred one
        net.mark_colorizer_transferred()
    net.apply_strategy(strategy, frozen_bn="stats")  # frozen parts fully frozen: the table exactly
    trains = {"colorizer": s.train_colorizer, "backbone": s.train_backbone, "head": True}
    for name, p in net.named_parameters():
        assert p.requires_grad == trains[name.split(".")[0]], name
    summary = net.parameter_summary()
    assert summary["C"]["trainable"] == summary["C"]["total"] > 0
    assert summary["E"]["trainable"] == (summary["E"]["total"] if s.train_backbone else 0)
    assert summary["T"]["trainable"] == (summary["T"]["total"] if s.train_colorizer else 0)


@pytest.mark.parametrize("colorizer", list_colorizers())
def test_run_check_and_model_agree_on_every_stage_sequence(colorizer):
    """The run's up-front check (config) and the model's check at each stage are the same rule."""
    from medcolor.strategies import check_stage_sequence

    net = _contract_net("mobilenet_v2")
    net.replace_colorizer(_contract_colorizer(colorizer))
    learnable = net.colorizer.learnable
    for seq in itertools.product(list_strategies(), repeat=2):
        try:
            check_stage_sequence(seq, colorizer=colorizer, learnable=learnable, transferred=False)
            up_front = None
        except ConfigError as exc:
            up_front = str(exc)
        net.mark_colorizer_transferred(False)
        at_run = None
        for s in seq:
            try:
                net.check_strategy(s)  # what apply_strategy checks at the start of each stage
            except ConfigError as exc:
                at_run = str(exc)
                break
            net.finish_stage(s)
        assert (up_front is None) == (at_run is None), (seq, up_front, at_run)


def test_colorizer_transferred_has_one_writer():
    net = _net("colorU", "mobilenet_v2")
    assert not net.colorizer_transferred
    with pytest.raises(AttributeError):
        net.colorizer_transferred = True
    net.finish_stage("baseline-all")  # does not train T
    assert not net.colorizer_transferred
    net.finish_stage("color-module")
    assert net.colorizer_transferred
    net.replace_colorizer(create_colorizer("replicate"))
    assert not net.colorizer_transferred  # the gray copy is never "transferred"
