from __future__ import annotations

import pytest
import torch

from medcolor.colorizers import (
    ColorUColorizer,
    PixelShuffleColorizer,
    colorizer_table,
    count_parameters,
    create_colorizer,
    list_colorizers,
)
from medcolor.errors import ConfigError, UnknownNameError

ALL = list_colorizers()


PAPER = {"deconv", "pixelshuffle", "colorU", "replicate"}
ABLATIONS = {"lut", "replicate-imagenet"}
LEARNABLE = [n for n in ALL if create_colorizer(n).learnable]


def test_registry_has_the_papers_modules_and_the_ablations():
    assert set(ALL) == PAPER | ABLATIONS


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [(64, 64), (96, 80), (33, 47), (17, 9), (1, 1)])
def test_output_is_three_channels_of_input_size(name, size):
    torch.manual_seed(0)
    m = create_colorizer(name).eval()
    x = torch.rand(2, 1, *size)
    y = m(x)
    assert y.shape == (2, 3, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["deconv", "pixelshuffle", "colorU"])
def test_trunk_shapes_at_paper_resolution(name):
    m = create_colorizer(name).eval()
    if name in ("deconv", "pixelshuffle"):
        z = m.trunk(torch.zeros(1, 1, 320, 320))
        assert z.shape == (1, 64, 80, 80)  # paper Sec. III-B
    else:
        d1 = m.down1(torch.zeros(1, 1, 320, 320))
        assert d1.shape == (1, 16, 160, 160)
        assert m.down3(m.down2(d1)).shape == (1, 64, 40, 40)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    m = create_colorizer(name).train()
    x = torch.rand(2, 1, 40, 40, requires_grad=True)
    m(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname


def test_parameter_counts_match_the_paper():
    counts = {r["colorizer"]: r["parameters"] for r in colorizer_table(size=64)}
    assert counts["replicate"] == 0
    assert 5e5 < counts["deconv"] < 7e5 and 5e5 < counts["pixelshuffle"] < 7e5  # order 10^5 (paper Sec. V-A)
    ratio = counts["colorU"] / counts["pixelshuffle"]
    assert 0.28 < ratio < 0.38, ratio  # "about 1/3"


def test_flops_scale_with_area():
    small = {r["colorizer"]: r["gflops"] for r in colorizer_table(size=64)}
    big = {r["colorizer"]: r["gflops"] for r in colorizer_table(size=128)}
    for name in ("deconv", "pixelshuffle", "colorU"):
        assert big[name] == pytest.approx(4 * small[name], rel=0.02)


def test_pixelshuffle_starts_as_nearest_neighbour_upsampling():
    """ICNR: the 16 sub-pixels of every 4x4 block are equal before the blur."""
    m = PixelShuffleColorizer().eval()
    with torch.no_grad():
        up = m.shuffle(m.head(m.trunk(torch.rand(1, 1, 32, 32))))
    blocks = up.unfold(2, 4, 4).unfold(3, 4, 4)  # (1, 3, 8, 8, 4, 4)
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks), atol=1e-6)


def test_colorU_has_no_pooling_and_no_final_bn():
    m = ColorUColorizer()
    assert not any(isinstance(x, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for x in m.modules())
    assert isinstance(m.out[-1], torch.nn.Conv2d) and m.out[-1].kernel_size == (1, 1)


def test_replicate_copies_gray():
    x = torch.rand(3, 1, 8, 8)
    y = create_colorizer("replicate")(x)
    assert torch.equal(y, x.expand(-1, 3, -1, -1))
    assert count_parameters(create_colorizer("replicate")) == 0


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'pixelshuffle'.*deconv"):
        create_colorizer("pixelshufle")


def test_bad_options_and_inputs_are_clear():
    with pytest.raises(ConfigError, match="invalid options for colorizer 'deconv'"):
        create_colorizer("deconv", nonsense=3)
    with pytest.raises(ConfigError, match=r"1-channel images.*\(2, 3, 8, 8\)"):
        create_colorizer("colorU")(torch.rand(2, 3, 8, 8))


def test_name_lookup_is_case_insensitive():
    assert create_colorizer("COLORU").name == "colorU"


@pytest.mark.parametrize("name", LEARNABLE)
@pytest.mark.parametrize("size", [(32, 32), (33, 47)])
def test_gray_start_equals_the_baseline_input_until_trained(name, size):
    """start="gray": T's output equals the gray copy exactly at initialisation (train and eval mode), and
    one SGD step moves it away (the zeroed output layer gets a gradient)."""
    torch.manual_seed(0)
    m = create_colorizer(name, start="gray")
    x = torch.randn(2, 1, *size)
    for mode in (True, False):
        m.train(mode)
        assert torch.equal(m(x), x.expand(-1, 3, -1, -1))
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    (m(x) - torch.randn(2, 3, *size)).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.output_layer().parameters())
    opt.step()
    assert not torch.equal(m(x), x.expand(-1, 3, -1, -1))
    assert m.init_kwargs["start"] == "gray"


def test_gray_start_survives_save_and_load(tmp_path):
    from medcolor.io import load_colorizer, save_colorizer

    torch.manual_seed(0)
    t = create_colorizer("colorU", start="gray")
    with torch.no_grad():
        t.out[-1].weight.add_(0.01)
    x = torch.rand(1, 1, 16, 16)
    t2, _ = load_colorizer(save_colorizer(t.eval(), tmp_path / "t.safetensors"))
    assert t2.residual and torch.equal(t2.eval()(x), t(x))


def test_gray_start_needs_a_learnable_t_and_a_known_start():
    with pytest.raises(ConfigError, match="no learnable output layer"):
        create_colorizer("replicate", start="gray")
    with pytest.raises(ConfigError, match="unknown colorizer start 'grey'"):
        create_colorizer("colorU", start="grey")


def test_lut_is_pointwise():
    """The pointwise T has no spatial context: permuting pixels permutes its output the same way."""
    torch.manual_seed(0)
    m = create_colorizer("lut").eval()
    x = torch.randn(1, 1, 12, 12)
    perm = torch.randperm(144)
    y = m(x).flatten(2)
    yp = m(x.flatten(2)[..., perm].view(1, 1, 12, 12)).flatten(2)
    assert torch.allclose(yp, y[..., perm], atol=1e-6)
    assert 500 < count_parameters(m) < 2000  # ~10^3 parameters


def test_replicate_imagenet_gives_imagenet_normalised_gray():
    from medcolor.normalization import IMAGENET_MEAN, IMAGENET_STD

    gray = torch.rand(2, 1, 8, 8)
    mean, std = 0.4, 0.25
    m = create_colorizer("replicate-imagenet", data_mean=mean, data_std=std)
    y = m((gray - mean) / std)
    want = (gray.expand(-1, 3, -1, -1) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(1, 3, 1, 1)
    assert torch.allclose(y, want, atol=1e-5)
    assert count_parameters(m) == 0 and not m.learnable
