"""From a run's data options (:class:`DataOptions`, e.g. a :class:`~medcolor.config.DataConfig`) to train /
val / test datasets ready for a network.

Files -> dataset (labels, policy) -> patient-level split -> label-proportional subset -> cache ->
:class:`NetworkView` (crop/resize, augmentation, normalisation) -> batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from medcolor.data.transforms import AugmentConfig, EvalTransform, TrainTransform, compute_mean_std, to_unit
from medcolor.errors import ConfigError, DataError
from medcolor.normalization import CHEXPERT_MEAN, CHEXPERT_STD
from medcolor.utils import resolve_num_workers

log = logging.getLogger(__name__)


class DataOptions(Protocol):
    """The data options this module reads (the fields of :class:`medcolor.config.DataConfig`, which the
    configuration layer above defines and documents)."""

    dataset: str
    root: str | None
    csv: str | None
    options: dict[str, Any]
    train_split: str | None
    val: float | str
    test: float | str | None
    split_seed: int
    subset: Any
    subset_draw: int
    size: int
    load_size: int | None
    cache_dir: str | None
    mean: float | str | None
    std: float | None
    num_workers: int | str
    on_missing: str


class NetworkView(Dataset):
    """A dataset as the network sees it: ``{"image": (1, size, size) normalised, "target": (L,) with
    NaN for ignored labels, "index": int, "seed": int}``.

    Keys are indices (evaluation: deterministic resize + centre crop) or ``(index, seed)`` pairs from
    :class:`~medcolor.data.samplers.ChunkSampler` (training: the seed drives the augmentation).

    ``uint8=True`` (the training loaders): an 8-bit image that needs no resize comes as its uint8 crop
    ``(1, size, size)``, a quarter of the bytes through the DataLoader; batch it with :meth:`collate` and
    normalise it on the model side with :func:`~medcolor.data.transforms.normalize_batch` (bit-identical to
    the float path without augmentation; a worker-side rotation/zoom then runs on uint8: see
    :mod:`medcolor.data.transforms`).
    """

    def __init__(self, dataset: Any, transform: TrainTransform | EvalTransform, *, uint8: bool = False) -> None:
        self.dataset, self.transform, self.uint8 = dataset, transform, uint8

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        idx, seed = key if isinstance(key, tuple) else (key, 0)
        image = self._uint8_crop(idx, seed) if self.uint8 else None
        if image is None:
            img = torch.from_numpy(np.ascontiguousarray(self.dataset.load_image(idx), dtype=np.float32))[None]
            image = self.transform(img, seed)
        return {
            "image": image,
            "target": torch.from_numpy(np.asarray(self.dataset.labels[idx], dtype=np.float32)),
            "index": idx,
            "seed": seed,
        }

    def _uint8_crop(self, idx: int, seed: int) -> torch.Tensor | None:
        """The uint8 crop of an 8-bit image as stored (cache or decoder), or None: the float way."""
        load_stored = getattr(self.dataset, "load_stored", None)
        stored = load_stored(idx) if load_stored is not None else None
        if stored is None or stored.dtype != np.uint8:
            return None
        return self.transform.crop_uint8(torch.from_numpy(stored)[None], seed)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """``default_collate``; a batch of uint8 crops carries ``normalization`` ``(mean, std)`` for
        :func:`~medcolor.data.transforms.normalize_batch` on the model side; a batch mixing uint8 crops with
        float images (resized or 16-bit ones) is normalised here, in the worker, the per-sample way."""
        images = [it["image"] for it in items]
        if any(x.dtype == torch.uint8 for x in images) and not all(x.dtype == torch.uint8 for x in images):
            m, s = self.transform.mean, self.transform.std
            items = [
                {**it, "image": (to_unit(it["image"]) - m) / s} if it["image"].dtype == torch.uint8 else it
                for it in items
            ]
        batch = default_collate(items)
        if batch["image"].dtype == torch.uint8:
            batch["normalization"] = (self.transform.mean, self.transform.std)
        return batch


@dataclass
class DataBundle:
    train: Any
    val: Any
    test: Any | None
    label_names: list[str]
    size: int
    mean: float
    std: float
    dataset_name: str
    info: dict[str, Any] = field(default_factory=dict)
    #: rows of the label file left out for a missing image (on_missing skip/present), or None
    skipped: Any | None = None
    #: the training split before the subset draw (None without ``subset``: then it is ``train``)
    train_full: Any | None = None

    def train_view(self, rotate_zoom_here: bool = True, augment: bool = True, *, uint8: bool = False) -> NetworkView:
        """The training view; ``uint8``: hand uint8 crops to the model side where exact (:class:`NetworkView`)."""
        aug = AugmentConfig() if augment else None
        tf = TrainTransform(self.size, self.mean, self.std, aug, rotate_zoom_here)
        return NetworkView(self.train, tf, uint8=uint8)

    def eval_view(self, dataset: Any, *, uint8: bool = False) -> NetworkView:
        return NetworkView(dataset, EvalTransform(self.size, self.mean, self.std), uint8=uint8)

    def splits(self) -> dict[str, Any]:
        """The datasets of the run by name: ``train``, ``val``, ``test`` and ``train_full`` (None where absent)."""
        return {"train": self.train, "val": self.val, "test": self.test, "train_full": self.train_full}

    @property
    def normalization(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


def make_dataset(cfg: DataOptions, split: str | None = None, *, synthetic_dir: Path | None = None) -> Any:
    """The dataset named by ``cfg`` (one official split of it when ``split`` is given).

    ``synthetic_dir``: the root of a dataset that writes its own files (``synthetic``) when ``data.root``
    is unset."""
    from medcolor.data.datasets import DATASETS, create_dataset

    kwargs: dict[str, Any] = dict(cfg.options)
    name = cfg.dataset.lower()
    root, csv = cfg.root, cfg.csv
    if not root and synthetic_dir is not None and DATASETS.get(name).GENERATES_FILES:
        root = str(synthetic_dir)
    if split is not None:
        kwargs["split"] = split
    load_size = cfg.load_size or cfg.size
    try:
        return create_dataset(
            name, root, csv, load_size=load_size, cache=cfg.cache_dir, on_missing=cfg.on_missing, **kwargs
        )
    except TypeError as exc:
        raise ConfigError(f"invalid data.options for dataset {cfg.dataset!r}: {exc}") from exc


def build_data(cfg: DataOptions, *, synthetic_dir: Path | None = None) -> DataBundle:
    """Datasets for training (after split and subset), validation and testing, with normalisation."""
    full = make_dataset(cfg, cfg.train_split, synthetic_dir=synthetic_dir)
    info: dict[str, Any] = {"dataset_rows": len(full)}
    skipped = getattr(full, "skipped", None)
    kept_out = skipped if skipped is not None and len(skipped) else None
    if kept_out is not None:
        info["skipped_rows"] = len(kept_out)
    train, val, test = _split(cfg, full, synthetic_dir)
    train_full = None
    if cfg.subset is not None:
        train_full, train = train, _draw_subset(cfg, train, info)
    _check_not_empty(train, val, test)
    if cfg.cache_dir:
        fill_cache([train, val, test], workers=resolve_num_workers(cfg.num_workers, "cpu"))  # decoding is CPU work
    mean, std = _normalisation(cfg, train)
    info.update(
        train=len(train),
        val=len(val),
        test=len(test) if test is not None else 0,
        train_patients=len(set(train.patient_ids)),
        label_names=list(train.label_names),
    )
    names = list(train.label_names)
    return DataBundle(train, val, test, names, cfg.size, mean, std, cfg.dataset, info, kept_out, train_full)


def _split_fractions(cfg: DataOptions) -> dict[str, float]:
    """The parts given as fractions of the patients (``val``, ``test``, then ``train``, the rest); empty when
    both are official split names or None."""
    fractions: dict[str, float] = {}
    for part in ("val", "test"):
        v = getattr(cfg, part)
        if isinstance(v, float):
            if not 0 < v < 1:
                raise ConfigError(f"data.{part} must be a fraction in (0, 1) or a split name, got {v}")
            fractions[part] = v
    if fractions:
        fractions["train"] = 1 - sum(fractions.values())
        if fractions["train"] <= 0:
            raise ConfigError(f"data.val + data.test leave no training data ({fractions})")
    return fractions


def _split(cfg: DataOptions, full: Any, synthetic_dir: Path | None) -> tuple[Any, Any, Any]:
    """Train, val and test: a fraction of ``full``'s patients each (a patient-level split, checked for leaks),
    the official split named by ``data.val`` / ``data.test``, or None (``data.test: none``)."""
    from medcolor.data.splits import check_no_leak, patient_split

    fractions = _split_fractions(cfg)
    if fractions:
        parts = patient_split(full.patient_ids, fractions, seed=cfg.split_seed)
        check_no_leak(parts, full.patient_ids)
        train = full.subset(parts["train"])
    else:
        parts, train = {}, full

    def held_out(part: str) -> Any:
        v = getattr(cfg, part)
        if v is None:
            return None
        if isinstance(v, str):
            return make_dataset(cfg, v, synthetic_dir=synthetic_dir)
        return full.subset(parts[part])

    return train, held_out("val"), held_out("test")


def _draw_subset(cfg: DataOptions, train: Any, info: dict[str, Any]) -> Any:
    """The label-proportional training subset ``data.subset`` (draw ``data.subset_draw``), recorded in ``info``."""
    from medcolor.data.splits import label_subset

    s = cfg.subset
    idx = label_subset(train.raw_labels, seed=cfg.split_seed * 1000 + cfg.subset_draw, **s.draw_kwargs())
    info["subset"] = {"requested": s, "draw": cfg.subset_draw, "images": len(idx), "of": len(train)}
    return train.subset(idx)


def _check_not_empty(train: Any, val: Any, test: Any | None) -> None:
    for name, ds in (("train", train), ("val", val)):
        if ds is None or len(ds) == 0:
            raise DataError(f"the {name} split is empty; use more data or change data.val/data.test")
    if test is not None and len(test) == 0:
        raise DataError("the test split is empty; use more data, a larger data.test, or data.test: none")


def fill_cache(datasets: list[Any], *, workers: int = 0) -> dict[str, Any] | None:
    """Decode into the datasets' image cache (``data.cache_dir``) what it does not hold yet of these
    datasets' images: the run's images only, once; later stages, runs and study cells reuse it (a build
    running in another process is waited for).  Returns what the build did (counts and seconds)."""
    caches = {id(d.cache): d.cache for d in datasets if d is not None and getattr(d, "cache", None) is not None}
    if not caches:
        return None
    paths = [p for d in datasets if d is not None for p in d.paths]
    first, *others = caches.values()
    report = first.build(paths, progress=False, workers=workers, wait=True)
    for other in others:  # the same files, seen by another split's dataset object
        other.reload()
    if report["failed"]:
        message = report["failed"][0][1]
        raise DataError(f"cannot cache {len(report['failed'])} image(s), the first: {message}")
    done = {k: report[k] for k in ("total", "reused", "decoded", "deduplicated", "seconds")}
    log.info(
        f"image cache {first.data_path}: {done['reused']} of {done['total']} images there already, "
        f"{done['decoded']} decoded, {done['deduplicated']} identical to another, in {done['seconds']:.1f} s"
    )
    return done


def _normalisation(cfg: DataOptions, train: Any) -> tuple[float, float]:
    if isinstance(cfg.mean, str):
        if cfg.mean != "compute":
            raise ConfigError(f"data.mean must be a number, none or 'compute', got {cfg.mean!r}")
        return compute_mean_std(train, max_images=2000)
    mean = CHEXPERT_MEAN if cfg.mean is None else float(cfg.mean)
    std = CHEXPERT_STD if cfg.std is None else float(cfg.std)
    if std <= 0:
        raise ConfigError(f"data.std must be > 0, got {std}")
    return mean, std


__all__ = ["DataBundle", "DataOptions", "NetworkView", "build_data", "make_dataset"]
