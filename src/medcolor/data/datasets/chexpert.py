"""CheXpert (Irvin et al. 2019) from its official label files, with the U-Ones / U-Zeros / U-Ignore policies.

The paper trains on all of CheXpert's radiographs, frontal and lateral (``views="all"``, the default), on its
five observations (:data:`~medcolor.data.datasets.labels.PAPER_LABELS`) with its
per-label uncertainty policy (:data:`~medcolor.data.datasets.labels.PAPER_POLICY`, applied by
:func:`~medcolor.data.datasets.labels.apply_policy`); any of the 14 :data:`CHEXPERT_LABELS` can be asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medcolor.data.datasets.base import DATASETS, Table, XRayDataset
from medcolor.data.datasets.labels import (
    PAPER_LABELS,
    apply_policy,
    parse_raw_labels,
    read_label_csv,
    require_columns,
    resolve_labels,
)
from medcolor.errors import ConfigError, DataError
from medcolor.paths import user_path

__all__ = ["CHEXPERT_LABELS", "CheXpert"]

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
    resolved against it.  ``csv`` defaults to ``root/{split}.csv``.  ``views`` filters the ``Frontal/Lateral``
    column: ``"all"`` (default: frontal and lateral, the paper's image set), ``"frontal"`` or ``"lateral"``.
    In the official ``train.csv`` that is 223,414 images (all), 191,027 (frontal) or 32,387 (lateral); the
    paper's 224,316 radiographs are the whole CheXpert release, train.csv being 223,414 of them, so its "0.1 %
    (224 images)" is ``subset: 224`` (a fraction 0.001 of train.csv gives 223).  ``policy``: see
    :func:`apply_policy` (default: the paper's per-label policy).  Default labels: :data:`PAPER_LABELS`;
    any of :data:`CHEXPERT_LABELS` on request.  Patient id ``patientNNNNN`` and study id
    ``patientNNNNN/studyK`` come from the path.
    """

    name = "chexpert"
    SPLITS = ("train", "valid")
    DEFAULT_SPLIT = "train"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        views: str | Sequence[str] | None = "all",
        policy: str | Mapping[str, str] | None = None,
        **common: Any,
    ) -> None:
        o = self.common_options(common)
        self._check_split(o.split)
        self.views = _normalize_views(views, ("frontal", "lateral"), "CheXpert views")
        self.policy = policy
        if csv is None:
            if root is None:
                raise DataError("CheXpert needs root=<dataset folder> or csv=<train.csv / valid.csv>")
            csv = user_path(root) / f"{o.split}.csv"
        super().__init__(root, csv, options=o)

    def _load(self, labels: str | Sequence[str] | None) -> Table:
        assert self.csv is not None
        names = resolve_labels(labels, CHEXPERT_LABELS, PAPER_LABELS, "CheXpert")
        df = read_label_csv(self.csv, what="CheXpert label file")
        need = ["Path", *names] + (["Frontal/Lateral"] if self.views is not None else [])
        require_columns(df, need, self.csv, "a CheXpert label file")
        raw = parse_raw_labels(df, names, self.csv)
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
        return Table(
            meta=df,
            rel_paths=rel.tolist(),
            raw_labels=raw,
            labels=apply_policy(raw, names, self.policy),
            label_names=names,
            patient_ids=patients.astype(str),
            study_ids=studies.astype(str),
            selection=f"views {self.views}" if self.views is not None else "",
            root_hint="root must be the CheXpert folder that contains train/ and valid/ "
            f"(e.g. {self.root / rel[0] if len(rel) and self.root else '...'} was looked for)",
        )
