"""The row checks every dataset goes through at construction (:class:`~medcolor.data.datasets.base.XRayDataset`).

In this order, each reporting *all* offending rows of the label file at once (the count, the first rows
with their paths, and how to fix them):

1. :func:`paths_under_root`: every image path, joined to ``root`` and normalised, stays inside ``root``
   (``../../etc/passwd`` or an absolute path elsewhere is an error whatever ``on_missing`` says).  The check
   is lexical: symbolic links inside ``root`` are followed when reading, as before, and an absolute path
   written through a link to ``root`` counts as inside.
2. :func:`duplicate_rows`: an image listed twice with different labels is always an error; listed twice
   with the same labels it is an error too, unless ``on_duplicate="drop"`` (keep the first row, warn, and
   record the others in ``dataset.skipped``).
3. :func:`missing_rows`: images that do not exist, handled per ``on_missing``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medcolor.errors import DataError

__all__ = [
    "ON_DUPLICATE",
    "ON_MISSING",
    "DuplicateRowsWarning",
    "MissingImagesWarning",
    "blank_labels",
    "duplicate_rows",
    "empty_skipped",
    "existing",
    "missing_rows",
    "paths_under_root",
]

ON_MISSING = ("error", "skip", "present")
ON_DUPLICATE = ("error", "drop")
_SHOW = 5  # rows quoted with their paths in a message
_ROWS = 30  # row numbers listed in a message (all of them are in the exception's ``rows``)


class MissingImagesWarning(UserWarning):
    """Rows were dropped because their image file is missing (``on_missing="skip"`` / ``"present"``)."""


class DuplicateRowsWarning(UserWarning):
    """Rows that repeat an image with the same labels were dropped (``on_duplicate="drop"``)."""


def _quote(items: Sequence[str], rows: Sequence[int]) -> str:
    """The first items (``"row 7: 'a.png'"``), then the row numbers of all when there are more."""
    text = "; ".join(items[:_SHOW])
    if len(items) > _SHOW:
        listed = ", ".join(str(r) for r in rows[:_ROWS])
        text += f"; ... rows {listed}" + (f", ... ({len(rows) - _ROWS} more)" if len(rows) > _ROWS else "")
    return text


def _error(message: str, rows: Sequence[int]) -> DataError:
    err = DataError(message)
    err.rows = [int(r) for r in rows]  # type: ignore[attr-defined]  # every offending row, for programs
    return err


def empty_skipped() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_row": pd.Series([], dtype=np.int64),
            "path": pd.Series([], dtype=object),
            "reason": pd.Series([], dtype=object),
        }
    )


def paths_under_root(rel: Sequence[str], root: Path, rows: np.ndarray, src: str) -> list[str]:
    """``rel`` joined to ``root`` (absolute, normalised); a DataError listing every row whose path leaves
    ``root`` (``..``, an absolute path elsewhere, the root itself) or is not a valid path (NUL byte)."""
    root_str = os.fspath(root)
    prefix = root_str if root_str.endswith(os.sep) else root_str + os.sep
    norm = os.path.normpath
    join = os.path.join
    paths = [norm(join(root_str, r)) for r in rel]
    bad = [k for k, (p, r) in enumerate(zip(paths, rel, strict=True)) if not p.startswith(prefix) or "\0" in r]
    # an absolute path written through a symbolic link to root (root itself is resolved) is inside
    bad = [k for k in bad if "\0" in rel[k] or not os.path.realpath(paths[k]).startswith(prefix)]
    if bad:
        first = _quote([f"row {rows[k]}: {rel[k]!r}" for k in bad], rows[bad].tolist())
        raise _error(
            f"{len(bad)} of {len(rel)} rows of {src} name an image outside the dataset root {root} ({first}). "
            "Image paths must "
            "be relative to root (or absolute inside it) and must not leave it with '..': fix those rows, or "
            "pass as root the folder that holds every image.",
            rows[bad].tolist(),
        )
    return paths


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def duplicate_rows(
    keys: Sequence[str], raw_labels: np.ndarray, label_names: Sequence[str], rows: np.ndarray, src: str, policy: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows that list the same image (``keys``: normalised paths) more than once.

    Different labels for one image: always a DataError naming the rows and labels.  The same labels: a
    DataError listing the repeats, or with ``policy="drop"`` the first row is kept and the others are
    returned as ``skipped`` (with a :class:`DuplicateRowsWarning`).  Returns ``(keep mask, skipped)``."""
    keep = np.ones(len(keys), dtype=bool)
    dup = pd.Series(keys, dtype=object).duplicated(keep=False).to_numpy()
    if not dup.any():
        return keep, empty_skipped()
    groups: dict[str, list[int]] = {}
    for k in np.flatnonzero(dup).tolist():
        groups.setdefault(keys[k], []).append(k)
    repeats = _repeats_or_conflicts(groups, keys, raw_labels, label_names, rows, src)
    rep_rows = [int(rows[k]) for k, _ in repeats]
    first = _quote([f"row {rows[k]} repeats row {rows[f]}: {keys[k]!r}" for k, f in repeats], rep_rows)
    if policy != "drop":
        raise _error(
            f"{len(repeats)} row(s) of {src} repeat an image listed earlier with the same labels ({first}). "
            "Remove them, or pass on_duplicate='drop' (command line: --option "
            "on_duplicate=drop) to keep the first row of each image.",
            rep_rows,
        )
    idx = [k for k, _ in repeats]
    keep[idx] = False
    skipped = pd.DataFrame(
        {
            "source_row": rows[idx].astype(np.int64),
            "path": [keys[k] for k in idx],
            "reason": [f"duplicate of row {rows[f]}" for _, f in repeats],
        }
    )
    warnings.warn(
        f"{src}: dropped {len(repeats)} row(s) that repeat an image with the same labels ({first}); "
        "dataset.skipped lists them",
        DuplicateRowsWarning,
        stacklevel=5,
    )
    return keep, skipped


def _repeats_or_conflicts(
    groups: dict[str, list[int]],
    keys: Sequence[str],
    raw_labels: np.ndarray,
    label_names: Sequence[str],
    rows: np.ndarray,
    src: str,
) -> list[tuple[int, int]]:
    """The repeats (index of the repeat, index of the first row) of ``groups`` of rows listing one image,
    sorted; a DataError naming the rows and a label where the rows of an image have different labels."""
    conflicts: list[str] = []
    conflict_rows: list[int] = []
    repeats: list[tuple[int, int]] = []
    for ks in groups.values():
        first = ks[0]
        if any(not _same(raw_labels[k], raw_labels[first]) for k in ks[1:]):
            j = next(j for j in range(raw_labels.shape[1]) if len({str(raw_labels[k, j]) for k in ks}) > 1)
            values = " vs ".join(f"{raw_labels[k, j]:g}" for k in ks)
            conflicts.append(
                f"rows {', '.join(str(rows[k]) for k in ks)}: {keys[first]!r}, {label_names[j]!r} = {values}"
            )
            conflict_rows += [int(rows[k]) for k in ks]
        else:
            repeats += [(k, first) for k in ks[1:]]
    if conflicts:
        raise _error(
            f"{len(conflicts)} image(s) are listed in {src} more than once with different labels "
            f"({_quote(conflicts, sorted(conflict_rows))}). An image has one set "
            "of labels: fix or remove the conflicting rows.",
            sorted(conflict_rows),
        )
    return sorted(repeats)


def existing(paths: Sequence[str]) -> np.ndarray:
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
            except (OSError, ValueError):
                names = None
            listing[parent] = names
        out[k] = names is not None and base in names
    return out


def missing_rows(
    paths: Sequence[str],
    rows: np.ndarray,
    present: np.ndarray,
    *,
    name: str,
    src: str,
    root: Path,
    hint: str,
    policy: str,
) -> pd.DataFrame:
    """The rows whose image is missing: a DataError (``policy="error"``), or the ``skipped`` table and a
    :class:`MissingImagesWarning` (``"skip"`` / ``"present"``)."""
    missing = np.flatnonzero(~present)
    n, total = len(missing), len(paths)
    skipped = pd.DataFrame(
        {
            "source_row": rows[missing].astype(np.int64),
            "path": [paths[i] for i in missing],
            "reason": "image file not found",
        }
    )
    first = _quote([f"row {rows[i]}: {paths[i]}" for i in missing], rows[missing].tolist())
    if policy == "error" or n == total:
        if n == total:
            fix = f"None of the images were found: {hint or 'check root'}."
        else:
            fix = (
                'Pass on_missing="skip" to drop those rows (listed in dataset.skipped), or on_missing="present" '
                "when the folder holds only part of the dataset."
            )
        raise _error(
            f"{n} of {total} images listed in {src} are missing under root {root} ({first}). {fix}",
            rows[missing].tolist(),
        )
    if policy == "skip":
        msg = (
            f"{name}: skipped {n} of {total} rows of {src} whose image is missing ({first}); "
            "dataset.skipped lists them all"
        )
    else:
        msg = (
            f"{name}: root {root} holds images for {total - n:,} of the {total:,} rows of {src}; "
            f"using those, dropped {n:,} rows (dataset.skipped lists them)"
        )
    warnings.warn(msg, MissingImagesWarning, stacklevel=5)
    return skipped


def blank_labels(
    name: str, source: str, split: str | None, label_names: Sequence[str], raw: np.ndarray, labels: np.ndarray
) -> None:
    """A label that no row gives a value (a blank column, or one that the uncertainty policy left blank
    everywhere) cannot be learned or evaluated: a :class:`DataError` naming it and the file, instead of a
    run that trains on nothing for it and fills the logs with numpy's "All-NaN slice" warnings."""
    if not len(labels):
        return
    known = ~(np.isnan(raw).all(axis=0) | np.isnan(labels).all(axis=0))
    blank = [n for n, k in zip(label_names, known, strict=True) if not k]
    if blank:
        raise DataError(
            f"{name}: the label column(s) {', '.join(repr(n) for n in blank)} of {source} "
            f"have no value in any of its {len(labels)} rows"
            + (f" (split {split!r})" if split else "")
            + "; fill them, or leave them out of the labels (label_columns / labels=[...])"
        )
