"""The contract every registered dataset keeps (medcolor.data.datasets.base), checked on each name that
``list_datasets()`` returns, built through ``create_dataset`` on small real data from the shared folder:

* chestxray14: the 1000 NIH images with the official label file (``on_missing="present"``);
* chexpert: the first rows of the official train.csv (real paths, ids and 1 / 0 / -1 / blank labels) with
  placeholder images for all but two of them (the shared folder has no CheXpert images; ``on_missing="present"``);
* mura: the official valid label files with placeholder images for four normal and four abnormal shoulder
  images (``on_missing="present"``);
* csv: the COVID-19 collection (real images of mixed sizes and colour modes);
* folder: the Kermany training folder;
* synthetic: a dozen generated images.

A newly registered dataset fails here until it gets an example in ``EXAMPLES``.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from medcolor.data.datasets import XRayDataset, create_dataset, list_datasets

N_CHEXPERT_ROWS = 24


def _chestxray14(shared_path: Callable[..., Path], tmp: Path, **_: Any) -> XRayDataset:
    images = shared_path("data", "nih-chestxray14-1000", "images")
    csv = shared_path("data", "labels", "nih", "Data_Entry_2017_v2020.csv.gz")
    return create_dataset("chestxray14", images, csv, on_missing="present")


def _chexpert(shared_path: Callable[..., Path], tmp: Path, write_png: Callable[..., Path], **_: Any) -> XRayDataset:
    official = shared_path("data", "labels", "chexpert", "train.csv.gz")
    with gzip.open(official, "rt", newline="") as f:
        lines = [f.readline() for _ in range(N_CHEXPERT_ROWS + 1)]
    root = tmp / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("".join(lines))
    for k, line in enumerate(lines[1:-2]):
        write_png(root / line.split(",", 1)[0].split("/", 1)[1], 20 + 9 * k)
    return create_dataset("chexpert", root, views="all", on_missing="present")


def _mura(shared_path: Callable[..., Path], tmp: Path, write_png: Callable[..., Path], **_: Any) -> XRayDataset:
    csv = shared_path("data", "labels", "mura", "valid_image_paths.csv")
    shoulder = [ln.strip() for ln in csv.read_text().splitlines() if "/XR_SHOULDER/" in ln]
    picked = [r for r in shoulder if "_positive/" in r][:4] + [r for r in shoulder if "_negative/" in r][:4]
    for k, rel in enumerate(picked):
        write_png(tmp / rel, 30 + 20 * k)
    return create_dataset("mura", tmp, csv, split="valid", on_missing="present")


def _csv(shared_path: Callable[..., Path], tmp: Path, covid_options: dict, **_: Any) -> XRayDataset:
    folder = shared_path("data", "covid-chestxray")
    return create_dataset("csv", folder / "images", folder / "metadata.csv", **covid_options)


def _folder(shared_path: Callable[..., Path], tmp: Path, **_: Any) -> XRayDataset:
    kermany = shared_path("data", "kermany-pneumonia-224")
    return create_dataset("folder", kermany, split="train", patient_regex="kermany")


def _synthetic(shared_path: Callable[..., Path], tmp: Path, **_: Any) -> XRayDataset:
    return create_dataset("synthetic", tmp / "synthetic", n=12, image_size=32, seed=1)


EXAMPLES: dict[str, Callable[..., XRayDataset]] = {
    "chestxray14": _chestxray14,
    "chexpert": _chexpert,
    "mura": _mura,
    "csv": _csv,
    "folder": _folder,
    "synthetic": _synthetic,
}


@pytest.fixture(scope="module", params=list_datasets())
def dataset(request, shared_path, tmp_path_factory, gray_png, covid_options) -> XRayDataset:
    name = request.param
    if name not in EXAMPLES:
        pytest.fail(f"dataset {name!r} is registered but has no example in {__name__}.EXAMPLES; add one")
    tmp = tmp_path_factory.mktemp(f"contract-{name}")

    def write_png(path: Path, value: int) -> Path:
        return gray_png(path, value, (40, 48))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MissingImagesWarning of on_missing="present": tested elsewhere
        ds = EXAMPLES[name](shared_path, tmp, write_png=write_png, covid_options=covid_options)
    assert ds.name == name, f"create_dataset({name!r}) built a dataset named {ds.name!r}"
    return ds


def _str_ids(ids: np.ndarray, n: int, what: str) -> None:
    assert isinstance(ids, np.ndarray) and ids.shape == (n,) and ids.dtype.kind == "U", what
    assert all(isinstance(v, str) and v.strip() for v in ids.tolist()), f"{what}: every id a non-empty string"


def test_public_fields(dataset: XRayDataset) -> None:
    ds = dataset
    n = len(ds)
    assert isinstance(ds, XRayDataset) and n > 0
    names = ds.label_names
    assert isinstance(names, list) and names and all(isinstance(s, str) and s for s in names)
    assert len(set(names)) == len(names)
    n_labels = len(names)
    for field in ("labels", "raw_labels"):
        arr = getattr(ds, field)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (n, n_labels), field
    given = ~np.isnan(ds.labels)
    assert np.isin(ds.labels[given], (0.0, 1.0)).all(), "labels: 1, 0 or NaN"
    raw_given = ~np.isnan(ds.raw_labels)
    assert np.isin(ds.raw_labels[raw_given], (1.0, 0.0, -1.0)).all(), "raw_labels: 1, 0, -1 or NaN"
    certain = np.isin(ds.raw_labels, (0.0, 1.0))
    assert np.array_equal(ds.labels[certain], ds.raw_labels[certain]), "a policy changes only -1 and blank"
    _str_ids(ds.patient_ids, n, "patient_ids")
    _str_ids(ds.study_ids, n, "study_ids")
    assert isinstance(ds.patients_known, bool)
    assert isinstance(ds.paths, list) and len(ds.paths) == n and all(isinstance(p, Path) for p in ds.paths)
    assert isinstance(ds.root, Path) and all(p.is_absolute() and p.is_file() for p in ds.paths[:50])
    assert ds.csv is None or isinstance(ds.csv, Path)
    assert isinstance(ds.meta, pd.DataFrame) and len(ds.meta) == n
    assert pd.api.types.is_integer_dtype(ds.meta["source_row"]) and (ds.meta["source_row"] >= 1).all()
    assert isinstance(ds.skipped, pd.DataFrame) and list(ds.skipped.columns) == ["source_row", "path", "reason"]


def test_getitem(dataset: XRayDataset) -> None:
    ds = dataset
    n, n_labels = len(ds), len(ds.label_names)
    for i in (0, n - 1, -1):
        item = ds[i]
        assert set(item) == {"image", "target", "index"}
        image, target = item["image"], item["target"]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
        assert image.ndim == 3 and image.shape[0] == 1 and min(image.shape[1:]) > 1
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert isinstance(target, torch.Tensor) and target.dtype == torch.float32 and target.shape == (n_labels,)
        index = i % n
        assert item["index"] == index
        np.testing.assert_array_equal(target.numpy(), ds.labels[index])
        np.testing.assert_array_equal(image[0].numpy(), ds.load_image(index))
    with pytest.raises(IndexError):
        ds[n]


def test_subset_keeps_the_contract(dataset: XRayDataset) -> None:
    ds = dataset
    last = len(ds) - 1
    sub = ds.subset([last, 0])
    assert type(sub) is type(ds) and len(sub) == 2 and sub.label_names == ds.label_names
    np.testing.assert_array_equal(sub.labels, ds.labels[[last, 0]])
    np.testing.assert_array_equal(sub.raw_labels, ds.raw_labels[[last, 0]])
    assert sub.patient_ids.tolist() == ds.patient_ids[[last, 0]].tolist()
    assert sub.paths == [ds.paths[last], ds.paths[0]]
    assert torch.equal(sub[1]["image"], ds[0]["image"])
