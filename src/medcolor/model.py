"""The network of the paper: ``y = C(E(T(x)))`` and the strategies applied to it.

* T — :mod:`medcolor.colorizers` (1 -> 3 channels)
* E — :mod:`medcolor.backbones` (ImageNet features)
* C — :class:`ClassifierHead`, a linear multi-label head (5 outputs for chest X-rays, 1 for MURA)

:meth:`ColorTransferNet.apply_strategy` puts the network into one of the states of
:mod:`medcolor.strategies`: which parts get gradients, whether C is re-initialised and what happens to
BatchNorm layers in frozen parts.  Whether T is trained/transferred (what the transfer strategies need)
is set by one method, :meth:`ColorTransferNet.mark_colorizer_transferred`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from medcolor.backbones import Backbone, create_backbone
from medcolor.colorizers import Colorizer, create_colorizer
from medcolor.errors import ConfigError, DataError
from medcolor.strategies import Strategy, check_frozen_bn, check_stage, transferred_after

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


def _as_stored(image: Any, size: int) -> np.ndarray:
    """One gray image -> the reduced, quantized array the cache would store (uint8 / uint16)."""
    import io as _io

    from PIL import Image

    from medcolor.data.readers import reduce_bytes, reduce_image

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray) and image.dtype.kind in "iub" and image.dtype != np.uint8:
        image = image.astype(np.uint16) if image.max(initial=0) > 255 or image.dtype == np.uint16 else image
    if isinstance(image, np.ndarray) and image.dtype.kind in "iu":  # through PNG: exactly the image file's path
        image = Image.fromarray(np.ascontiguousarray(image.astype(image.dtype.newbyteorder("="))))
    if isinstance(image, Image.Image):
        buf = _io.BytesIO()
        image.save(buf, format="PNG")
        return reduce_bytes(buf.getvalue(), "<image>", size)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise DataError(f"expected a 2-D gray image, got an array of shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise DataError("a float image must hold values in [0, 1] (integer images are scaled by their type's maximum)")
    return reduce_image(arr, size, 16)


def as_gray_batch(images: Any, size: int) -> list[torch.Tensor]:
    """Images as :meth:`ColorTransferNet.predict` takes them ->
    float ``(H, W)`` tensors in [0, 1], reduced to short side ``size`` as the cache and ``predict`` reduce files."""
    from PIL import Image

    from medcolor.data.readers import to_float

    out = []
    for item in _batch_items(images):
        if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[-1] in (3, 4):
            item = Image.fromarray(item).convert("L")  # an RGB photo: its luminance, as for a colour image file
        out.append(torch.from_numpy(to_float(_as_stored(item, size))))
    return out


def _batch_items(images: Any) -> list[Any]:
    """The single images of what :func:`as_gray_batch` takes: a batch array/tensor, a PIL image or a list."""
    from PIL import Image

    if isinstance(images, (torch.Tensor, np.ndarray)):
        return _array_items(images)
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, (list, tuple)):
        return list(images)
    raise DataError(f"cannot predict on {type(images).__name__}: give arrays, PIL images or tensors")


def _array_items(a: torch.Tensor | np.ndarray) -> list[Any]:
    """``(B, 1, H, W)`` and ``(B, H, W)`` -> B images; anything else (one gray or RGB image) is one image."""
    if a.ndim == 4:  # (B, 1, H, W)
        if a.shape[1] != 1:
            raise DataError(f"expected gray images (B, 1, H, W), got shape {tuple(a.shape)}")
        return [a[i, 0] for i in range(a.shape[0])]
    if a.ndim == 3 and not (isinstance(a, np.ndarray) and a.shape[-1] in (3, 4) and a.dtype == np.uint8):
        return [a[i] for i in range(a.shape[0])]  # (B, H, W)
    return [a]


class ClassifierHead(nn.Module):
    """C: an optional dropout followed by one linear layer giving one logit per label."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"the classifier needs at least one output, got num_classes={num_classes}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)
        self.in_features, self.num_classes, self.p = in_features, num_classes, dropout

    def reset_parameters(self) -> None:
        self.fc.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # C always in float32, also under bf16/fp16 autocast: low-precision logits make many tied
        # probabilities, which bias the AUC (seen: 0.745 vs 0.735 on 165 Kermany test images)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.fc(self.dropout(x.float()))


class ColorTransferNet(nn.Module):
    """``C(E(T(x)))`` for 1-channel input ``(B, 1, H, W)``; returns logits ``(B, num_classes)``."""

    def __init__(
        self, colorizer: Colorizer, backbone: Backbone, head: ClassifierHead, *, colorizer_transferred: bool = False
    ) -> None:
        super().__init__()
        if head.in_features != backbone.num_features:
            raise ConfigError(
                f"head expects {head.in_features} features but backbone {backbone.name} gives {backbone.num_features}"
            )
        self.colorizer = colorizer
        self.backbone = backbone
        self.head = head
        self.mark_colorizer_transferred(colorizer_transferred)
        self.strategy: Strategy | None = None
        self.frozen_bn = "fastai"
        self._eval_bn: list[str] = []
        #: what using the network needs besides its weights (set by training and by :func:`medcolor.io.load_model`):
        #: the label names of C's outputs, the gray input normalisation ``{"mean", "std"}`` and the input size (px)
        self.labels: list[str] | None = None
        self.normalization: dict[str, float] | None = None
        self.input_size: int | None = None

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """E's pretrained data config (RGB mean/std, input size...: :func:`medcolor.backbones.data_config`)."""
        return self.backbone.pretrained_cfg

    def set_usage(
        self, labels: list[str] | None, normalization: dict[str, float] | None, input_size: int | None
    ) -> ColorTransferNet:
        """Record the label names, gray normalisation and input size the network is used with."""
        self.labels = [str(v) for v in labels] if labels is not None else None
        if normalization is not None:
            normalization = {"mean": float(normalization["mean"]), "std": float(normalization["std"])}
        self.normalization = normalization
        self.input_size = int(input_size) if input_size is not None else None
        return self

    def usage(self, source: str = "the network") -> tuple[list[str], dict[str, float], int]:
        """``(labels, normalization, input_size)``; a :class:`~medcolor.errors.WeightsError` naming what is
        missing (a file written by ``save_model`` without that metadata) instead of guessing it."""
        missing = [
            k
            for k, v in (("label_names", self.labels), ("normalization", self.normalization), ("size", self.input_size))
            if v is None
        ]
        if missing:
            from medcolor.errors import WeightsError

            raise WeightsError(
                f"{source} does not record its {', '.join(missing)}: it was saved without them (medcolor's training "
                "always writes them). Give them when saving: save_model(model, path, label_names=[...], "
                "normalization={'mean': m, 'std': s}, size=px), or call model.set_usage(labels, normalization, size)"
            )
        if len(self.labels) != self.head.num_classes:  # type: ignore[arg-type]
            from medcolor.errors import WeightsError

            raise WeightsError(
                f"{source} names {len(self.labels)} labels but C has {self.head.num_classes} outputs"  # type: ignore[arg-type]
            )
        return self.labels, self.normalization, self.input_size  # type: ignore[return-value]

    @torch.no_grad()
    def predict(self, images: Any, *, batch_size: int = 16, precision: str = "32-true") -> Any:
        """Probabilities per label for ``images``: one or a list of 2-D arrays (gray, any dtype: integers are
        scaled by their type's maximum, floats taken as [0, 1]), PIL images, or tensors ``(H, W)``/``(B, 1, H, W)``
        in [0, 1].  Each image goes through the path of evaluation (short side to the input size, centre crop,
        the recorded normalisation).  Returns a :class:`pandas.DataFrame` with one column per label.
        ``precision``: as ``medcolor predict`` (``32-true`` default, ``bf16-mixed`` the fast option)."""
        import pandas as pd

        from medcolor.data.transforms import EvalTransform

        labels, norm, size = self.usage()
        tf = EvalTransform(size, norm["mean"], norm["std"])
        was_training = self.training
        device = next(self.parameters()).device
        self.eval()
        out = []
        try:
            imgs = as_gray_batch(images, size)
            for i in range(0, len(imgs), batch_size):
                x = torch.stack([tf(img[None].float()) for img in imgs[i : i + batch_size]]).to(device)
                low = precision.startswith("bf16")  # the autocast of medcolor.training.runtime.autocast
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
                    out.append(torch.sigmoid(self(x).float()).cpu())
        finally:
            self.train(was_training)
        probs = torch.cat(out).numpy() if out else np.zeros((0, len(labels)), np.float32)
        return pd.DataFrame(probs, columns=labels)

    @property
    def colorizer_transferred(self) -> bool:
        """True once T was trained in an earlier stage or loaded from a file (needed by transfer strategies)."""
        return self._colorizer_transferred

    def mark_colorizer_transferred(self, transferred: bool = True) -> None:
        """The one place that records whether T is trained/transferred (never for the parameter-free gray copy)."""
        self._colorizer_transferred = bool(transferred) and self.colorizer.learnable

    def finish_stage(self, strategy: str | Strategy) -> None:
        """Record that a stage of ``strategy`` is done: T counts as transferred once a stage trained it."""
        self.mark_colorizer_transferred(transferred_after(strategy, self.colorizer_transferred))

    # the paper's names
    @property
    def T(self) -> Colorizer:
        return self.colorizer

    @property
    def E(self) -> Backbone:
        return self.backbone

    @property
    def C(self) -> ClassifierHead:
        return self.head

    @classmethod
    def create(
        cls,
        colorizer: str = "pixelshuffle",
        backbone: str = "resnet18",
        num_classes: int = 5,
        weights: str | os.PathLike | None = None,
        *,
        colorizer_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.0,
        progress: bool = True,
    ) -> ColorTransferNet:
        t = create_colorizer(colorizer, **(colorizer_kwargs or {}))
        e = create_backbone(backbone, weights, progress=progress)
        c = ClassifierHead(e.num_features, num_classes, dropout)
        return cls(t, e, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.colorizer(x)))

    def colorize(self, x: torch.Tensor) -> torch.Tensor:
        """The 3-channel image T produces (what E sees)."""
        return self.colorizer(x)

    def architecture(self) -> dict[str, Any]:
        """Everything needed to rebuild this network without its weights."""
        return {
            "colorizer": self.colorizer.name,
            "colorizer_kwargs": dict(self.colorizer.init_kwargs),
            "backbone": self.backbone.name,
            "num_classes": self.head.num_classes,
            "dropout": self.head.p,
        }

    @classmethod
    def from_architecture(cls, arch: dict[str, Any]) -> ColorTransferNet:
        return cls.create(
            arch["colorizer"],
            arch["backbone"],
            int(arch["num_classes"]),
            None,
            colorizer_kwargs=arch.get("colorizer_kwargs") or {},
            dropout=float(arch.get("dropout", 0.0)),
        )

    def replace_colorizer(self, colorizer: Colorizer, transferred: bool = True) -> None:
        self.colorizer = colorizer
        self.mark_colorizer_transferred(transferred)

    def new_head(self, num_classes: int) -> None:
        """Give the network a fresh C with ``num_classes`` outputs (transfer to a new label set)."""
        self.head = ClassifierHead(self.backbone.num_features, num_classes, self.head.p)

    # ---------------------------------------------------------------- strategies
    def check_strategy(self, strategy: str | Strategy) -> Strategy:
        """Whether ``strategy`` can run on this network's T (:func:`medcolor.strategies.check_stage`)."""
        t = self.colorizer
        return check_stage(strategy, colorizer=t.name, learnable=t.learnable, transferred=self.colorizer_transferred)

    def apply_strategy(
        self, strategy: str | Strategy, frozen_bn: str = "fastai", reset_head: bool | None = None
    ) -> Strategy:
        """Set which parameters train, optionally re-initialise C, and fix BN behaviour in frozen parts."""
        s = self.check_strategy(strategy)
        check_frozen_bn(frozen_bn)
        if reset_head if reset_head is not None else s.reset_head:
            self.head.reset_parameters()
        self._eval_bn = []
        for part_name, part, trained in (
            ("colorizer", self.colorizer, s.train_colorizer),
            ("backbone", self.backbone, s.train_backbone),
            ("head", self.head, True),
        ):
            part.requires_grad_(trained)
            if trained:
                continue
            for name, m in part.named_modules():
                if isinstance(m, _BN_TYPES):
                    if frozen_bn == "fastai":
                        m.requires_grad_(True)
                    elif frozen_bn == "eval":
                        self._eval_bn.append(f"{part_name}.{name}")
        self.strategy, self.frozen_bn = s, frozen_bn
        self.train(self.training)
        return s

    def train(self, mode: bool = True) -> ColorTransferNet:
        super().train(mode)
        for name in self._eval_bn:
            self.get_submodule(name).eval()
        return self

    def trainable_parameter_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def parameter_summary(self) -> dict[str, dict[str, int]]:
        """Total and trainable parameter counts of T, E and C."""
        out = {}
        for key, part in (("T", self.colorizer), ("E", self.backbone), ("C", self.head)):
            out[key] = {
                "total": sum(p.numel() for p in part.parameters()),
                "trainable": sum(p.numel() for p in part.parameters() if p.requires_grad),
            }
        return out


__all__ = ["ClassifierHead", "ColorTransferNet"]
