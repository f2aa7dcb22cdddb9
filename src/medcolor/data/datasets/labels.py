"""Label files and uncertainty policies, shared by every dataset.

:func:`read_label_csv` reads a (compressed) CSV label file and records each row's line number, which every
error message quotes; :func:`parse_raw_labels` turns 1 / 0 / -1 / blank label columns into *raw labels*
(1 positive, 0 negative, -1 uncertain, NaN blank); :func:`apply_policy` turns raw labels into training labels
with CheXpert's uncertainty policies (Irvin et al. 2019): U-Ones (uncertain -> 1), U-Zeros (-> 0) and
U-Ignore (-> NaN, masked out of loss and AUC), per label; :data:`PAPER_POLICY` is the paper's choice for
its five observations (:data:`PAPER_LABELS`).
"""

from __future__ import annotations

import bz2
import csv as _csv
import difflib
import gzip
import io
import lzma
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError, DataError

__all__ = [
    "PAPER_LABELS",
    "PAPER_POLICY",
    "POLICIES",
    "apply_policy",
    "as_str_array",
    "parse_raw_labels",
    "read_label_csv",
    "require_columns",
    "resolve_labels",
]

#: The five observations of the paper (CheXpert spelling), in the order used for the C = 5 heads.
PAPER_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
#: The paper's uncertainty policy per observation (labels not listed: "zeros").
PAPER_POLICY: dict[str, str] = {
    "Atelectasis": "ones",
    "Cardiomegaly": "zeros",
    "Consolidation": "zeros",
    "Edema": "ones",
    "Pleural Effusion": "ones",
}
#: U-Ones, U-Zeros, U-Ignore.
POLICIES = ("ones", "zeros", "ignore")


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
    the file (header = line 1).  Raises :class:`DataError` naming the file when it is missing, unparsable
    or holds no rows."""
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
    if len(df) == 0:
        raise DataError(f"no rows in {what} {path} (only a header line); add rows or pass the right file")
    df["source_row"] = _record_lines(data, len(df), header)
    return df


def require_columns(df: pd.DataFrame, columns: Iterable[str], file: Path | str, what: str) -> None:
    """A DataError naming the file, the missing columns and close matches when ``df`` lacks any of ``columns``."""
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


def parse_raw_labels(df: pd.DataFrame, columns: Sequence[str], file: Path | str) -> np.ndarray:
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


def resolve_labels(
    requested: str | Sequence[str] | None, valid: Sequence[str], default: Sequence[str], dataset: str
) -> list[str]:
    """The label names asked for (``None``: ``default``), each checked against ``valid`` (with a did-you-mean)."""
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


def as_str_array(values: Iterable[Any]) -> np.ndarray:
    """Ids (patient, study) as a numpy str array."""
    return np.asarray([str(v) for v in values], dtype=str)
