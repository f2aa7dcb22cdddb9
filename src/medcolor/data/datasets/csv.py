"""Any CSV label file: an image-path column and either 1/0/-1/blank label columns or a categorical column.

The generic way in for a dataset without its own class (e.g. the COVID-19 chest X-ray collection): label
columns go through :func:`~medcolor.data.datasets.labels.apply_policy` like CheXpert's; a categorical column
gives one binary label or one-hot labels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medcolor.data.datasets.base import DATASETS, Table, XRayDataset
from medcolor.data.datasets.labels import (
    apply_policy,
    as_str_array,
    parse_raw_labels,
    read_label_csv,
    require_columns,
)
from medcolor.errors import ConfigError, DataError

__all__ = ["CsvDataset"]


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
    CHECK_BLANK_LABELS = True

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
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
        **common: Any,
    ) -> None:
        o = self.common_options(common)
        if csv is None:
            raise DataError("CsvDataset needs csv=<label file>")
        if (label_columns is None) == (category_column is None):
            raise ConfigError("CsvDataset needs exactly one of label_columns=[...] or category_column='...'")
        if label_columns is not None and o.labels is not None:
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
        super().__init__(root, csv, options=o)

    def _cells(self, s: pd.Series) -> list[list[str] | None]:
        out: list[list[str] | None] = []
        for v in s.tolist():
            if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "":
                out.append(None)
                continue
            parts = str(v).split(self.separator) if self.separator else [str(v)]
            out.append([p.strip() for p in parts if p.strip()])
        return out

    def _load(self, labels: str | Sequence[str] | None) -> Table:
        assert self.csv is not None
        df = read_label_csv(self.csv)
        require_columns(df, self._columns(), self.csv, "this CSV (as configured)")
        blank_path = df[self.path_column].isna().to_numpy()
        if blank_path.any():
            k = int(np.flatnonzero(blank_path)[0])
            raise DataError(
                f"{self.csv}: row {df['source_row'].iloc[k]}, column {self.path_column!r} is blank "
                f"({int(blank_path.sum())} such rows); every row needs an image path"
            )
        df, sel = self._select(df)
        if self.label_columns is not None:
            names = list(self.label_columns)
            raw = parse_raw_labels(df, names, self.csv)
            lab = apply_policy(raw, names, self.policy)
        else:
            raw, names = self._categorical(df, labels)
            lab = raw.copy()
        path = df[self.path_column].astype(str).str.strip()
        studies = (
            as_str_array(df[self.study_column].tolist()) if self.study_column is not None else path.to_numpy(dtype=str)
        )
        return Table(
            meta=df,
            rel_paths=path.tolist(),
            raw_labels=raw,
            labels=lab,
            label_names=names,
            patient_ids=self._patients(df, path),
            study_ids=studies,
            selection=" and ".join(sel),
        )

    def _columns(self) -> list[str]:
        """The columns the options name: the path, the labels or the category, and the id / filter columns."""
        need = [self.path_column]
        need += self.label_columns or [self.category_column]  # type: ignore[list-item]
        need += [c for c in (self.patient_column, self.study_column) if c is not None]
        if self.views is not None:
            need.append(self.view_column)
        if self.split is not None:
            need.append(self.split_column)
        return need

    def _select(self, df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """The rows of the chosen ``views`` (case-insensitive) and ``split``, and the selection in words."""
        sel = []
        if self.views is not None:
            sel.append(f"{self.view_column} in {self.views}")
            wanted = {str(v).lower() for v in self.views}
            keep = df[self.view_column].astype("string").str.lower().isin(wanted).fillna(False).to_numpy(bool)
            df = df[keep]
        if self.split is not None:
            sel.append(f"{self.split_column} == {self.split!r}")
            df = df[(df[self.split_column].astype(str) == str(self.split)).to_numpy()]
        return df, sel

    def _patients(self, df: pd.DataFrame, path: pd.Series) -> np.ndarray:
        """The ``patient_column`` (never blank), or each image its own patient, with a warning."""
        if self.patient_column is None:
            warnings.warn(
                f"{self.csv}: no patient_column given, so each image counts as its own patient; "
                "patient splits may leak (pass patient_column=... if the CSV has one)",
                stacklevel=4,
            )
            return path.to_numpy(dtype=str)
        pcol = df[self.patient_column]
        if pcol.isna().any():
            k = int(np.flatnonzero(pcol.isna().to_numpy())[0])
            raise DataError(
                f"{self.csv}: row {df['source_row'].iloc[k]}, column {self.patient_column!r} (patient id) is blank"
            )
        return as_str_array(pcol.tolist())

    def _categorical(self, df: pd.DataFrame, labels: str | Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
        """Labels from the category column: the values of each cell against each label's categories, NaN for a
        blank cell or one with an ``ignore`` value."""
        cells = self._cells(df[self.category_column])
        ignore = set(self.ignore)
        names, groups = self._label_categories(sorted({p for c in cells if c for p in c} - ignore))
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

    def _label_categories(self, seen: list[str]) -> tuple[list[str], list[set[str]]]:
        """The label names and each label's categories: one binary label for ``positive``, else one label per
        category (``categories`` or every value ``seen``); a category never seen is a ConfigError."""
        col = self.category_column
        if self.positive is not None:
            missing = [p for p in self.positive if p not in seen]
            if missing:
                raise ConfigError(
                    f"positive categories {missing} never occur in column {col!r} of {self.csv} (values: {seen})"
                )
            return [self.positive_name or "|".join(self.positive)], [set(self.positive)]
        cats = self.categories if self.categories is not None else seen
        missing = [c for c in cats if c not in seen]
        if missing:
            raise ConfigError(f"categories {missing} never occur in column {col!r} of {self.csv} (values: {seen})")
        return list(cats), [{c} for c in cats]
