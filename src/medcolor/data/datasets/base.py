"""The base class of every X-ray dataset, the dataset registry and :func:`create_dataset`.

Every dataset is built as ``Cls(root=None, csv=None, *, dataset_specific..., split=..., labels=None,
transform=None, load_size=None, cache=None, on_missing="error", on_duplicate="error")`` (the common options
are one :class:`DatasetOptions`, also accepted as ``options=``) and exposes:

==================  ==================================================================================
``name``            its registry name: ``"chexpert"``, ``"chestxray14"``, ``"mura"``, ``"csv"``, ``"folder"``
                    or ``"synthetic"``
``root``            the image folder (``None``: labels only; :meth:`~XRayDataset.load_image` then raises)
``csv``             the label file the rows come from (``None`` for :class:`FolderDataset`)
``label_names``     list of L label names
``labels``          float32 (N, L): 1 positive, 0 negative, NaN ignored (mask it out of loss and AUC)
``raw_labels``      float32 (N, L) before any policy: 1, 0, -1 (uncertain), NaN (blank / unknown)
``patient_ids``     str array (N,)
``study_ids``       str array (N,) (datasets without studies: the image id or relative path)
``paths``           list of N image paths: absolute under ``root``; relative when root is None (the CSV
                    path; for CheXpert without its first ``CheXpert-v1.0*/`` component)
``meta``            DataFrame, one row per sample: the source CSV row plus ``source_row``, its 1-based line
                    number in the file (header = line 1), which error messages quote
``skipped``         DataFrame (source_row, path, reason) of rows dropped (missing image, duplicate); empty if none
``patients_known``  False when patient ids are stand-ins (each image its own patient): splits may then leak
``transform``, ``load_size``, ``cache``, ``split``, ``on_missing``, ``on_duplicate``, ``cache_misses``
==================  ==================================================================================

``dataset[i]`` is ``{"image": (1, H, W) float32 in [0, 1] (then through ``transform``), "target": (L,)
float32 (row i of ``labels``), "index": i}``.

Rows are checked at construction (:mod:`medcolor.data.datasets.checks`), each check listing *all* the
offending rows of the label file at once: a file with no (selected) rows is a DataError; every image path
must stay inside ``root`` (``..`` or an absolute path elsewhere is a DataError, whatever ``on_missing``);
an image listed twice with different labels is a DataError, and with the same labels too unless
``on_duplicate="drop"`` (keeps the first row, warns with :class:`DuplicateRowsWarning`, lists the others in
``dataset.skipped``).

Missing images (``on_missing``):

* ``"error"`` (default): a :class:`~medcolor.errors.DataError` lists the first missing files with their CSV
  rows and the count.
* ``"skip"``: the rows are dropped, each one recorded in ``dataset.skipped``, and a
  :class:`MissingImagesWarning` names the count and the first rows.
* ``"present"``: for an image folder that holds only part of a dataset on purpose (e.g. 1000 of the 112,120
  ChestX-ray14 images): keeps the rows whose image is present and warns once with the number dropped; the
  dropped rows are in ``dataset.skipped`` too.  Nothing is ever dropped silently; a root that holds none
  of the images is a DataError with any policy.

``load_size``: when set, :meth:`~XRayDataset.load_image` returns the *reduced image*: the short side
reduced to ``load_size`` (antialiased, aspect kept; smaller images are **not** upscaled, so the short side
can be below ``load_size`` — the training transform resizes to the network input), quantized to
uint8/uint16 like the source and back to float32.  This is exactly what
:class:`~medcolor.data.cache.ImageCache` stores, so cached and uncached loading are bit-identical.
Without ``load_size`` images are returned at full resolution.

A dataset subclass implements ``_load(labels) -> Table`` (the rows, labels and ids read from its files)
and registers itself with ``@DATASETS.register("name")``; the base class checks the rows and files
(:mod:`~medcolor.data.datasets.checks`) and sets the public fields.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medcolor.data.cache import ImageCache
from medcolor.data.datasets.checks import (
    ON_DUPLICATE,
    ON_MISSING,
    DuplicateRowsWarning,
    MissingImagesWarning,
    blank_labels,
    duplicate_rows,
    empty_skipped,
    existing,
    missing_rows,
    paths_under_root,
)
from medcolor.data.datasets.labels import as_str_array
from medcolor.data.readers import load_reduced, read_image, to_float
from medcolor.errors import ConfigError, DataError, ImageReadError
from medcolor.paths import user_path
from medcolor.registry import Registry

__all__ = [
    "DATASETS",
    "ON_DUPLICATE",
    "ON_MISSING",
    "DatasetOptions",
    "DuplicateRowsWarning",
    "MissingImagesWarning",
    "Table",
    "XRayDataset",
    "create_dataset",
    "dataset_options",
    "list_datasets",
]

DATASETS: Registry[type[XRayDataset]] = Registry("dataset")


@dataclass
class Table:
    """What a subclass's ``_load`` returns; the base class checks files and sets the public fields."""

    meta: pd.DataFrame
    rel_paths: list[str]
    raw_labels: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    patient_ids: np.ndarray
    study_ids: np.ndarray | None = None
    check_files: bool = True
    root_hint: str = ""
    #: the row selection ``_load`` applied (e.g. "views ['lateral']"), quoted when it leaves no rows
    selection: str = ""


@dataclass
class DatasetOptions:
    """The constructor options every dataset takes (see the module doc); a dataset class declares only
    its own options and takes these as keyword arguments or as one ``options=DatasetOptions(...)``."""

    split: str | None = None
    labels: str | Sequence[str] | None = None
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    load_size: int | None = None
    cache: ImageCache | str | os.PathLike | None = None
    on_missing: str = "error"
    on_duplicate: str = "error"


def dataset_options(cls: type[XRayDataset]) -> list[str]:
    """The keyword options a dataset class takes: its own, those of the bases its ``**kwargs`` go to, and
    the common ones (:class:`DatasetOptions`)."""
    valid: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or not issubclass(klass, XRayDataset):
            continue
        params = inspect.signature(klass.__init__).parameters
        valid += [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY and n != "options" and n not in valid]
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return valid
    return valid + [f.name for f in dataclasses.fields(DatasetOptions) if f.name not in valid]


class XRayDataset(Dataset):
    """Base class of all medcolor X-ray datasets (see :mod:`medcolor.data.datasets.base` for the fields)."""

    name: ClassVar[str] = "xray"
    patients_known: bool = True
    #: the official splits of a dataset that has them (empty: any or none)
    SPLITS: ClassVar[tuple[str, ...]] = ()
    #: the split used when none is given
    DEFAULT_SPLIT: ClassVar[str | None] = None
    #: True for a dataset that writes its own files under ``root`` (``synthetic``): given a scratch folder as
    #: root when none is configured (:func:`medcolor.data.bundle.make_dataset`)
    GENERATES_FILES: ClassVar[bool] = False
    #: True where the user picks the label columns (``csv``): a column blank in every row is refused. The
    #: presets (CheXpert, NIH, MURA) read blank as "not mentioned", a negative, so their columns may be blank.
    CHECK_BLANK_LABELS: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: dict[str, Any], key: str = "data.options") -> None:
        """The values of this dataset's own options, checked before any file is read or written
        (:func:`medcolor.config.check_dataset_options` calls it); raises :class:`OptionError` naming
        ``key.<option>``.  Nothing to check by default."""

    @classmethod
    def _check_split(cls, split: str | None) -> None:
        if cls.SPLITS and split not in cls.SPLITS:
            raise ConfigError(f"{cls.__name__} split must be one of {cls.SPLITS}, not {split!r}")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        options: DatasetOptions | None = None,
        **common: Any,
    ) -> None:
        o = self.common_options(common, options)
        split, on_missing, on_duplicate, load_size = o.split, o.on_missing, o.on_duplicate, o.load_size
        if on_missing not in ON_MISSING:
            raise ConfigError(f"on_missing must be one of {ON_MISSING}, not {on_missing!r}")
        if on_duplicate not in ON_DUPLICATE:
            raise ConfigError(f"on_duplicate must be one of {ON_DUPLICATE}, not {on_duplicate!r}")
        if load_size is not None and (isinstance(load_size, bool) or not isinstance(load_size, int) or load_size < 1):
            raise ConfigError(f"load_size must be a positive int or None, not {load_size!r}")
        self.root: Path | None = None
        if root is not None:
            self.root = user_path(root).resolve()
            if not self.root.is_dir():
                what = "does not exist" if not self.root.exists() else "is not a folder"
                raise DataError(f"{self.name} root {self.root} {what}; pass the image folder as root")
        self.csv: Path | None = user_path(csv) if csv is not None else None
        self.split = split
        self.on_missing = on_missing
        self.on_duplicate = on_duplicate
        self.transform = o.transform
        self.load_size = load_size
        self.cache_misses = 0

        table = self._load(o.labels)
        meta = table.meta.reset_index(drop=True)
        keep, paths, skipped = self._check_rows(table, meta)
        idx = np.flatnonzero(keep)
        self.label_names: list[str] = list(table.label_names)
        self.raw_labels: np.ndarray = np.ascontiguousarray(table.raw_labels[idx], dtype=np.float32)
        self.labels: np.ndarray = np.ascontiguousarray(table.labels[idx], dtype=np.float32)
        self.patient_ids: np.ndarray = np.asarray(table.patient_ids)[idx]
        study = table.study_ids if table.study_ids is not None else as_str_array(table.rel_paths)
        self.study_ids: np.ndarray = np.asarray(study)[idx]
        self._path_strs: list[str] = [paths[i] for i in idx]
        self._paths: list[Path] | None = None
        self.meta: pd.DataFrame = meta.iloc[idx].reset_index(drop=True)
        self.skipped: pd.DataFrame = skipped
        if self.CHECK_BLANK_LABELS:
            blank_labels(self.name, self._source_name(), self.split, self.label_names, self.raw_labels, self.labels)
        self.cache: ImageCache | None = None
        self._set_cache(o.cache)

    @classmethod
    def common_options(cls, common: dict[str, Any], options: DatasetOptions | None = None) -> DatasetOptions:
        """The options every dataset takes, from keyword arguments (over ``options`` when given); the split
        defaults to the class's :attr:`DEFAULT_SPLIT`."""
        options = common.pop("options", None) or options
        names = {f.name for f in dataclasses.fields(DatasetOptions)}
        unknown = sorted(set(common) - names)
        if unknown:
            raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {', '.join(unknown)}")
        return dataclasses.replace(options or DatasetOptions(split=cls.DEFAULT_SPLIT), **common)

    # ---------------------------------------------------------------- subclass hooks

    def _load(self, labels: str | Sequence[str] | None) -> Table:
        raise NotImplementedError

    def _source_name(self) -> str:
        return str(self.csv) if self.csv is not None else str(self.root)

    # ---------------------------------------------------------------- construction helpers

    def _check_rows(self, table: Table, meta: pd.DataFrame) -> tuple[np.ndarray, list[str], pd.DataFrame]:
        """The checks of :mod:`~medcolor.data.datasets.checks`: rows present, paths inside root, duplicates,
        missing images.  Returns (rows kept, image paths of all rows, skipped rows)."""
        rel = [str(r) for r in table.rel_paths]
        src = self._source_name()
        rows = meta["source_row"].to_numpy()
        if not rel:
            how = f" match {table.selection}" if table.selection else ""
            raise DataError(f"{self.name}: no rows in {src}{how}; check the file and the dataset options")
        if self.root is not None:
            paths = keys = paths_under_root(rel, self.root, rows, src)
        else:  # labels only: the paths as written
            paths, keys = rel, [os.path.normpath(r) for r in rel]
        keep, skipped = duplicate_rows(keys, table.raw_labels, table.label_names, rows, src, self.on_duplicate)
        if self.root is not None and table.check_files:
            kept = np.flatnonzero(keep)
            present = existing([paths[i] for i in kept])
            if not present.all():
                missing = missing_rows(
                    [paths[i] for i in kept],
                    rows[kept],
                    present,
                    name=self.name,
                    src=src,
                    root=self.root,
                    hint=table.root_hint,
                    policy=self.on_missing,
                )
                keep[kept[~present]] = False
                skipped = pd.concat([skipped, missing], ignore_index=True) if len(skipped) else missing
        if not len(skipped):
            skipped = empty_skipped()
        return keep, paths, skipped

    def _set_cache(self, cache: ImageCache | str | os.PathLike | None) -> None:
        if cache is None:
            self.cache = None
            return
        if not isinstance(cache, ImageCache):
            if self.load_size is None:
                raise ConfigError("cache=<directory> needs load_size (the short side the cache stores)")
            cache = ImageCache(cache, self.load_size, name=self.name)
        if self.load_size is None:
            self.load_size = cache.size
        elif cache.size != self.load_size:
            raise ConfigError(
                f"the cache stores images at {cache.size} px but load_size is {self.load_size}; "
                "use a cache built at the same size"
            )
        self.cache = cache

    # ---------------------------------------------------------------- public API

    def __len__(self) -> int:
        return len(self._path_strs)

    @property
    def paths(self) -> list[Path]:
        """Image paths (N,): absolute under ``root``; as written in the CSV when ``root`` is None.
        Built on first access (a list of 200k ``Path`` objects takes seconds)."""
        if self._paths is None:
            self._paths = [Path(p) for p in self._path_strs]
        return self._paths

    @paths.setter
    def paths(self, value: Sequence[str | os.PathLike]) -> None:
        self._path_strs = [os.fspath(p) for p in value]
        self._paths = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, labels={self.label_names}, root={self.root}, "
            f"split={self.split!r}, load_size={self.load_size})"
        )

    def _where(self, i: int) -> str:
        return f"row {self.meta['source_row'].iloc[i]} of {self._source_name()}"

    def _check_index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        return i

    def load_image(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 (H, W) in [0, 1]: reduced per ``load_size`` (from the cache when it holds
        it, otherwise decoded); full resolution without ``load_size``."""
        i = self._check_index(i)
        if self.root is None:
            raise DataError(
                f"this {self.name} dataset was created without root (labels only); pass "
                "root=<image folder> to load images"
            )
        path = self._path_strs[i]
        try:
            if self.load_size is None:
                return read_image(path)
        except ImageReadError as e:
            raise ImageReadError(f"{e} (sample {i}, {self._where(i)})") from None
        return to_float(self.load_stored(i))

    def load_stored(self, i: int) -> np.ndarray | None:
        """Image ``i`` as stored after reduction (uint8 or uint16 (H, W), from the cache or decoded), what
        :meth:`load_image` scales to [0, 1]; None without ``load_size`` (full-resolution float images)."""
        i = self._check_index(i)
        if self.load_size is None or self.root is None:
            return None
        path = self._path_strs[i]
        try:
            stored = self.cache.get(path) if self.cache is not None else None
            if stored is None:
                if self.cache is not None:
                    self.cache_misses += 1
                stored = load_reduced(path, self.load_size)
            return stored
        except ImageReadError as e:
            raise ImageReadError(f"{e} (sample {i}, {self._where(i)})") from None

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._check_index(i)
        image = torch.from_numpy(self.load_image(i))[None]
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "target": torch.from_numpy(self.labels[i].copy()), "index": i}

    def subset(self, indices: Sequence[int] | np.ndarray) -> XRayDataset:
        """A dataset of the same class holding only ``indices`` (ints or a boolean mask); shares cache
        and transform; ``meta`` keeps ``source_row``."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"boolean mask of shape {idx.shape} does not fit a dataset of {len(self)}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"subset indices out of range for a dataset of {len(self)} samples")
        new = copy.copy(self)
        new.labels = self.labels[idx]
        new.raw_labels = self.raw_labels[idx]
        new.patient_ids = self.patient_ids[idx]
        new.study_ids = self.study_ids[idx]
        new._path_strs = [self._path_strs[i] for i in idx]
        new._paths = None
        new.meta = self.meta.iloc[idx].reset_index(drop=True)
        new.label_names = list(self.label_names)
        new.cache_misses = 0
        return new

    def label_counts(self) -> pd.DataFrame:
        """Positive / negative / uncertain / blank counts per label (from ``raw_labels``)."""
        from medcolor.data.summary import label_counts

        return label_counts(self)

    def build_cache(
        self, directory: str | os.PathLike | None = None, *, progress: bool = True, workers: int | None = None
    ) -> ImageCache:
        """Build (or complete) an :class:`ImageCache` of this dataset's images at ``load_size`` and use it.

        ``directory`` creates a new cache there (named after the dataset); without it the attached cache
        is built."""
        if self.root is None:
            raise DataError(f"this {self.name} dataset has no root (labels only); there are no images to cache")
        if directory is not None:
            if self.load_size is None:
                raise ConfigError("build_cache needs load_size: create the dataset with load_size=<short side>")
            self._set_cache(ImageCache(directory, self.load_size, name=self.name))
        elif self.cache is None:
            raise ConfigError("no cache attached: pass build_cache(directory)")
        assert self.cache is not None
        self.cache.build(self._path_strs, progress=progress, workers=workers)
        return self.cache


def create_dataset(
    name: str, root: str | os.PathLike | None = None, csv: str | os.PathLike | None = None, **kwargs: Any
) -> XRayDataset:
    """Build a registered dataset by name (``"chexpert"``, ``"chestxray14"``, ``"mura"``, ``"csv"``,
    ``"folder"``, ``"synthetic"``: :func:`list_datasets`); ``kwargs`` go to its constructor."""
    cls = DATASETS.get(name)
    return cls(root, csv, **kwargs)


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return DATASETS.names()
