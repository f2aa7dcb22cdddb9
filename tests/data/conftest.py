"""Fixtures for the data-layer tests: the real data under ``shared_path("data")`` (skipped when absent),
datasets parsed once per session, and writers for small image files and label files in tmp_path."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcolor.data.datasets import CHEXPERT_LABELS


def write_gray_png(path: Path, value: int = 100, size: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def gray_png() -> Callable[..., Path]:
    """``gray_png(path, value=100, size=(24, 32))``: write a uniform 8-bit gray PNG (creating folders)."""
    return write_gray_png


@pytest.fixture(scope="session")
def tiny_chexpert() -> Callable[..., tuple[Path, Path]]:
    """``tiny_chexpert(tmp_path, rows=None)``: a 4-row CheXpert-style ``train.csv`` with its images, under
    ``tmp_path/CheXpert-v1.0-small``; returns (root, csv)."""

    def make(tmp_path: Path, rows: list[str] | None = None) -> tuple[Path, Path]:
        root = tmp_path / "CheXpert-v1.0-small"
        header = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
        blank = "," * 13
        rows = rows or [
            f"CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0{blank}",
            f"CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Male,50,Frontal,PA,{blank}-1.0",
            f"CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Male,50,Frontal,PA,{blank}0.0",
            f"CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg,Male,50,Frontal,PA,{blank}1.0",
        ]
        root.mkdir(parents=True, exist_ok=True)
        (root / "train.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
        for r in rows:
            rel = r.split(",")[0].split("/", 1)[1]
            write_gray_png(root / rel, value=50)  # PNG content in a .jpg name: decided by content
        return root, root / "train.csv"

    return make


@pytest.fixture(scope="session")
def covid_options() -> dict:
    """How the tests read the COVID collection: COVID-19 anywhere in the comma-separated ``finding``
    -> 1, ``todo`` -> NaN (unknown), anything else -> 0; patients from ``patientid``; the 5 rows that repeat
    an image (same finding, another patient id) dropped."""
    return dict(COVID_OPTIONS)


@pytest.fixture(scope="session")
def chexpert_csv(shared_path) -> Path:
    return shared_path("data", "labels", "chexpert", "train.csv.gz")


@pytest.fixture(scope="session")
def chexpert_all(chexpert_csv: Path):
    """All 223,414 rows of the official CheXpert train.csv, labels only (root=None), paper labels."""
    from medcolor.data import CheXpert

    return CheXpert(csv=chexpert_csv, views="all")


@pytest.fixture(scope="session")
def nih_csv(shared_path) -> Path:
    return shared_path("data", "labels", "nih", "Data_Entry_2017_v2020.csv.gz")


@pytest.fixture(scope="session")
def nih_1000(nih_csv: Path, shared_path):
    """The 1000 ChestX-ray14 images present in nih-chestxray14-1000/images."""
    from medcolor.data import ChestXray14

    root = shared_path("data", "nih-chestxray14-1000", "images")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ChestXray14(root, nih_csv, on_missing="present")


COVID_OPTIONS = {
    "path_column": "filename",
    "category_column": "finding",
    "positive": ["COVID-19"],
    "separator": ",",
    "ignore": ["todo"],
    "patient_column": "patientid",
    "on_duplicate": "drop",
}


@pytest.fixture(scope="session")
def covid_paths(shared_path) -> tuple[Path, Path]:
    return shared_path("data", "covid-chestxray", "images"), shared_path("data", "covid-chestxray", "metadata.csv")


@pytest.fixture(scope="session")
def covid(covid_paths: tuple[Path, Path]):
    from medcolor.data import CsvDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DuplicateRowsWarning: tested in test_csv
        return CsvDataset(covid_paths[0], covid_paths[1], **COVID_OPTIONS)


@pytest.fixture(scope="session")
def kermany(shared_path):
    from medcolor.data import FolderDataset

    return FolderDataset(shared_path("data", "kermany-pneumonia-224"), split="train", patient_regex="kermany")
