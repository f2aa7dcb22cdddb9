"""ChestX-ray14 (Wang et al. 2017, NIH) from the official ``Data_Entry_2017*.csv``: 14 findings, no uncertain labels.

Labels keep the NIH spelling (:data:`NIH_LABELS`); the default is the paper's five findings
(:data:`NIH_PAPER_LABELS`, index-aligned with CheXpert's ``PAPER_LABELS``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from medcolor.data.datasets.base import DATASETS, Table, XRayDataset
from medcolor.data.datasets.labels import as_str_array, read_label_csv, require_columns, resolve_labels
from medcolor.errors import ConfigError, DataError
from medcolor.paths import user_path

__all__ = ["NIH_LABELS", "NIH_PAPER_LABELS", "ChestXray14"]

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
    DEFAULT_SPLIT = "all"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        csv: str | os.PathLike | None = None,
        *,
        split_lists: str | os.PathLike | None = None,
        **common: Any,
    ) -> None:
        o = self.common_options(common)
        self._check_split(o.split)
        if o.split != "all" and split_lists is None:
            raise ConfigError(
                f"ChestXray14 split={o.split!r} needs split_lists=<folder with train_val_list.txt "
                "and test_list.txt>; or use split='all' and medcolor.data.patient_split"
            )
        self.split_lists = user_path(split_lists) if split_lists is not None else None
        if csv is None:
            if root is None:
                raise DataError("ChestXray14 needs root=<image folder> or csv=<Data_Entry_2017*.csv>")
            r = user_path(root)
            candidates = [d / (n + gz) for d in (r, r.parent) for n in _NIH_CSV_NAMES for gz in ("", ".gz")]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise DataError(
                    f"no ChestX-ray14 label file ({', '.join(_NIH_CSV_NAMES)}) in {r} or {r.parent}; "
                    "pass csv=<path to Data_Entry_2017*.csv>"
                )
            csv = found[0]
        super().__init__(root, csv, options=o)

    def _load(self, labels: str | Sequence[str] | None) -> Table:
        assert self.csv is not None
        names = resolve_labels(labels, NIH_LABELS, NIH_PAPER_LABELS, "ChestX-ray14")
        df = read_label_csv(self.csv, what="ChestX-ray14 label file")
        require_columns(df, ["Image Index", "Finding Labels", "Patient ID"], self.csv, "a ChestX-ray14 label file")
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
        return Table(
            meta=df,
            rel_paths=index.tolist(),
            raw_labels=raw,
            labels=raw.copy(),
            label_names=names,
            patient_ids=as_str_array(df["Patient ID"].tolist()),
            study_ids=index.to_numpy(dtype=str),
            selection=f"split {self.split!r} ({self.split_lists})" if self.split != "all" else "",
            root_hint="root must be the folder that holds the PNG files themselves (flat, named like 00000001_000.png)",
        )
