"""Fixtures for the data-layer tests: the real data in ``<repo>/../shared/data`` (skipped when absent),
datasets parsed once per session, and writers for small synthetic image files."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

DATA_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def shared(*parts: str) -> Path:
    """A path under the shared data folder, or skip the test with the reason."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (expected <repo>/../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_path() -> Callable[..., Path]:
    """``shared_path("labels", "mura")``: a path under the shared data folder, or skip with the reason."""
    return shared


@pytest.fixture(scope="session")
def covid_options() -> dict:
    """How the tests read the COVID collection: COVID-19 anywhere in the comma-separated ``finding``
    -> 1, ``todo`` -> NaN (unknown), anything else -> 0; patients from ``patientid``."""
    return dict(COVID_OPTIONS)


@pytest.fixture(scope="session")
def chexpert_csv() -> Path:
    return shared("labels", "chexpert", "train.csv.gz")


@pytest.fixture(scope="session")
def chexpert_all(chexpert_csv: Path):
    """All 223,414 rows of the official CheXpert train.csv, labels only (root=None), paper labels."""
    from medcolor.data import CheXpert

    return CheXpert(csv=chexpert_csv, views="all")


@pytest.fixture(scope="session")
def nih_csv() -> Path:
    return shared("labels", "nih", "Data_Entry_2017_v2020.csv.gz")


@pytest.fixture(scope="session")
def nih_1000(nih_csv: Path):
    """The 1000 ChestX-ray14 images present in nih-chestxray14-1000/images."""
    from medcolor.data import ChestXray14

    root = shared("nih-chestxray14-1000", "images")
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
}


@pytest.fixture(scope="session")
def covid_paths() -> tuple[Path, Path]:
    return shared("covid-chestxray", "images"), shared("covid-chestxray", "metadata.csv")


@pytest.fixture(scope="session")
def covid(covid_paths: tuple[Path, Path]):
    from medcolor.data import CsvDataset

    return CsvDataset(covid_paths[0], covid_paths[1], **COVID_OPTIONS)


@pytest.fixture(scope="session")
def kermany():
    from medcolor.data import FolderDataset

    return FolderDataset(shared("kermany-pneumonia-224"), split="train", patient_regex="kermany")
