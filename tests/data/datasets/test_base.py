"""The dataset base class and registry (medcolor.data.datasets.base): missing images, unreadable images,
the registry."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from medcolor.data import MURA, CheXpert, CsvDataset, MissingImagesWarning, create_dataset, list_datasets
from medcolor.errors import ConfigError, DataError, ImageReadError, UnknownNameError


def test_missing_image_error_names_rows_and_fix(tmp_path: Path, tiny_chexpert) -> None:
    root, csv = tiny_chexpert(tmp_path)
    (root / "train/patient00002/study2/view1_frontal.jpg").unlink()
    with pytest.raises(DataError) as e:
        CheXpert(root)
    msg = str(e.value)
    assert "1 of 4 images" in msg and "row 4" in msg and "patient00002/study2/view1_frontal.jpg" in msg
    assert 'on_missing="skip"' in msg and str(csv) in msg


def test_on_missing_skip_reports_every_row(tmp_path: Path, tiny_chexpert) -> None:
    root, _ = tiny_chexpert(tmp_path)
    for rel in ("train/patient00002/study2/view1_frontal.jpg", "train/patient00003/study1/view1_frontal.jpg"):
        (root / rel).unlink()
    with pytest.warns(MissingImagesWarning, match=r"skipped 2 of 4 rows.*dataset\.skipped"):
        ds = CheXpert(root, on_missing="skip")
    assert len(ds) == 2
    assert list(ds.skipped.columns) == ["source_row", "path", "reason"]
    assert ds.skipped["source_row"].tolist() == [4, 5]
    assert ds.skipped["path"].str.endswith("view1_frontal.jpg").all()
    assert ds.meta["source_row"].tolist() == [2, 3]


def test_all_images_missing_hints_at_root(tmp_path: Path, tiny_chexpert) -> None:
    _, csv = tiny_chexpert(tmp_path)
    with pytest.raises(DataError, match="contains train/ and valid/"):
        CheXpert(tmp_path, csv)


def test_corrupt_image_in_dataset_names_file_and_row(tmp_path: Path, gray_png) -> None:
    gray_png(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    csv = tmp_path / "l.csv"
    csv.write_text("path,y,pid\nok.png,1,p1\nbad.png,0,p2\n")
    ds = CsvDataset(tmp_path, csv, label_columns=["y"], patient_column="pid")
    assert ds[0]["image"].shape == (1, 24, 32)
    with pytest.raises(ImageReadError, match=r"bad\.png.*row 3 of"):
        ds[1]


def test_registry(chexpert_csv: Path, shared_path) -> None:
    assert list_datasets() == ["chexpert", "chestxray14", "mura", "csv", "folder", "synthetic"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = create_dataset("MURA", csv=shared_path("data", "labels", "mura", "valid_image_paths.csv"), split="valid")
    assert isinstance(ds, MURA) and len(ds) == 563
    with pytest.raises(UnknownNameError, match="Did you mean 'chexpert'"):
        create_dataset("chexpret")
    with pytest.raises(ConfigError, match="on_missing"):
        CheXpert(csv=chexpert_csv, on_missing="ignore")
