"""X-ray datasets with one constructor shape and one set of public fields (in the spirit of torchxrayvision).

Every dataset is built as ``Cls(root=None, csv=None, *, split=..., labels=None, transform=None,
load_size=None, cache=None, on_missing="error", **dataset_specific)`` and exposes:

==================  ==================================================================================
``name``            ``"chexpert"``, ``"chestxray14"``, ``"mura"``, ``"csv"`` or ``"folder"``
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
``skipped``         DataFrame (source_row, path, reason) of rows dropped for missing images; empty if none
``patients_known``  False when patient ids are stand-ins (each image its own patient): splits may then leak
``transform``, ``load_size``, ``cache``, ``split``, ``on_missing``, ``cache_misses``
==================  ==================================================================================

Missing images (``on_missing``):

* ``"error"`` (default): a :class:`~medcolor.errors.DataError` lists the first missing files with their CSV
  rows and the count.
* ``"skip"``: the rows are dropped, each one recorded in ``dataset.skipped``, and a
  :class:`MissingImagesWarning` names the count and the first rows.
* ``"present"``: for an image folder that holds only part of a dataset on purpose (e.g. 1000 of the 112,120
  ChestX-ray14 images): keeps the rows whose image is present and warns once with the number dropped; the
  dropped rows are in ``dataset.skipped`` too.  Nothing is ever dropped silently.

``load_size``: when set, :meth:`~XRayDataset.load_image` returns the *reduced image*: the short side
reduced to ``load_size`` (antialiased, aspect kept; smaller images are **not** upscaled, so the short side
can be below ``load_size`` — the training transform resizes to the network input), quantized to
uint8/uint16 like the source and back to float32.  This is exactly what
:class:`~medcolor.data.cache.ImageCache` stores, so cached and uncached loading are bit-identical.
Without ``load_size`` images are returned at full resolution.
"""

from __future__ import annotations

import bz2
import copy
import csv as _csv
import difflib
import gzip
import io
import logging
import lzma
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medcolor.data.cache import ImageCache
from medcolor.data.readers import IMAGE_EXTENSIONS, load_reduced, read_image, to_float
from medcolor.errors import ConfigError, DataError, ImageReadError
from medcolor.registry import Registry

__all__ = [
    "CHEXPERT_LABELS",
    "DATASETS",
    "MURA",
    "MURA_BODY_PARTS",
    "NIH_LABELS",
    "PAPER_LABELS",
    "PAPER_POLICY",
    "CheXpert",
    "ChestXray14",
    "CsvDataset",
    "FolderDataset",
    "MissingImagesWarning",
    "XRayDataset",
    "aggregate_by_study",
    "apply_policy",
    "create_dataset",
    "list_datasets",
    "read_label_csv",
]

log = logging.getLogger(__name__)

DATASETS: Registry[type[XRayDataset]] = Registry("dataset")

#: The five observations of the paper (CheXpert spelling), in the order used for the C = 5 heads.
PAPER_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
#: The paper's uncertainty policy per observation (labels not listed: "zeros").
PAPER_POLICY: dict[str, str] = {
    "Atelectasis": "ones",
    "Cardiomegaly": "zeros",
    "Consolidation": "zeros",
    "Edema": "ones",
    "Pleural Effusion": "ones",
}
POLICIES = ("ones", "zeros", "ignore")
#: The 14 ChestX-ray14 findings, spelled as in the NIH label file ("Effusion", "Pleural_Thickening").
NIH_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
#: The paper's five findings in NIH spelling, index-aligned with :data:`PAPER_LABELS`.
NIH_PAPER_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion")
MURA_BODY_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)
ON_MISSING = ("error", "skip", "present")
_NEGATIVE_CLASS = re.compile(r"normal|negative|healthy|no[ _-]?finding|benign|control", re.IGNORECASE)
#: Patient-id presets for :class:`FolderDataset` (``patient_regex=NAME``).
PATIENT_REGEX_PRESETS: dict[str, str] = {
    # Kermany et al.: personN_{bacteria|virus}_K.jpeg -> personN;
    # [NORMAL2-]IM-XXXX-YYYY.jpeg -> [NORMAL2-]IM-XXXX
    "kermany": r"^(?:(person\d+)_(?:bacteria|virus)_\d+(?:_\d+)*|((?:NORMAL2-)?IM-\d+(?:-\d+)*)-\d+)\.jpe?g$",
}


class MissingImagesWarning(UserWarning):
    """Rows were dropped because their image file is missing (``on_missing="skip"`` / ``"present"``)."""


# =============================================================================================== CSV helpers


def _read_file_bytes(path: Path, what: str) -> bytes:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if path.is_dir():
        raise DataError(f"{what} {path} is a directory; pass the CSV file itself")
    suffix = path.suffix.lower()
    opener: Callable[..., Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"cannot read {what} {path}: {e}") from None


def _record_lines(data: bytes, n_rows: int, header: bool) -> np.ndarray:
    """1-based line number where each CSV record starts (header = line 1)."""
    first = 2 if header else 1
    n_newlines = data.count(b"\n")
    n_lines = n_newlines + (0 if data.endswith(b"\n") else 1)
    simple = n_lines == n_rows + (first - 1) and b"\n\n" not in data and not data.startswith(b"\n")
    if simple:
        return np.arange(first, first + n_rows, dtype=np.int64)
    # quoted fields with line breaks or blank lines: follow the csv module's physical line count
    reader = _csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    starts: list[int] = []
    seen_header = not header
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except _csv.Error:
            break
        if not row:
            continue
        if not seen_header:
            seen_header = True
            continue
        starts.append(start)
    if len(starts) == n_rows:
        return np.asarray(starts, dtype=np.int64)
    return np.arange(first, first + n_rows, dtype=np.int64)  # could not align: best effort


def read_label_csv(
    path: str | os.PathLike,
    *,
    header: bool = True,
    names: Sequence[str] | None = None,
    what: str = "label file",
) -> pd.DataFrame:
    """Read a (possibly .gz/.bz2/.xz compressed) CSV and add ``source_row``: each record's 1-based line in
    the file (header = line 1).  Raises :class:`DataError` naming the file when it is missing or
    unparsable."""
    path = Path(path)
    data = _read_file_bytes(path, what)
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            header=0 if header else None,
            names=list(names) if names is not None else None,
            encoding="utf-8",
            low_memory=False,
        )
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} {path} is empty") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"cannot parse {what} {path} as CSV: {e}") from None
    df["source_row"] = _record_lines(data, len(df), header)
    return df


def _require_columns(df: pd.DataFrame, columns: Iterable[str], file: Path | str, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = [c for c in df.columns if c != "source_row"]
        shown = ", ".join(repr(c) for c in found[:20]) + (", ..." if len(found) > 20 else "")
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, [str(c) for c in found], n=1)
            if close:
                hints.append(f"{m!r} -> {close[0]!r}?")
        hint = f" Close matches: {'; '.join(hints)}." if hints else ""
        raise DataError(
            f"{file} lacks the column(s) {missing} expected in {what} (its columns: {shown}).{hint} "
            "Check that it is the right file, or name the columns with the dataset's column options."
        )


def _plain(value: Any) -> Any:
    """numpy scalar -> Python scalar, for readable messages."""
    return value.item() if isinstance(value, np.generic) else value


def _parse_raw_labels(df: pd.DataFrame, columns: Sequence[str], file: Path | str) -> np.ndarray:
    """Label columns holding 1 / 0 / -1 / blank -> float32 (N, L) with NaN for blank; anything else is a
    DataError naming file, row and column."""
    out = np.empty((len(df), len(columns)), dtype=np.float32)
    rows = df["source_row"].to_numpy()
    for j, col in enumerate(columns):
        s = df[col]
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            values = s.to_numpy(dtype=np.float64, na_value=np.nan)
            given = ~np.isnan(values)
        else:
            text = s.astype("string").str.strip()
            blank = (text.isna() | (text == "")).to_numpy(dtype=bool, na_value=True)
            num = pd.to_numeric(text.where(~blank), errors="coerce")
            values = num.to_numpy(dtype=np.float64, na_value=np.nan)
            given = ~blank
        ok = ~given | np.isin(values, (1.0, 0.0, -1.0))
        if not ok.all():
            bad = np.flatnonzero(~ok)
            k = int(bad[0])
            raise DataError(
                f"{file}: row {rows[k]}, column {col!r} holds {_plain(s.iloc[k])!r}; label values must be 1 "
                f"(positive), 0 (negative), -1 (uncertain) or blank ({len(bad)} invalid value(s) in that "
                f"column, first at row {rows[k]}). Fix or blank them."
            )
        out[:, j] = values
    return out


def apply_policy(
    raw_labels: np.ndarray, label_names: Sequence[str], policy: str | Mapping[str, str] | None
) -> np.ndarray:
    """Turn raw labels (1, 0, -1 uncertain, NaN blank) into training labels (1, 0, NaN ignored).

    ``policy`` is ``"ones"`` (U-Ones: uncertain -> 1), ``"zeros"`` (U-Zeros: -> 0) or ``"ignore"``
    (U-Ignore: -> NaN), for all labels, or a dict ``{label: policy}`` (labels not in it: ``"zeros"``);
    ``None`` or ``"paper"`` means the paper's :data:`PAPER_POLICY`.  Blank always becomes 0 (negative),
    as in CheXpert.
    """
    names = list(label_names)
    if policy is None or (isinstance(policy, str) and policy.lower() == "paper"):
        policy = {n: p for n, p in PAPER_POLICY.items() if n in names}
    if isinstance(policy, str):
        per_label = dict.fromkeys(names, policy)
    elif isinstance(policy, Mapping):
        unknown = [k for k in policy if k not in names]
        if unknown:
            raise ConfigError(f"policy names label(s) {unknown} that are not among the labels {names}")
        per_label = {n: policy.get(n, "zeros") for n in names}
    else:
        raise ConfigError(f"policy must be one of {POLICIES} or a dict label -> policy, not {policy!r}")
    labels = np.where(np.isnan(raw_labels), np.float32(0), raw_labels).astype(np.float32)
    for j, n in enumerate(names):
        p = str(per_label[n]).lower()
        if p not in POLICIES:
            raise ConfigError(f"unknown uncertainty policy {per_label[n]!r} for {n!r}; use one of {POLICIES}")
        col = labels[:, j]
        col[col == -1] = {"ones": 1.0, "zeros": 0.0, "ignore": np.nan}[p]
    return labels


def _resolve_labels(
    requested: str | Sequence[str] | None, valid: Sequence[str], default: Sequence[str], dataset: str
) -> list[str]:
    if requested is None:
        return list(default)
    names = [requested] if isinstance(requested, str) else list(requested)
    if not names:
        raise ConfigError(f"labels is empty; pass None for the {dataset} default {list(default)}")
    out = []
    for n in names:
        if n not in valid:
            close = difflib.get_close_matches(str(n), list(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {dataset} label {n!r}.{hint} Valid labels: {list(valid)}")
        if n in out:
            raise ConfigError(f"label {n!r} is listed twice")
        out.append(n)
    return out


def _as_str_array(values: Iterable[Any]) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=str)


def aggregate_by_study(probs: np.ndarray, study_ids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average per-image predictions (N, L) (or (N,)) over each study.

    Returns ``(unique_study_ids, probs_mean)``: the sorted unique study ids (S,) and the mean per study,
    shape (S, L) (or (S,) for 1-D input).  Used for MURA's study-level AUC; applied to ``labels`` it gives
    the study labels.
    """
    probs = np.asarray(probs, dtype=np.float64)
    ids = np.asarray(study_ids)
    if probs.shape[0] != ids.shape[0]:
        raise DataError(f"aggregate_by_study: {probs.shape[0]} predictions but {ids.shape[0]} study ids")
    uniq, inverse = np.unique(ids, return_inverse=True)
    flat = probs.reshape(probs.shape[0], -1)
    sums = np.zeros((len(uniq), flat.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, flat)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    mean = sums / counts[:, None]
    return uniq, mean.reshape((len(uniq), *probs.shape[1:])).astype(np.float32)


def _existing(paths: Sequence[str]) -> np.ndarray:
    """Which paths exist; lists each folder once (fast for 100k+ files)."""
    listing: dict[str, set[str] | None] = {}
    out = np.zeros(len(paths), dtype=bool)
    split = os.path.split
    for k, p in enumerate(paths):
        parent, base = split(p)
        names = listing.get(parent, False)
        if names is False:
            try:
                names = set(os.listdir(parent))
            except OSError:
                names = None
            listing[parent] = names
        out[k] = names is not None and base in names
    return out


@dataclass
class _Table:
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


# =============================================================================================== base class


class XRayDataset(Dataset):
    """Base class of all medcolor X-ray datasets (see the module docstring for the fields)."""

    name: ClassVar[str] = "xray"
    patients_known: bool = True
    #: the official splits of a dataset that has them (empty: any or none)
    SPLITS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _check_split(cls, split: str | None) -> None:
        if cls.SPLITS and split not in cls.SPLITS:
            raise ConfigError(f"{cls.__name__} split must be one of {cls.SPLITS}, not {split!r}")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split: str | None = None,
        labels: str | Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        load_size: int | None = None,
        cache: ImageCache | str | os.PathLike | None = None,
        on_missing: str = "error",
    ) -> None:
        if on_missing not in ON_MISSING:
            raise ConfigError(f"on_missing must be one of {ON_MISSING}, not {on_missing!r}")
        if load_size is not None and (isinstance(load_size, bool) or not isinstance(load_size, int) or load_size < 1):
            raise ConfigError(f"load_size must be a positive int or None, not {load_size!r}")
        self.root: Path | None = None
        if root is not None:
            self.root = Path(root).expanduser().resolve()
            if not self.root.is_dir():
                what = "does not exist" if not self.root.exists() else "is not a folder"
                raise DataError(f"{self.name} root {self.root} {what}; pass the image folder as root")
        self.csv: Path | None = Path(csv).expanduser() if csv is not None else None
        self.split = split
        self.on_missing = on_missing
        self.transform = transform
        self.load_size = load_size
        self.cache_misses = 0

        table = self._load(labels)
        meta = table.meta.reset_index(drop=True)
        rel = list(table.rel_paths)
        if self.root is not None:
            root_str = str(self.root)
            paths = [os.path.join(root_str, r) for r in rel]
        else:
            paths = rel
        keep = np.ones(len(paths), dtype=bool)
        skipped = pd.DataFrame(
            {
                "source_row": pd.Series([], dtype=np.int64),
                "path": pd.Series([], dtype=object),
                "reason": pd.Series([], dtype=object),
            }
        )
        if self.root is not None and table.check_files and len(paths):
            keep = _existing(paths)
            if not keep.all():
                skipped = self._handle_missing(paths, meta, keep, table.root_hint)
        idx = np.flatnonzero(keep)
        self.label_names: list[str] = list(table.label_names)
        self.raw_labels: np.ndarray = np.ascontiguousarray(table.raw_labels[idx], dtype=np.float32)
        self.labels: np.ndarray = np.ascontiguousarray(table.labels[idx], dtype=np.float32)
        self.patient_ids: np.ndarray = np.asarray(table.patient_ids)[idx]
        study = table.study_ids if table.study_ids is not None else _as_str_array(rel)
        self.study_ids: np.ndarray = np.asarray(study)[idx]
        self._path_strs: list[str] = [paths[i] for i in idx]
        self._paths: list[Path] | None = None
        self.meta: pd.DataFrame = meta.iloc[idx].reset_index(drop=True)
        self.skipped: pd.DataFrame = skipped
        self.cache: ImageCache | None = None
        self._set_cache(cache)

    # ---------------------------------------------------------------- subclass hooks

    def _load(self, labels: str | Sequence[str] | None) -> _Table:
        raise NotImplementedError

    def _source_name(self) -> str:
        return str(self.csv) if self.csv is not None else str(self.root)

    # ---------------------------------------------------------------- construction helpers

    def _handle_missing(self, paths: list[str], meta: pd.DataFrame, present: np.ndarray, hint: str) -> pd.DataFrame:
        missing = np.flatnonzero(~present)
        rows = meta["source_row"].to_numpy()
        n, total = len(missing), len(paths)
        skipped = pd.DataFrame(
            {
                "source_row": rows[missing].astype(np.int64),
                "path": [paths[i] for i in missing],
                "reason": "image file not found",
            }
        )
        first = "; ".join(f"row {rows[i]}: {paths[i]}" for i in missing[:5])
        src = self._source_name()
        if self.on_missing == "error":
            extra = f" None of the images were found: {hint}" if n == total and hint else ""
            raise DataError(
                f"{n} of {total} images listed in {src} are missing under root {self.root} ({first}"
                f'{"; ..." if n > 5 else ""}).{extra} Pass on_missing="skip" to drop those rows (listed in '
                'dataset.skipped), or on_missing="present" when the folder holds only part of the dataset.'
            )
        if self.on_missing == "skip":
            msg = (
                f"{self.name}: skipped {n} of {total} rows of {src} whose image is missing ({first}"
                f"{'; ...' if n > 5 else ''}); dataset.skipped lists them all"
            )
        else:
            msg = (
                f"{self.name}: root {self.root} holds images for {total - n:,} of the {total:,} rows of "
                f"{src}; "
                f"using those, dropped {n:,} rows (dataset.skipped lists them)"
            )
        warnings.warn(msg, MissingImagesWarning, stacklevel=4)
        return skipped

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
            stored = self.cache.get(path) if self.cache is not None else None
            if stored is None:
                if self.cache is not None:
                    self.cache_misses += 1
                stored = load_reduced(path, self.load_size)
            return to_float(stored)
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


# =============================================================================================== CheXpert


def _normalize_views(views: str | Sequence[str] | None, valid: Sequence[str], what: str) -> list[str] | None:
    if views is None or (isinstance(views, str) and views.lower() == "all"):
        return None
    vs = [views] if isinstance(views, str) else list(views)
    out = [str(v).lower() for v in vs]
    bad = [v for v in out if v not in valid]
    if bad:
        raise ConfigError(f"unknown {what} {bad}; use some of {list(valid)} or 'all'")
    return out


@DATASETS.register("chexpert")
class CheXpert(XRayDataset):
    """The CheXpert label files (official ``train.csv`` / ``valid.csv``).

    ``root`` is the dataset folder that contains ``train/`` and ``valid/`` (e.g. ``CheXpert-v1.0-small``);
    the CSV paths' first component (``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``) is stripped and the rest
    resolved against it.  ``csv`` defaults to ``root/{split}.csv``.  ``views``: ``("frontal",)`` (default),
    ``("lateral",)`` or ``"all"``, filtering the ``Frontal/Lateral`` column.  ``policy``: see
    :func:`apply_policy` (default: the paper's per-label policy).  Default labels: :data:`PAPER_LABELS`;
    any of :data:`CHEXPERT_LABELS` on request.  Patient id ``patientNNNNN`` and study id
    ``patientNNNNN/studyK`` come from the path.
    """

    name = "chexpert"
    SPLITS = ("train", "valid")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split: str = "train",
        labels: str | Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        load_size: int | None = None,
        cache: ImageCache | str | os.PathLike | None = None,
        on_missing: str = "error",
        views: str | Sequence[str] | None = ("frontal",),
        policy: str | Mapping[str, str] | None = None,
    ) -> None:
        self._check_split(split)
        self.views = _normalize_views(views, ("frontal", "lateral"), "CheXpert views")
        self.policy = policy
        if csv is None:
            if root is None:
                raise DataError("CheXpert needs root=<dataset folder> or csv=<train.csv / valid.csv>")
            csv = Path(root).expanduser() / f"{split}.csv"
        super().__init__(
            root,
            csv,
            split=split,
            labels=labels,
            transform=transform,
            load_size=load_size,
            cache=cache,
            on_missing=on_missing,
        )

    def _load(self, labels: str | Sequence[str] | None) -> _Table:
        assert self.csv is not None
        names = _resolve_labels(labels, CHEXPERT_LABELS, PAPER_LABELS, "CheXpert")
        df = read_label_csv(self.csv, what="CheXpert label file")
        need = ["Path", *names] + (["Frontal/Lateral"] if self.views is not None else [])
        _require_columns(df, need, self.csv, "a CheXpert label file")
        raw = _parse_raw_labels(df, names, self.csv)
        path_list = df["Path"].astype(str).tolist()
        search = re.compile(r"(patient\d+)/(study\d+)/").search
        found = [search(p) for p in path_list]
        bad = np.fromiter((m is None for m in found), dtype=bool, count=len(found))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{self.csv}: row {df['source_row'].iloc[k]}, column 'Path' = {path_list[k]!r} "
                f"does not contain patientNNNNN/studyN/ ({int(bad.sum())} such rows)"
            )
        strip = re.compile(r"^CheXpert-v1\.0[^/]*/").sub
        rel = np.asarray([strip("", p, count=1) for p in path_list], dtype=object)
        patients = np.asarray([m.group(1) for m in found], dtype=object)  # type: ignore[union-attr]
        studies = np.asarray([m.group(1) + "/" + m.group(2) for m in found], dtype=object)  # type: ignore[union-attr]
        if self.views is not None:
            keep = df["Frontal/Lateral"].astype("string").str.lower().isin(self.views).fillna(False).to_numpy(bool)
            df, raw, rel, patients, studies = df[keep], raw[keep], rel[keep], patients[keep], studies[keep]
        return _Table(
            meta=df,
            rel_paths=rel.tolist(),
            raw_labels=raw,
            labels=apply_policy(raw, names, self.policy),
            label_names=names,
            patient_ids=patients.astype(str),
            study_ids=studies.astype(str),
            root_hint="root must be the CheXpert folder that contains train/ and valid/ "
            f"(e.g. {self.root / rel[0] if len(rel) and self.root else '...'} was looked for)",
        )


# =============================================================================================== ChestX-ray14

_NIH_CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")


@DATASETS.register("chestxray14")
class ChestXray14(XRayDataset):
    """ChestX-ray14 (NIH) from the official ``Data_Entry_2017*.csv``.

    ``root`` is the flat folder of PNGs (``Image Index`` names).  ``csv`` defaults to the first of
    ``Data_Entry_2017_v2020.csv[.gz]`` / ``Data_Entry_2017.csv[.gz]`` found in root or its parent.
    Labels are spelled as in the NIH file (:data:`NIH_LABELS`: ``"Effusion"``, not ``"Pleural Effusion"``);
    the default is the paper's five (:data:`NIH_PAPER_LABELS`, index-aligned with CheXpert's
    :data:`PAPER_LABELS`).  ``Finding Labels`` is split on ``|``; ``No Finding`` is all-negative; there are
    no uncertain or blank values.  ``split``: ``"all"`` (default), ``"train_val"`` or ``"test"``, the latter
    two from the official ``train_val_list.txt`` / ``test_list.txt`` in ``split_lists=DIR``.  Patient id =
    ``Patient ID``; study id = ``Image Index`` (one image per study).  For a folder with only part of the
    images use ``on_missing="present"``.
    """

    name = "chestxray14"
    SPLITS = ("all", "train_val", "test")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split: str = "all",
        labels: str | Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        load_size: int | None = None,
        cache: ImageCache | str | os.PathLike | None = None,
        on_missing: str = "error",
        split_lists: str | os.PathLike | None = None,
    ) -> None:
        self._check_split(split)
        if split != "all" and split_lists is None:
            raise ConfigError(
                f"ChestXray14 split={split!r} needs split_lists=<folder with train_val_list.txt "
                "and test_list.txt>; or use split='all' and medcolor.data.patient_split"
            )
        self.split_lists = Path(split_lists).expanduser() if split_lists is not None else None
        if csv is None:
            if root is None:
                raise DataError("ChestXray14 needs root=<image folder> or csv=<Data_Entry_2017*.csv>")
            r = Path(root).expanduser()
            candidates = [d / (n + gz) for d in (r, r.parent) for n in _NIH_CSV_NAMES for gz in ("", ".gz")]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise DataError(
                    f"no ChestX-ray14 label file ({', '.join(_NIH_CSV_NAMES)}) in {r} or {r.parent}; "
                    "pass csv=<path to Data_Entry_2017*.csv>"
                )
            csv = found[0]
        super().__init__(
            root,
            csv,
            split=split,
            labels=labels,
            transform=transform,
            load_size=load_size,
            cache=cache,
            on_missing=on_missing,
        )

    def _load(self, labels: str | Sequence[str] | None) -> _Table:
        assert self.csv is not None
        names = _resolve_labels(labels, NIH_LABELS, NIH_PAPER_LABELS, "ChestX-ray14")
        df = read_label_csv(self.csv, what="ChestX-ray14 label file")
        _require_columns(df, ["Image Index", "Finding Labels", "Patient ID"], self.csv, "a ChestX-ray14 label file")
        findings = df["Finding Labels"].astype("string").fillna("").tolist()
        sets = [{t.strip() for t in f.split("|")} for f in findings]
        valid = {*NIH_LABELS, "No Finding"}
        for pos, tok in enumerate(sets):
            if not tok <= valid:
                raise DataError(
                    f"{self.csv}: row {df['source_row'].iloc[pos]}, column 'Finding Labels' = "
                    f"{findings[pos]!r} holds {sorted(tok - valid)}, which is not a ChestX-ray14 finding "
                    f"(valid: {sorted(valid)}, joined by '|')"
                )
        raw = np.zeros((len(df), len(names)), dtype=np.float32)
        for j, n in enumerate(names):
            raw[:, j] = np.fromiter((n in t for t in sets), dtype=bool, count=len(sets))
        if self.split != "all":
            assert self.split_lists is not None
            list_file = self.split_lists / f"{self.split}_list.txt"
            if not list_file.is_file():
                raise DataError(f"ChestX-ray14 split list not found: {list_file} (the official {list_file.name})")
            wanted = {ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()}
            keep = df["Image Index"].astype(str).isin(wanted).to_numpy()
            df, raw = df[keep], raw[keep]
        index = df["Image Index"].astype(str)
        return _Table(
            meta=df,
            rel_paths=index.tolist(),
            raw_labels=raw,
            labels=raw.copy(),
            label_names=names,
            patient_ids=_as_str_array(df["Patient ID"].tolist()),
            study_ids=index.to_numpy(dtype=str),
            root_hint="root must be the folder that holds the PNG files themselves (flat, named like 00000001_000.png)",
        )


# =============================================================================================== MURA


def _normalize_body_parts(parts: str | Sequence[str] | None) -> list[str] | None:
    if parts is None or (isinstance(parts, str) and parts.lower() == "all"):
        return None
    ps = [parts] if isinstance(parts, str) else list(parts)
    out = []
    for p in ps:
        q = str(p).upper()
        q = q if q.startswith("XR_") else f"XR_{q}"
        if q not in MURA_BODY_PARTS:
            raise ConfigError(f"unknown MURA body part {p!r}; use some of {list(MURA_BODY_PARTS)} or None for all")
        out.append(q)
    return out


@DATASETS.register("mura")
class MURA(XRayDataset):
    """MURA v1.1 from the official ``{split}_image_paths.csv`` and ``{split}_labeled_studies.csv`` (no
    header lines).

    ``root`` is the folder that contains ``MURA-v1.1/`` (CSV paths are ``MURA-v1.1/train/XR_SHOULDER/...``).
    ``csv`` (the image-paths file) defaults to ``root/MURA-v1.1/{split}_image_paths.csv``; ``studies_csv``
    defaults to the ``labeled_studies`` file next to it.  ``body_parts``: ``("XR_SHOULDER",)`` by default,
    ``None`` for all.  One label, ``"abnormal"``, per image from its study.  ``study_ids`` = the study
    folder (``MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive``); patient = ``patientNNNNN``.
    Study-level evaluation: :func:`aggregate_by_study` and :meth:`study_table`.
    """

    name = "mura"
    SPLITS = ("train", "valid")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split: str = "train",
        labels: str | Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        load_size: int | None = None,
        cache: ImageCache | str | os.PathLike | None = None,
        on_missing: str = "error",
        body_parts: str | Sequence[str] | None = ("XR_SHOULDER",),
        studies_csv: str | os.PathLike | None = None,
    ) -> None:
        self._check_split(split)
        self.body_parts = _normalize_body_parts(body_parts)
        if csv is None:
            if root is None:
                raise DataError("MURA needs root=<folder containing MURA-v1.1/> or csv=<{split}_image_paths.csv>")
            csv = Path(root).expanduser() / "MURA-v1.1" / f"{split}_image_paths.csv"
        csv = Path(csv).expanduser()
        if studies_csv is None:
            if "image_paths" not in csv.name:
                raise ConfigError(f"cannot derive the study-label file from {csv.name}; pass studies_csv=")
            studies_csv = csv.with_name(csv.name.replace("image_paths", "labeled_studies"))
        self.studies_csv = Path(studies_csv).expanduser()
        super().__init__(
            root,
            csv,
            split=split,
            labels=labels,
            transform=transform,
            load_size=load_size,
            cache=cache,
            on_missing=on_missing,
        )

    def _load(self, labels: str | Sequence[str] | None) -> _Table:
        assert self.csv is not None
        names = _resolve_labels(labels, ("abnormal",), ("abnormal",), "MURA")
        images = read_label_csv(self.csv, header=False, names=["path"], what="MURA image-paths file")
        studies = read_label_csv(self.studies_csv, header=False, names=["study", "label"], what="MURA study-label file")
        if studies["study"].isna().any() or studies["label"].isna().any():
            k = int(np.flatnonzero((studies["study"].isna() | studies["label"].isna()).to_numpy())[0])
            raise DataError(f"{self.studies_csv}: row {studies['source_row'].iloc[k]} is not 'study folder,0|1'")
        lab = pd.to_numeric(studies["label"], errors="coerce")
        bad = ~lab.isin([0, 1]).to_numpy()
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{self.studies_csv}: row {studies['source_row'].iloc[k]}, column 2 (label) holds "
                f"{studies['label'].iloc[k]!r}; study labels must be 0 or 1"
            )
        study_key = studies["study"].astype(str).str.rstrip("/")
        if study_key.duplicated().any():
            k = int(np.flatnonzero(study_key.duplicated().to_numpy())[0])
            raise DataError(
                f"{self.studies_csv}: row {studies['source_row'].iloc[k]}: study {study_key.iloc[k]!r} is listed twice"
            )
        label_of = dict(zip(study_key.tolist(), lab.astype(float).tolist(), strict=True))
        path = images["path"].astype(str).str.strip()
        parts = path.str.split("/")
        if (parts.str.len() < 5).any():
            k = int(np.flatnonzero((parts.str.len() < 5).to_numpy())[0])
            raise DataError(
                f"{self.csv}: row {images['source_row'].iloc[k]} = {path.iloc[k]!r} is not a MURA image "
                "path (MURA-v1.1/<split>/XR_<PART>/patientNNNNN/studyK_<label>/imageM.png)"
            )
        study = path.str.rsplit("/", n=1).str[0]
        body = parts.str[2]
        patient = path.str.extract(r"(patient\d+)")[0]
        known = study.isin(list(label_of)).to_numpy()
        if not known.all():
            k = int(np.flatnonzero(~known)[0])
            raise DataError(
                f"{self.csv}: row {images['source_row'].iloc[k]}: the study of {path.iloc[k]!r} is not "
                f"in {self.studies_csv} ({int((~known).sum())} such images)"
            )
        if patient.isna().any():
            k = int(np.flatnonzero(patient.isna().to_numpy())[0])
            raise DataError(f"{self.csv}: row {images['source_row'].iloc[k]}: no patientNNNNN in {path.iloc[k]!r}")
        meta = images.assign(study=study, body_part=body, abnormal=study.map(label_of).astype(np.float32))
        if self.body_parts is not None:
            keep = body.isin(self.body_parts).to_numpy()
            meta, patient, study = meta[keep], patient[keep], study[keep]
        raw = meta["abnormal"].to_numpy(np.float32)[:, None]
        meta = meta[["path", "study", "body_part", "abnormal", "source_row"]]
        return _Table(
            meta=meta,
            rel_paths=meta["path"].tolist(),
            raw_labels=raw,
            labels=raw.copy(),
            label_names=names,
            patient_ids=patient.to_numpy(dtype=str),
            study_ids=study.to_numpy(dtype=str),
            root_hint="root must be the folder that contains MURA-v1.1/",
        )

    def study_table(self) -> pd.DataFrame:
        """One row per study: ``study_id``, ``patient_id``, ``body_part``, ``abnormal``, ``n_images``."""
        df = pd.DataFrame(
            {
                "study_id": self.study_ids,
                "patient_id": self.patient_ids,
                "body_part": self.meta["body_part"].to_numpy(),
                "abnormal": self.labels[:, 0],
            }
        )
        g = df.groupby("study_id", sort=True)
        out = g.agg(
            patient_id=("patient_id", "first"),
            body_part=("body_part", "first"),
            abnormal=("abnormal", "first"),
            n_images=("abnormal", "size"),
        )
        return out.reset_index()


# =============================================================================================== generic CSV


@DATASETS.register("csv")
class CsvDataset(XRayDataset):
    """Any CSV with an image-path column and either label columns or a categorical column.

    * ``path_column`` (default ``"path"``): image paths, resolved against ``root`` (absolute paths stay).
    * ``label_columns=[...]``: values 1 / 0 / -1 / blank as in CheXpert; ``policy`` as :func:`apply_policy`
      (default ``"ignore"``: uncertain -> NaN, blank -> 0).
    * or ``category_column="finding"``: with ``positive=[...]`` one binary label (named ``positive_name``,
      default the positive categories joined by ``|``) that is 1 when the value is one of them;
      otherwise one-hot, one label per category (``categories=[...]``, default every value seen, sorted;
      values outside an explicit list are negative for all).  ``separator`` (e.g. ``","``) splits
      multi-valued cells (``"COVID-19, ARDS"``) so each part counts.  Values in ``ignore`` (e.g.
      ``["todo"]``) and blank cells give NaN (unknown) labels — in ``raw_labels`` and ``labels``.
    * ``patient_column`` (default None: each image is its own patient, ``patients_known = False``, with a
      warning, because patient splits can then leak); ``study_column`` (default: the path).
    * ``views=[...]`` keeps rows whose ``view_column`` (default ``"view"``) is one of them (case-insensitive).
    * ``split="..."`` keeps rows whose ``split_column`` (default ``"split"``) equals it; None keeps all.
    """

    name = "csv"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split: str | None = None,
        labels: str | Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        load_size: int | None = None,
        cache: ImageCache | str | os.PathLike | None = None,
        on_missing: str = "error",
        path_column: str = "path",
        label_columns: Sequence[str] | None = None,
        category_column: str | None = None,
        categories: Sequence[str] | None = None,
        positive: str | Sequence[str] | None = None,
        positive_name: str | None = None,
        separator: str | None = None,
        ignore: Sequence[str] = (),
        policy: str | Mapping[str, str] | None = "ignore",
        patient_column: str | None = None,
        study_column: str | None = None,
        views: str | Sequence[str] | None = None,
        view_column: str = "view",
        split_column: str = "split",
    ) -> None:
        if csv is None:
            raise DataError("CsvDataset needs csv=<label file>")
        if (label_columns is None) == (category_column is None):
            raise ConfigError("CsvDataset needs exactly one of label_columns=[...] or category_column='...'")
        if label_columns is not None and labels is not None:
            raise ConfigError("with label_columns, the label names are the columns; leave labels=None")
        if category_column is not None and categories is not None and positive is not None:
            raise ConfigError("pass either categories=[...] (one-hot) or positive=[...] (one binary label)")
        self.path_column = path_column
        self.label_columns = list(label_columns) if label_columns is not None else None
        self.category_column = category_column
        self.categories = list(categories) if categories is not None else None
        self.positive = [positive] if isinstance(positive, str) else (list(positive) if positive else None)
        self.positive_name = positive_name
        self.separator = separator
        self.ignore = [ignore] if isinstance(ignore, str) else list(ignore)
        self.policy = policy
        self.patient_column = patient_column
        self.study_column = study_column
        self.views = [views] if isinstance(views, str) else (list(views) if views is not None else None)
        self.view_column = view_column
        self.split_column = split_column
        self.patients_known = patient_column is not None
        super().__init__(
            root,
            csv,
            split=split,
            labels=labels,
            transform=transform,
            load_size=load_size,
            cache=cache,
            on_missing=on_missing,
        )

    def _cells(self, s: pd.Series) -> list[list[str] | None]:
        out: list[list[str] | None] = []
        for v in s.tolist():
            if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
                out.append(None)
                continue
            parts = str(v).split(self.separator) if self.separator else [str(v)]
            out.append([p.strip() for p in parts if p.strip()])
        return out

    def _load(self, labels: str | Sequence[str] | None) -> _Table:
        assert self.csv is not None
        df = read_label_csv(self.csv)
        need = [self.path_column]
        need += self.label_columns or [self.category_column]  # type: ignore[list-item]
        need += [c for c in (self.patient_column, self.study_column) if c is not None]
        if self.views is not None:
            need.append(self.view_column)
        if self.split is not None:
            need.append(self.split_column)
        _require_columns(df, need, self.csv, "this CSV (as configured)")
        blank_path = df[self.path_column].isna().to_numpy()
        if blank_path.any():
            k = int(np.flatnonzero(blank_path)[0])
            raise DataError(
                f"{self.csv}: row {df['source_row'].iloc[k]}, column {self.path_column!r} is blank "
                f"({int(blank_path.sum())} such rows); every row needs an image path"
            )
        if self.views is not None:
            wanted = {str(v).lower() for v in self.views}
            keep = df[self.view_column].astype("string").str.lower().isin(wanted).fillna(False).to_numpy(bool)
            df = df[keep]
        if self.split is not None:
            df = df[(df[self.split_column].astype(str) == str(self.split)).to_numpy()]

        if self.label_columns is not None:
            names = list(self.label_columns)
            raw = _parse_raw_labels(df, names, self.csv)
            lab = apply_policy(raw, names, self.policy)
        else:
            raw, names = self._categorical(df, labels)
            lab = raw.copy()

        path = df[self.path_column].astype(str).str.strip()
        if self.patient_column is not None:
            pcol = df[self.patient_column]
            if pcol.isna().any():
                k = int(np.flatnonzero(pcol.isna().to_numpy())[0])
                raise DataError(
                    f"{self.csv}: row {df['source_row'].iloc[k]}, column {self.patient_column!r} (patient id) is blank"
                )
            patients = _as_str_array(pcol.tolist())
        else:
            patients = path.to_numpy(dtype=str)
            warnings.warn(
                f"{self.csv}: no patient_column given, so each image counts as its own patient; "
                "patient splits may leak (pass patient_column=... if the CSV has one)",
                stacklevel=3,
            )
        studies = (
            _as_str_array(df[self.study_column].tolist()) if self.study_column is not None else path.to_numpy(dtype=str)
        )
        return _Table(
            meta=df,
            rel_paths=path.tolist(),
            raw_labels=raw,
            labels=lab,
            label_names=names,
            patient_ids=patients,
            study_ids=studies,
        )

    def _categorical(self, df: pd.DataFrame, labels: str | Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
        col = self.category_column
        assert col is not None
        cells = self._cells(df[col])
        ignore = set(self.ignore)
        seen = sorted({p for c in cells if c for p in c} - ignore)
        if self.positive is not None:
            missing = [p for p in self.positive if p not in seen]
            if missing:
                raise ConfigError(
                    f"positive categories {missing} never occur in column {col!r} of {self.csv} (values: {seen})"
                )
            names = [self.positive_name or "|".join(self.positive)]
            groups = [set(self.positive)]
        else:
            cats = self.categories if self.categories is not None else seen
            missing = [c for c in cats if c not in seen]
            if missing:
                raise ConfigError(f"categories {missing} never occur in column {col!r} of {self.csv} (values: {seen})")
            names = list(cats)
            groups = [{c} for c in cats]
        if labels is not None:
            names_req = [labels] if isinstance(labels, str) else list(labels)
            if names_req != names:
                raise ConfigError(
                    f"labels={names_req} does not match the labels the CSV options give: {names}; "
                    "use categories=/positive= to choose them"
                )
        raw = np.zeros((len(cells), len(names)), dtype=np.float32)
        for i, c in enumerate(cells):
            if c is None or any(p in ignore for p in c):
                raw[i] = np.nan
                continue
            for j, g in enumerate(groups):
                raw[i, j] = 1.0 if g.intersection(c) else 0.0
        return raw, names


# =============================================================================================== folders


def _is_negative_class(name: str) -> bool:
    return bool(_NEGATIVE_CLASS.search(name))


@DATASETS.register("folder")
class FolderDataset(XRayDataset):
    """One sub-folder per class: ``root[/split]/CLASS/**/*.{png,jpg,jpeg,dcm,...}``.

    Two classes give one binary label named after the positive class (``positive_class``; default: the
    only class not named like normal / negative / healthy / no finding, else the second alphabetically);
    more classes give one-hot labels, one per class (``classes=[...]`` picks and orders them; default all
    sub-folders, sorted).  ``patient_regex``: a regex on the file name whose first matching group (the
    first non-empty one) is the patient id, or a preset name (``"kermany"``); a file it does not match is a
    DataError.  Without it each file is its own patient (``patients_known = False``, with a warning).
    ``split`` (e.g. ``"train"``) selects ``root/split``.  ``csv`` is not used; ``meta`` has ``path`` (relative
    to ``root``), ``class`` and ``source_row`` (1-based position in the sorted listing).  Hidden files are
    skipped; other non-image files are counted in a warning.
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split: str | None = None,
        labels: str | Sequence[str] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        load_size: int | None = None,
        cache: ImageCache | str | os.PathLike | None = None,
        on_missing: str = "error",
        classes: Sequence[str] | None = None,
        positive_class: str | None = None,
        patient_regex: str | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
    ) -> None:
        if root is None:
            raise DataError("FolderDataset needs root=<folder with one sub-folder per class>")
        if csv is not None:
            raise ConfigError("FolderDataset takes its labels from the folder names; csv is not used")
        if labels is not None:
            raise ConfigError(
                "FolderDataset label names come from the class folders; use classes= / "
                "positive_class= instead of labels="
            )
        self.classes = list(classes) if classes is not None else None
        self.positive_class = positive_class
        if patient_regex is not None and patient_regex in PATIENT_REGEX_PRESETS:
            patient_regex = PATIENT_REGEX_PRESETS[patient_regex]
        try:
            self.patient_regex = re.compile(patient_regex) if patient_regex is not None else None
        except re.error as e:
            raise ConfigError(
                f"patient_regex {patient_regex!r} is not a valid regex ({e}); presets: {list(PATIENT_REGEX_PRESETS)}"
            ) from None
        self.extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
        self.patients_known = patient_regex is not None
        super().__init__(
            root,
            None,
            split=split,
            labels=None,
            transform=transform,
            load_size=load_size,
            cache=cache,
            on_missing=on_missing,
        )

    def _source_name(self) -> str:
        return str(self._folder)

    def _where(self, i: int) -> str:
        return f"file {self.meta['path'].iloc[i]}"

    def _load(self, labels: str | Sequence[str] | None) -> _Table:
        assert self.root is not None
        folder = self.root / self.split if self.split is not None else self.root
        self._folder = folder
        if not folder.is_dir():
            raise DataError(f"FolderDataset: {folder} is not a folder (split={self.split!r})")
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        classes = self.classes if self.classes is not None else subdirs
        unknown = [c for c in classes if c not in subdirs]
        if unknown:
            raise ConfigError(f"classes {unknown} are not sub-folders of {folder} (found: {subdirs})")
        if len(classes) < 2:
            raise DataError(f"{folder} needs at least two class sub-folders, found {subdirs}")
        if len(classes) == 2:
            if self.positive_class is not None:
                if self.positive_class not in classes:
                    raise ConfigError(f"positive_class {self.positive_class!r} is not one of the classes {classes}")
                pos = self.positive_class
            else:
                non_neg = [c for c in classes if not _is_negative_class(c)]
                pos = non_neg[0] if len(non_neg) == 1 else sorted(classes)[1]
            names = [pos]
        else:
            if self.positive_class is not None:
                raise ConfigError(f"positive_class needs exactly two classes; {folder} gives {classes}")
            names = list(classes)

        rel: list[str] = []
        cls: list[str] = []
        other: list[str] = []
        for c in classes:
            for p in sorted((folder / c).rglob("*")):
                if p.name.startswith(".") or not p.is_file():
                    continue
                if p.suffix.lower() not in self.extensions:
                    other.append(p.relative_to(folder).as_posix())
                    continue
                rel.append(p.relative_to(self.root).as_posix())
                cls.append(c)
        if other:
            warnings.warn(
                f"{folder}: ignored {len(other)} file(s) whose extension is not an image extension "
                f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}; image extensions: "
                f"{sorted(self.extensions)})",
                stacklevel=3,
            )
        if not rel:
            raise DataError(f"no image files under the class folders of {folder}")
        cls_arr = np.asarray(cls)
        if len(classes) == 2:
            raw = (cls_arr == names[0]).astype(np.float32)[:, None]
        else:
            raw = (cls_arr[:, None] == np.asarray(names)[None, :]).astype(np.float32)
        file_names = [Path(r).name for r in rel]
        if self.patient_regex is not None:
            patients = []
            bad = []
            for r, fname in zip(rel, file_names, strict=True):
                m = self.patient_regex.search(fname)
                if m is None:
                    bad.append(r)
                    continue
                groups = [g for g in m.groups() if g]
                patients.append(groups[0] if groups else m.group(0))
            if bad:
                raise DataError(
                    f"{len(bad)} file name(s) under {folder} do not match patient_regex "
                    f"{self.patient_regex.pattern!r}: {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}; "
                    "fix the regex or move the files"
                )
            patient_arr = np.asarray(patients, dtype=str)
        else:
            patient_arr = np.asarray(rel, dtype=str)
            warnings.warn(
                f"{folder}: no patient_regex given, so each file counts as its own patient; patient "
                "splits may leak (pass patient_regex=... or a preset such as 'kermany')",
                stacklevel=3,
            )
        meta = pd.DataFrame({"path": rel, "class": cls, "source_row": np.arange(1, len(rel) + 1)})
        return _Table(
            meta=meta,
            rel_paths=rel,
            raw_labels=raw,
            labels=raw.copy(),
            label_names=names,
            patient_ids=patient_arr,
            study_ids=np.asarray(rel, dtype=str),
            check_files=False,
        )


# =============================================================================================== factory


def create_dataset(
    name: str, root: str | os.PathLike | None = None, csv: str | os.PathLike | None = None, **kwargs: Any
) -> XRayDataset:
    """Build a registered dataset by name (``"chexpert"``, ``"chestxray14"``, ``"mura"``, ``"csv"``,
    ``"folder"``); ``kwargs`` go to its constructor."""
    cls = DATASETS.get(name)
    return cls(root, csv, **kwargs)


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return DATASETS.names()
