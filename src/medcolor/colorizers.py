"""T — the colorization modules (paper Sec. III-B, Figs. 2-3).

Every module maps a 1-channel image ``(B, 1, H, W)`` to a 3-channel image ``(B, 3, H, W)`` of the same
height and width, to be fed to an ImageNet-pretrained backbone E.

* ``deconv``       stem + 8 residual blocks + 1x1 conv to 3 channels + x4 transposed convolution
* ``pixelshuffle`` same trunk, head = 1x1 conv 64->48 + BN (ICNR init) + PixelShuffle(4) + blur
* ``colorU``       a U-Net-like module of strided convolutions (ColorDown x3, ColorUp x2, ColorOut)
* ``replicate``    the baseline: the gray channel copied three times, no parameters

Ablations the paper did not run (off by default, so the paper's setting stays the default):

* ``lut``                a pointwise T: a 1x1-convolution MLP 1->32->32->3 (1,219 parameters), a learned
                         intensity -> colour mapping with no spatial context;
* ``replicate-imagenet`` the baseline's gray copy followed by ImageNet's per-channel normalisation (what the
                         frozen ImageNet E expects) instead of one gray mean/std for all three channels;
* ``start="gray"``       (``create_colorizer(name, start="gray")``, ``--colorizer-start gray``) any learnable
                         T as a residual on the gray copy, ``y = x + T(x)``, with T's output layer
                         zero-initialised: it starts exactly at the baseline's input instead of at noise.

Inputs whose height or width is not a multiple of a module's :attr:`Colorizer.stride` are padded
(replicate padding, right/bottom) to the next multiple and the output is cropped back, so the output
always has the input's size.

Use :func:`create_colorizer` to build one by name and :func:`list_colorizers` for the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medcolor.errors import ConfigError
from medcolor.normalization import CHEXPERT_MEAN, CHEXPERT_STD, IMAGENET_MEAN, IMAGENET_STD
from medcolor.registry import Registry

COLORIZERS: Registry[type[Colorizer]] = Registry("colorizer")


def register_colorizer(name: str):
    """Class decorator: register a :class:`Colorizer` subclass under ``name``."""

    def deco(cls: type[Colorizer]) -> type[Colorizer]:
        cls.name = name
        COLORIZERS.register(name, cls)
        return cls

    return deco


#: how a learnable T starts: "random" (the paper) or "gray" (a residual on the gray copy, starting at it)
COLORIZER_STARTS = ("random", "gray")


def create_colorizer(name: str, *, start: str = "random", **kwargs: Any) -> Colorizer:
    """Build the colorization module registered as ``name`` (case-insensitive).

    ``start="gray"`` makes a learnable T a residual on the gray copy whose output layer starts at zero
    (:meth:`Colorizer.start_from_gray`)."""
    cls = COLORIZERS.get(name)
    if start not in COLORIZER_STARTS:
        raise ConfigError(f"unknown colorizer start {start!r}; valid: {', '.join(COLORIZER_STARTS)}")
    try:
        t = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid options for colorizer {cls.name!r}: {exc}") from exc
    if start == "gray":
        t.start_from_gray()
    return t


def list_colorizers() -> list[str]:
    """Names of all registered colorization modules."""
    return COLORIZERS.names()


class Colorizer(nn.Module):
    """Base class: pads to :attr:`stride`, calls :meth:`colorize`, crops back to the input size."""

    name: ClassVar[str] = "colorizer"
    #: the input's height and width must be multiples of this; other sizes are padded and cropped back
    stride: ClassVar[int] = 1
    #: whether the module has learnable parameters (``replicate`` has none)
    learnable: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {}
        #: output = gray copy + colorize(x) (see :meth:`start_from_gray`)
        self.residual = False

    def colorize(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_layer(self) -> nn.Module:
        """The last layer with weights (zeroed by :meth:`start_from_gray`)."""
        raise ConfigError(f"colorizer {self.name!r} has no learnable output layer to start from gray")

    def start_from_gray(self) -> Colorizer:
        """Make T a residual on the gray copy, ``y = x + colorize(x)``, with its output layer's weights and
        bias set to zero: at the start ``y`` equals the baseline's input exactly, and training moves away
        from it.  Recorded in :attr:`init_kwargs` (``start="gray"``), so saved T's load the same way."""
        layer = self.output_layer()
        with torch.no_grad():
            for p in layer.parameters(recurse=False):
                p.zero_()
        self.residual = True
        self.init_kwargs["start"] = "gray"
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ConfigError(
                f"colorizer {self.name!r} expects a batch of 1-channel images (B, 1, H, W), got shape "
                f"{tuple(x.shape)}; convert RGB inputs to gray first (medcolor.data.readers does this)"
            )
        h, w = x.shape[-2:]
        s = self.stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        y = self.colorize(x)
        if self.residual:
            y = y + x
        if ph or pw:
            y = y[..., :h, :w]
        return y


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, slope: float = 0.01) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(slope, inplace=True),
    )


class ResidualBlock(nn.Module):
    """(conv 3x3 + BN + LeakyReLU) x 2 with an identity skip (Fig. 2, dashed box)."""

    def __init__(self, channels: int = 64, slope: float = 0.01) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_act(channels, channels, 3, slope=slope), _conv_bn_act(channels, channels, 3, slope=slope)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform convolutions, BN weight 1 / bias 0 (the released modules' initialisation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _ResidualTrunk(Colorizer):
    """Shared stem (1x320x320 -> 64x80x80) and residual blocks of DECONV and PixelShuffle."""

    stride = 4

    def __init__(self, channels: int = 64, blocks: int = 8, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.init_kwargs = {"channels": channels, "blocks": blocks, "negative_slope": negative_slope}
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(channels, negative_slope) for _ in range(blocks)])

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


@register_colorizer("deconv")
class DeconvColorizer(_ResidualTrunk):
    """DECONV: residual trunk, 1x1 conv to 3 channels, per-channel transposed convolution x4."""

    def __init__(self, channels: int = 64, blocks: int = 8, negative_slope: float = 0.01) -> None:
        super().__init__(channels, blocks, negative_slope)
        self.to_rgb = nn.Conv2d(channels, 3, 1)
        self.upsample = nn.ConvTranspose2d(3, 3, kernel_size=8, stride=4, padding=2, groups=3, bias=False)
        _init_weights(self)

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.to_rgb(self.trunk(x)))

    def output_layer(self) -> nn.Module:
        return self.upsample


def icnr_(weight: torch.Tensor, scale: int, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR initialisation (Aitken et al. 2017): each group of ``scale**2`` output channels starts
    identical, so conv + PixelShuffle begins as a nearest-neighbour upsampling."""
    out_ch = weight.shape[0]
    if out_ch % (scale**2):
        raise ValueError(f"ICNR needs out_channels divisible by scale**2, got {out_ch} and {scale}")
    base = torch.empty((out_ch // scale**2, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    init(base)
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(scale**2, dim=0))
    return weight


@register_colorizer("pixelshuffle")
class PixelShuffleColorizer(_ResidualTrunk):
    """PixelShuffle: residual trunk, 1x1 conv 64->48 + BN (ICNR), PixelShuffle(4), blur."""

    def __init__(self, channels: int = 64, blocks: int = 8, negative_slope: float = 0.01) -> None:
        super().__init__(channels, blocks, negative_slope)
        self.head = nn.Sequential(nn.Conv2d(channels, 3 * 16, 1, bias=False), nn.BatchNorm2d(3 * 16))
        self.shuffle = nn.PixelShuffle(4)
        # replication pad (1 left, 1 top) + 2x2 average pool, stride 1: against checkerboard artefacts
        self.blur = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1))
        _init_weights(self)
        icnr_(self.head[0].weight, 4)

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(self.shuffle(self.head(self.trunk(x))))

    def output_layer(self) -> nn.Module:
        return self.head[1]  # the BN after the ICNR conv: gamma = beta = 0 gives 0 whatever comes in


class ColorDown(nn.Sequential):
    """conv 3x3 -> LeakyReLU -> conv 4x4 stride 2 -> LeakyReLU -> BN (halves H and W)."""

    def __init__(self, cin: int, cout: int, slope: float = 0.01) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(cout, cout, 4, stride=2, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.BatchNorm2d(cout),
        )


class ColorUp(nn.Sequential):
    """transposed conv 4x4 stride 2 -> two conv 3x3 (LeakyReLU each) -> BN (doubles H and W)."""

    def __init__(self, cin: int, cout: int, slope: float = 0.01) -> None:
        super().__init__(
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.BatchNorm2d(cout),
        )


class ColorOut(nn.Sequential):
    """Like ColorUp without the final BN; the last conv is 1x1 to 3 channels with no activation."""

    def __init__(self, cin: int, mid: int, cout: int = 3, slope: float = 0.01) -> None:
        super().__init__(
            nn.ConvTranspose2d(cin, mid, 4, stride=2, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.LeakyReLU(slope, inplace=True),
            nn.Conv2d(mid, cout, 1),
        )


@register_colorizer("colorU")
class ColorUColorizer(Colorizer):
    """ColorU (Fig. 3): ColorDown 1->16->32->64, ColorUp 64->32 and 64->16 with skip concatenation,
    ColorOut 32->16->3 at full resolution."""

    stride = 8

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.init_kwargs = {"negative_slope": negative_slope}
        s = negative_slope
        self.down1, self.down2, self.down3 = ColorDown(1, 16, s), ColorDown(16, 32, s), ColorDown(32, 64, s)
        self.up1, self.up2 = ColorUp(64, 32, s), ColorUp(64, 16, s)
        self.out = ColorOut(32, 16, 3, s)
        _init_weights(self)

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)  # 16 x H/2
        d2 = self.down2(d1)  # 32 x H/4
        d3 = self.down3(d2)  # 64 x H/8
        u1 = torch.cat([self.up1(d3), d2], dim=1)  # 64 x H/4
        u2 = torch.cat([self.up2(u1), d1], dim=1)  # 32 x H/2
        return self.out(u2)  # 3 x H

    def output_layer(self) -> nn.Module:
        return self.out[-1]


@register_colorizer("replicate")
class ReplicateColorizer(Colorizer):
    """The baseline: the gray channel copied to three channels (no parameters)."""

    learnable = False

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


@register_colorizer("replicate-imagenet")
class ReplicateImagenetColorizer(Colorizer):
    """Ablation of the baseline's input: the gray copy with ImageNet's per-channel normalisation.

    Inputs arrive normalised with the data's gray ``data_mean`` / ``data_std`` (CheXpert's unless the run
    computes its own: the run passes its values); the output is ``(gray - mean_c) / std_c`` with E's own
    RGB ``e_mean`` / ``e_std`` (its pretrained data config: the run passes them; ImageNet's by default), the
    statistics a frozen E was trained with.  No parameters."""

    learnable = False

    def __init__(
        self,
        data_mean: float = CHEXPERT_MEAN,
        data_std: float = CHEXPERT_STD,
        e_mean: Sequence[float] = IMAGENET_MEAN,
        e_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {"data_mean": float(data_mean), "data_std": float(data_std)}
        if tuple(e_mean) != tuple(IMAGENET_MEAN) or tuple(e_std) != tuple(IMAGENET_STD):
            self.init_kwargs |= {"e_mean": [float(v) for v in e_mean], "e_std": [float(v) for v in e_std]}
        mean = torch.tensor([float(v) for v in e_mean]).view(1, 3, 1, 1)
        std = torch.tensor([float(v) for v in e_std]).view(1, 3, 1, 1)
        # y_c = (x * data_std + data_mean - mean_c) / std_c = x * scale_c + shift_c
        self.register_buffer("scale", data_std / std, persistent=False)
        self.register_buffer("shift", (data_mean - mean) / std, persistent=False)

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


@register_colorizer("lut")
class PointwiseColorizer(Colorizer):
    """Ablation: a pointwise T, a 1x1-convolution MLP ``1 -> hidden -> hidden -> 3`` applied to every pixel
    on its own (a learned intensity -> colour lookup, no spatial context; 1,219 parameters at hidden=32)."""

    def __init__(self, hidden: int = 32, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.init_kwargs = {"hidden": hidden, "negative_slope": negative_slope}
        self.mlp = nn.Sequential(
            nn.Conv2d(1, hidden, 1),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.Conv2d(hidden, 3, 1),
        )
        _init_weights(self)

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def output_layer(self) -> nn.Module:
        return self.mlp[-1]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def measure_flops(module: nn.Module, size: int = 320, channels: int = 1) -> int:
    """Floating-point operations (multiply and add counted separately) of one forward pass of one
    ``channels x size x size`` image, measured with ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    x = torch.zeros(1, channels, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    module.train(was_training)
    return int(counter.get_total_flops())


def colorizer_table(size: int = 320) -> list[dict[str, Any]]:
    """Parameter count and GFLOPs at ``size`` x ``size`` of every registered colorizer."""
    rows = []
    for name in list_colorizers():
        m = create_colorizer(name)
        rows.append(
            {
                "colorizer": name,
                "parameters": count_parameters(m),
                "gflops": measure_flops(m, size) / 1e9,
                "stride": m.stride,
            }
        )
    return rows


__all__ = [
    "COLORIZERS",
    "COLORIZER_STARTS",
    "ColorDown",
    "ColorOut",
    "ColorUColorizer",
    "ColorUp",
    "Colorizer",
    "DeconvColorizer",
    "PixelShuffleColorizer",
    "PointwiseColorizer",
    "ReplicateColorizer",
    "ReplicateImagenetColorizer",
    "ResidualBlock",
    "colorizer_table",
    "count_parameters",
    "create_colorizer",
    "icnr_",
    "list_colorizers",
    "measure_flops",
    "register_colorizer",
]
