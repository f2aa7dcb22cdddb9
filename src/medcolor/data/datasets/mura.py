"""MURA v1.1 (Rajpurkar et al. 2017) from its official path and study-label files: one label, ``abnormal``.

Each image gets its study's label; study ids are kept so evaluation can average an image's predictions over
its study (:func:`medcolor.evaluation.study_level`, MURA's study-level AUC).  The paper uses the shoulder
(``XR_SHOULDER``), the default body part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medcolor.data.datasets.base import DATASETS, Table, XRayDataset
from medcolor.data.datasets.labels import read_label_csv, resolve_labels
from medcolor.errors import ConfigError, DataError
from medcolor.paths import user_path

__all__ = ["MURA", "MURA_BODY_PARTS"]

MURA_BODY_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)


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
    Study-level evaluation: :func:`medcolor.evaluation.study_level` and :meth:`study_table`.
    """

    name = "mura"
    SPLITS = ("train", "valid")
    DEFAULT_SPLIT = "train"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        body_parts: str | Sequence[str] | None = ("XR_SHOULDER",),
        studies_csv: str | os.PathLike | None = None,
        **common: Any,
    ) -> None:
        o = self.common_options(common)
        self._check_split(o.split)
        self.body_parts = _normalize_body_parts(body_parts)
        if csv is None:
            if root is None:
                raise DataError("MURA needs root=<folder containing MURA-v1.1/> or csv=<{split}_image_paths.csv>")
            csv = user_path(root) / "MURA-v1.1" / f"{o.split}_image_paths.csv"
        csv = user_path(csv)
        if studies_csv is None:
            if "image_paths" not in csv.name:
                raise ConfigError(f"cannot derive the study-label file from {csv.name}; pass studies_csv=")
            studies_csv = csv.with_name(csv.name.replace("image_paths", "labeled_studies"))
        self.studies_csv = user_path(studies_csv)
        super().__init__(root, csv, options=o)

    def _load(self, labels: str | Sequence[str] | None) -> Table:
        assert self.csv is not None
        names = resolve_labels(labels, ("abnormal",), ("abnormal",), "MURA")
        images = read_label_csv(self.csv, header=False, names=["path"], what="MURA image-paths file")
        label_of = self._study_labels()
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
        return Table(
            meta=meta,
            rel_paths=meta["path"].tolist(),
            raw_labels=raw,
            labels=raw.copy(),
            label_names=names,
            patient_ids=patient.to_numpy(dtype=str),
            study_ids=study.to_numpy(dtype=str),
            selection=f"body_parts {self.body_parts}" if self.body_parts is not None else "",
            root_hint="root must be the folder that contains MURA-v1.1/",
        )

    def _study_labels(self) -> dict[str, float]:
        """The study-label file as ``{study folder: 0.0 | 1.0}`` (the folder without its trailing ``/``); a blank
        cell, a label other than 0/1 or a study listed twice is a DataError naming the row."""
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
        return dict(zip(study_key.tolist(), lab.astype(float).tolist(), strict=True))

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
