"""ChestX-ray14 on the 1000 NIH images with the official label file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcolor.data import ChestXray14, MissingImagesWarning, patient_split
from medcolor.data.splits import check_no_leak
from medcolor.errors import ConfigError, DataError


def test_chestxray14_1000_images(nih_1000, nih_csv: Path) -> None:
    ds = nih_1000
    assert ds.name == "chestxray14" and len(ds) == 1000 and len(set(ds.patient_ids)) == 264
    assert ds.label_names == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion"]
    assert len(ds.skipped) == 112120 - 1000
    # full vectorised comparison with the CSV's Finding Labels
    official = pd.read_csv(nih_csv).set_index("Image Index")
    names = [p.name for p in ds.paths]
    findings = official.loc[names, "Finding Labels"]
    for j, label in enumerate(ds.label_names):
        expected = findings.str.split("|").apply(lambda s, label=label: label in s).to_numpy(np.float32)
        assert np.array_equal(ds.labels[:, j], expected), label
    assert np.array_equal(ds.patient_ids, official.loc[names, "Patient ID"].astype(str).to_numpy())
    # a few rows by hand
    by_name = {p.name: i for i, p in enumerate(ds.paths)}
    assert ds.labels[by_name["00000001_000.png"]].tolist() == [0, 1, 0, 0, 0]  # Cardiomegaly
    row = official.loc["00000001_000.png"]
    assert row["Finding Labels"] == "Cardiomegaly" and row["Patient ID"] == 1
    no_finding = [n for n in names if official.loc[n, "Finding Labels"] == "No Finding"]
    assert len(no_finding) >= 400 and (ds.labels[[by_name[n] for n in no_finding]] == 0).all()
    multi = next(
        n
        for n in names
        if "Effusion" in official.loc[n, "Finding Labels"].split("|") and "|" in official.loc[n, "Finding Labels"]
    )
    assert ds.labels[by_name[multi], 4] == 1
    assert np.isnan(ds.raw_labels).sum() == 0 and (ds.raw_labels == -1).sum() == 0
    item = ds[0]
    assert item["image"].shape == (1, 64, 64) and item["image"].min() >= 0 and item["image"].max() <= 1


def test_chestxray14_partial_folder_needs_explicit_option(nih_csv: Path, shared_path) -> None:
    root = shared_path("data", "nih-chestxray14-1000", "images")
    with pytest.raises(DataError, match='on_missing="present"'):
        ChestXray14(root, nih_csv)
    with pytest.warns(MissingImagesWarning, match=r"holds images for 1,000 of the 112,120 rows"):
        ChestXray14(root, nih_csv, on_missing="present", labels=["Hernia"])


def test_chestxray14_patient_split_no_overlap(nih_1000) -> None:
    parts = patient_split(nih_1000.patient_ids, seed=3)
    check_no_leak(parts, nih_1000.patient_ids)
    sets = {k: set(nih_1000.patient_ids[v]) for k, v in parts.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sum(len(v) for v in parts.values()) == 1000


def test_chestxray14_splits_need_lists(nih_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="split_lists"):
        ChestXray14(csv=nih_csv, split="test")
    (tmp_path / "test_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    ds = ChestXray14(csv=nih_csv, split="test", split_lists=tmp_path)
    assert len(ds) == 2


def test_chestxray14_unknown_finding(tmp_path: Path) -> None:
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text("Image Index,Finding Labels,Patient ID\na.png,Cardiomegaly,1\nb.png,Effusion|Cardiomegally,2\n")
    with pytest.raises(DataError, match=r"row 3, column 'Finding Labels'.*Cardiomegally"):
        ChestXray14(csv=csv)
