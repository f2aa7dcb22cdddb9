"""Image folders with one sub-folder per class (e.g. Kermany et al.'s NORMAL / PNEUMONIA): labels from the names.

Which files are images follows :func:`medcolor.data.readers.find_images` (the one list
:data:`~medcolor.data.readers.IMAGE_EXTENSIONS`, hidden files skipped); patient ids come from the file names
(``patient_regex``, with a preset for Kermany's naming).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.data.datasets.base import DATASETS, Table, XRayDataset
from medcolor.data.readers import IMAGE_EXTENSIONS, has_image_extension, list_files
from medcolor.errors import ConfigError, DataError

__all__ = ["PATIENT_REGEX_PRESETS", "FolderDataset"]

_NEGATIVE_CLASS = re.compile(r"normal|negative|healthy|no[ _-]?finding|benign|control", re.IGNORECASE)
#: Patient-id presets for :class:`FolderDataset` (``patient_regex=NAME``).
PATIENT_REGEX_PRESETS: dict[str, str] = {
    # Kermany et al.: personN_{bacteria|virus}_K.jpeg -> personN;
    # [NORMAL2-]IM-XXXX-YYYY.jpeg -> [NORMAL2-]IM-XXXX
    "kermany": r"^(?:(person\d+)_(?:bacteria|virus)_\d+(?:_\d+)*|((?:NORMAL2-)?IM-\d+(?:-\d+)*)-\d+)\.jpe?g$",
}


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
        classes: Sequence[str] | None = None,
        positive_class: str | None = None,
        patient_regex: str | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        **common: Any,
    ) -> None:
        o = self.common_options(common)
        if root is None:
            raise DataError("FolderDataset needs root=<folder with one sub-folder per class>")
        if csv is not None:
            raise ConfigError("FolderDataset takes its labels from the folder names; csv is not used")
        if o.labels is not None:
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
        super().__init__(root, None, options=o)

    def _source_name(self) -> str:
        return str(self._folder)

    def _where(self, i: int) -> str:
        return f"file {self.meta['path'].iloc[i]}"

    def _load(self, labels: str | Sequence[str] | None) -> Table:
        assert self.root is not None
        folder = self.root / self.split if self.split is not None else self.root
        self._folder = folder
        if not folder.is_dir():
            raise DataError(f"FolderDataset: {folder} is not a folder (split={self.split!r})")
        classes, names = self._classes(folder)
        rel, cls = self._files(folder, classes)
        cls_arr = np.asarray(cls)
        if len(classes) == 2:
            raw = (cls_arr == names[0]).astype(np.float32)[:, None]
        else:
            raw = (cls_arr[:, None] == np.asarray(names)[None, :]).astype(np.float32)
        meta = pd.DataFrame({"path": rel, "class": cls, "source_row": np.arange(1, len(rel) + 1)})
        return Table(
            meta=meta,
            rel_paths=rel,
            raw_labels=raw,
            labels=raw.copy(),
            label_names=names,
            patient_ids=self._patients(folder, rel),
            study_ids=np.asarray(rel, dtype=str),
            check_files=False,
        )

    def _classes(self, folder: Path) -> tuple[list[str], list[str]]:
        """The class folders used, and the label names they give (one binary label for two classes)."""
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        classes = self.classes if self.classes is not None else subdirs
        unknown = [c for c in classes if c not in subdirs]
        if unknown:
            raise ConfigError(f"classes {unknown} are not sub-folders of {folder} (found: {subdirs})")
        if len(classes) < 2:
            raise DataError(f"{folder} needs at least two class sub-folders, found {subdirs}")
        if len(classes) > 2:
            if self.positive_class is not None:
                raise ConfigError(f"positive_class needs exactly two classes; {folder} gives {classes}")
            return list(classes), list(classes)
        return list(classes), [self._positive(classes)]

    def _positive(self, classes: Sequence[str]) -> str:
        """The positive class of two: ``positive_class``, else the only one not named like a negative class,
        else the second alphabetically."""
        if self.positive_class is not None:
            if self.positive_class not in classes:
                raise ConfigError(f"positive_class {self.positive_class!r} is not one of the classes {classes}")
            return self.positive_class
        non_neg = [c for c in classes if not _is_negative_class(c)]
        return non_neg[0] if len(non_neg) == 1 else sorted(classes)[1]

    def _files(self, folder: Path, classes: list[str]) -> tuple[list[str], list[str]]:
        """The image files of each class folder (paths relative to root) and their classes; a class folder
        without images is a DataError naming it (it would be a label with no positives: raw numpy warnings,
        AUC n/a)."""
        assert self.root is not None
        rel: list[str] = []
        cls: list[str] = []
        other: list[str] = []
        empty: list[str] = []
        for c in classes:
            n = len(rel)
            for p in list_files(folder / c):
                if not has_image_extension(p, self.extensions):
                    other.append(p.relative_to(folder).as_posix())
                    continue
                rel.append(p.relative_to(self.root).as_posix())
                cls.append(c)
            if len(rel) == n:
                empty.append(c)
        if other:
            warnings.warn(
                f"{folder}: ignored {len(other)} file(s) whose extension is not an image extension "
                f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}; image extensions: "
                f"{sorted(self.extensions)})",
                stacklevel=4,
            )
        if not rel:
            raise DataError(f"no image files under the class folders of {folder}")
        if empty:
            kept = [c for c in classes if c not in empty]
            raise DataError(
                f"the class folder(s) {', '.join(str(folder / c) for c in empty)} hold no image files: a class "
                "without images cannot be learned or evaluated; add its images, remove the folder, or pick the "
                f"classes with the option classes=[{', '.join(kept)}]"
            )
        return rel, cls

    def _patients(self, folder: Path, rel: list[str]) -> np.ndarray:
        """The patient id of each file from ``patient_regex``; without it each file is its own patient."""
        if self.patient_regex is None:
            warnings.warn(
                f"{folder}: no patient_regex given, so each file counts as its own patient; patient "
                "splits may leak (pass patient_regex=... or a preset such as 'kermany')",
                stacklevel=4,
            )
            return np.asarray(rel, dtype=str)
        patients = []
        bad = []
        for r in rel:
            m = self.patient_regex.search(Path(r).name)
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
        return np.asarray(patients, dtype=str)
