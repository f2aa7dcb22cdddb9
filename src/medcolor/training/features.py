"""The frozen-E feature cache: C trained on E's pooled features, computed once per image.

In a stage where nothing before C trains (``baseline``, ``last-layer``), with augmentation off and the
frozen parts fully frozen (``frozen_bn: eval``: BatchNorm in eval mode, so its statistics do not move),
``E(T(x))`` of an image does not change during the stage: it is computed once
(:func:`stage_features`), stored in a :class:`~medcolor.data.feature_cache.FeatureCache` (memory-mapped, beside the
image cache) and C is trained on it with the same optimiser, schedule, sample order, checkpoints and
validation metrics (:class:`FeatureTrainValData` feeds the same Lightning module, whose steps take
``batch["features"]``).  A dropout at the very end of E (torchvision's MobileNetV2/V3 keep the classifier's
dropout when its linear layer is removed) is applied to the cached features in training, as E would.

``trainer.feature_cache``: ``off`` (default) or ``auto``: used where it is exact, which the run log says;
otherwise the log gives the reason (:func:`refusal`) and the stage trains the ordinary way.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medcolor.data.feature_cache import FeatureCache
from medcolor.data.samplers import ShardSampler
from medcolor.errors import DataError
from medcolor.model import ColorTransferNet
from medcolor.training.callbacks import PROGRESS_EVERY_S, duration
from medcolor.training.data import TrainValData
from medcolor.training.plan import StagePlan
from medcolor.utils import autocast

log = logging.getLogger(__name__)

_DROPOUT = (nn.modules.dropout._DropoutNd,)


def _stochastic_layers(part: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Modules that draw random numbers in training mode (dropout, stochastic depth / drop path)."""
    out = []
    for name, m in part.named_modules():
        p = getattr(m, "p", None) if isinstance(m, _DROPOUT) else None
        p = getattr(m, "drop_prob", p) if type(m).__name__ == "DropPath" else p
        p = getattr(m, "p", p) if type(m).__name__ == "StochasticDepth" else p
        if p:
            out.append((f"{prefix}{name}", m))
    drop_rate = float(getattr(part, "drop_rate", 0.0) or 0.0)  # timm's functional dropout before the classifier
    if drop_rate:
        out.append((f"{prefix}drop_rate", nn.Dropout(drop_rate)))
    return out


def trailing_dropout(model: ColorTransferNet) -> tuple[list[float], str | None]:
    """The dropout probabilities applied at the very end of E (after every layer that computes), and the
    reason the cache cannot be exact when some other layer of T or E is random in training (else None)."""
    e = model.backbone
    parent_name = e.head_name.rpartition(".")[0]
    parent = e.net.get_submodule(parent_name) if parent_name else None
    trailing: dict[int, float] = {}
    if isinstance(parent, nn.Sequential):
        for m in reversed(list(parent)):
            if isinstance(m, nn.Identity):
                continue
            if isinstance(m, _DROPOUT):
                trailing[id(m)] = float(m.p)
                continue
            break
    random = _stochastic_layers(model.colorizer, "T.") + _stochastic_layers(e.net, "E.")
    other = [name for name, m in random if id(m) not in trailing]
    if other:
        return [], (
            f"layers of T/E draw random numbers in training ({', '.join(other[:3])}), so E's features are not "
            "the same in every epoch"
        )
    order = [float(m.p) for m in parent if id(m) in trailing] if isinstance(parent, nn.Sequential) else []
    return order, None


def refusal(model: ColorTransferNet, plan: StagePlan) -> str | None:
    """Why the feature cache would not be exact for this stage (None: it is)."""
    s = plan.strategy
    if s.train_colorizer or s.train_backbone:
        return f"strategy {s.name} trains {'T' if s.train_colorizer else 'E'}"
    if plan.frozen_bn != "eval":
        return (
            f"frozen_bn is {plan.frozen_bn}: BatchNorm layers of the frozen T/E keep training their statistics "
            "(use --frozen-bn eval for a fixed E)"
        )
    if plan.augment:
        return "augmentation is on (data.augment: false for the linear-probe protocol)"
    if plan.runtime.accelerator != "cpu" and plan.runtime.precision.startswith("16"):
        return "fp16 autocast"  # not measured: keep the ordinary path
    return trailing_dropout(model)[1]


def feature_key(
    model: ColorTransferNet, size: int, mean: float, std: float, precision: str, channels_last: bool
) -> str:
    """BLAKE2b-128 of everything E's features depend on besides the image."""
    h = hashlib.blake2b(digest_size=16)
    arch = model.architecture()
    h.update(repr((arch["colorizer"], sorted(arch["colorizer_kwargs"].items()), arch["backbone"])).encode())
    h.update(repr((int(size), float(mean), float(std), precision, bool(channels_last))).encode())
    for part in (model.colorizer, model.backbone):
        for name, t in part.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _keys(dataset: Any) -> list[str]:
    return [FeatureCache.image_key(p) for p in dataset.paths]


@torch.no_grad()
def compute_features(
    model: ColorTransferNet,
    view: Dataset,
    *,
    batch_size: int,
    device: str,
    precision: str,
    channels_last: bool,
    num_workers: int = 0,
    label: str = "frozen-E features",
) -> tuple[np.ndarray, str]:
    """``E(T(x))`` of every image of ``view`` with T and E in eval mode (no dropout, BN statistics fixed) under
    the stage's autocast and memory format; float32 ``(N, F)`` and the dtype E returned them in.

    ``num_workers``: DataLoader workers that read and transform the images (one thread each), as the stage's
    loaders do; with 0 the per-image arithmetic runs on the model's threads, which is many times slower on a
    busy machine (a 2-thread op waits for both threads to be scheduled).  Logs ``label``'s progress every
    :data:`~medcolor.training.callbacks.PROGRESS_EVERY_S` seconds (images done, img/s, ETA)."""
    was = model.training
    model.eval()
    out, dtype = [], "torch.float32"
    progress = _FeatureProgress(label, len(view))  # type: ignore[arg-type]
    try:
        for batch in DataLoader(view, batch_size=batch_size, shuffle=False, num_workers=num_workers):
            x = batch["image"].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                f = model.backbone(model.colorizer(x))
            dtype = str(f.dtype)
            out.append(f.float().cpu())
            progress.add(len(f))
    finally:
        model.train(was)
    return torch.cat(out).numpy(), dtype


class _FeatureProgress:
    """One log line every ``PROGRESS_EVERY_S`` seconds while features are computed: a sign of life in logs."""

    def __init__(self, label: str, total: int, clock: Any = time.monotonic) -> None:
        self.label, self.total, self.clock, self.done = label, total, clock, 0
        self.start = self.last = clock()

    def add(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last < PROGRESS_EVERY_S or self.done >= self.total:
            return
        rate = self.done / max(now - self.start, 1e-9)
        log.info(
            f"{self.label}: {self.done:,}/{self.total:,} images ({100 * self.done // max(self.total, 1)}%), "
            f"{rate:.1f} img/s, ETA {duration((self.total - self.done) / rate)}"
        )
        self.last = now


class FeatureView(Dataset):
    """Cached features as a dataset: the keys of :class:`~medcolor.data.bundle.NetworkView` (an index or an
    ``(index, seed)`` pair), ``{"features", "target", "index", "seed"}``."""

    def __init__(self, features: np.ndarray, labels: Any) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        idx, seed = key if isinstance(key, tuple) else (key, 0)
        return {
            "features": torch.from_numpy(self.features[idx]),
            "target": torch.from_numpy(np.asarray(self.labels[idx], dtype=np.float32)),
            "index": idx,
            "seed": seed,
        }


class FeatureTrainValData(TrainValData):
    """:class:`~medcolor.training.data.TrainValData` over cached features: the same samplers, batches and order."""

    def __init__(self, bundle: Any, plan: StagePlan, train: np.ndarray, val: np.ndarray) -> None:
        super().__init__(bundle, plan)
        self.num_workers = 0  # a batch is a memory copy
        self.train_features, self.val_features = train, val

    def train_dataloader(self) -> DataLoader:
        from medcolor.data.samplers import ChunkSampler

        rank, world = self._rank()
        view = FeatureView(self.train_features, self.bundle.train.labels)
        trainer = getattr(self, "trainer", None)
        steps = (lambda: trainer.global_step) if trainer is not None else None
        sampler = ChunkSampler(len(view), self.batch_size, self.iterations, self.seed, rank, world, steps)
        return self._loader(view, sampler)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        view = FeatureView(self.val_features, self.bundle.val.labels)
        return self._loader(view, ShardSampler(len(view), rank, world))


def _square(dataset: Any) -> str | None:
    """Training without augmentation still crops a random square of a non-square image: not cacheable."""
    for i in range(len(dataset)):
        h, w = np.shape(dataset.load_image(i))[-2:]
        if h != w:
            return f"training image {dataset.paths[i]} is not square ({h}x{w}): its random square crop changes"
    return None


def stage_features(
    model: ColorTransferNet, plan: StagePlan, bundle: Any, cache_dir: str | Path
) -> tuple[np.ndarray, np.ndarray, str] | str:
    """The cached features of the training and validation images (computed where missing), or the reason
    the cache is not exact for this stage."""
    reason = refusal(model, plan)
    if reason is None:
        reason = _square(bundle.train)
    if reason is not None:
        return reason
    rt = plan.runtime
    key = feature_key(model, bundle.size, bundle.mean, bundle.std, rt.precision, rt.channels_last)
    cache = FeatureCache(cache_dir, key, model.backbone.num_features, bundle.size, name=bundle.dataset_name)
    out = []
    for dataset in (bundle.train, bundle.val):
        keys = _keys(dataset)
        rows, dtype = cache.rows(keys)
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            from torch.utils.data import Subset

            view = Subset(bundle.eval_view(dataset), todo)
            device = "cuda" if rt.accelerator in ("cuda", "gpu") else "cpu"
            try:
                feats, dtype = compute_features(
                    model.to(device),
                    view,
                    batch_size=plan.batch_size,
                    device=device,
                    precision=rt.precision,
                    channels_last=rt.channels_last,
                    num_workers=plan.num_workers,
                    label=f"[{plan.name}] frozen-E features",
                )
            finally:
                model.cpu()
            cache.add([keys[i] for i in todo], feats, dtype)
        out.append(cache.read(keys))
    _, dtype = cache.rows([])
    if dtype is None:
        raise DataError(f"the feature cache {cache.index_path} records no dtype; delete it")
    log.info(
        f"[{plan.name}] frozen-E feature cache: C trains on cached features of {len(out[0]):,} + {len(out[1]):,} "
        f"images ({cache.data_path})"
    )
    return out[0], out[1], dtype


__all__ = [
    "FeatureTrainValData",
    "FeatureView",
    "compute_features",
    "feature_datamodule",
    "feature_key",
    "refusal",
    "stage_features",
    "trailing_dropout",
]


def feature_datamodule(module: Any, plan: StagePlan, bundle: Any, cache_dir: str | Path | None) -> Any | None:
    """``trainer.feature_cache: auto``: the stage's data over cached features where that is exact (and ``module``
    set to take them), else None after logging why.  Without ``data.cache_dir`` the features live for this
    stage only (a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="medcolor-features-") as tmp:
        got = stage_features(module.model, plan, bundle, cache_dir if cache_dir else tmp)
    if isinstance(got, str):
        log.info(f"[{plan.name}] frozen-E feature cache not used: {got}")
        return None
    train, val, dtype = got
    module.use_cached_features(trailing_dropout(module.model)[0], dtype)
    return FeatureTrainValData(bundle, plan, train, val)
