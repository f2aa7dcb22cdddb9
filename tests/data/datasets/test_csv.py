"""Any CSV: the COVID-19 collection (categorical column) and label columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medcolor.data import CsvDataset, DuplicateRowsWarning
from medcolor.errors import ConfigError, DataError


def test_covid_csv(covid) -> None:
    ds = covid
    # 653 rows name 648 files: 5 rows repeat an image (same finding, another patient id), dropped
    assert ds.name == "csv" and len(ds) == 648 and len(set(map(str, ds.paths))) == 648
    assert ds.skipped["source_row"].tolist() == [558, 559, 560, 561, 562]
    assert ds.skipped["reason"].tolist() == [f"duplicate of row {r}" for r in (456, 457, 458, 459, 460)]
    assert ds.label_names == ["COVID-19"]
    finding = ds.meta["finding"]
    # the decision: COVID-19 anywhere in the comma-separated finding -> 1; "todo" -> NaN (unknown); else 0
    assert int(np.nansum(ds.labels)) == 439 + 12 == int(finding.str.contains("COVID-19").sum())
    assert np.isnan(ds.labels[:, 0]).sum() == 78 == int((finding == "todo").sum())
    assert int((ds.labels == 0).sum()) == 648 - 451 - 78
    assert ds.labels[(finding == "COVID-19, ARDS").to_numpy()].min() == 1
    assert ds.labels[(finding == "No Finding").to_numpy()].max() == 0
    assert len(set(ds.patient_ids)) == ds.meta["patientid"].nunique()
    assert ds.meta["source_row"].tolist() == [r for r in range(2, 655) if not 558 <= r <= 562]
    # images of varied sizes and colour modes come out as (1, H, W) float32 in [0, 1]
    shapes = set()
    for i in range(0, 648, 41):
        item = ds[i]
        img = item["image"]
        assert img.ndim == 3 and img.shape[0] == 1 and img.dtype == torch.float32
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
        shapes.add(tuple(img.shape))
        expected = np.asarray(Image.open(ds.paths[i]).convert("L"), dtype=np.float32) / np.float32(255)
        assert np.array_equal(img[0].numpy(), expected)
    assert len(shapes) > 5


def test_covid_one_hot_views_and_transform(covid_paths, covid_options) -> None:
    root, csv = covid_paths
    opts = {k: v for k, v in covid_options.items() if k != "positive"}
    with pytest.warns(DuplicateRowsWarning, match=r"dropped 4 row\(s\).*row 558 repeats row 456"):
        ds = CsvDataset(
            root,
            csv,
            views=["PA"],
            categories=["COVID-19", "No Finding", "SARS"],
            load_size=32,
            transform=lambda t: t * 2,
            **opts,
        )
    # 309 PA rows, 4 of them repeats of an earlier PA row
    assert len(ds) == 309 - 4 and ds.label_names == ["COVID-19", "No Finding", "SARS"]
    ok = ~np.isnan(ds.labels).any(axis=1)
    assert ds.labels[ok].sum(axis=1).max() <= 1  # one-hot (others: all zero)
    item = ds[3]
    assert min(item["image"].shape[1:]) == 32 and float(item["image"].max()) <= 2.0
    sub = ds.subset([5, 3])
    assert (
        type(sub) is CsvDataset
        and len(sub) == 2
        and sub.meta["source_row"].tolist() == list(ds.meta["source_row"].iloc[[5, 3]])
    )
    assert sub.paths == [ds.paths[5], ds.paths[3]] and sub.transform is ds.transform
    assert torch.equal(sub[1]["image"], item["image"])


def test_csv_label_columns_and_patient_warning(tmp_path: Path, gray_png) -> None:
    for n in ("a", "b", "c"):
        gray_png(tmp_path / "img" / f"{n}.png")
    csv = tmp_path / "l.csv"
    csv.write_text("path,x,y\nimg/a.png,1,-1\nimg/b.png,,0\nimg/c.png,0,1\n")
    with pytest.warns(UserWarning, match="own patient"):
        ds = CsvDataset(tmp_path, csv, label_columns=["x", "y"], policy={"y": "ones"})
    assert ds.label_names == ["x", "y"] and not ds.patients_known
    assert ds.labels.tolist() == [[1, 1], [0, 0], [0, 1]]
    assert np.isnan(ds.raw_labels[1, 0]) and ds.raw_labels[0, 1] == -1
    with pytest.raises(ConfigError, match="exactly one"):
        CsvDataset(tmp_path, csv)
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['z'\]"):
        CsvDataset(tmp_path, csv, label_columns=["z"], patient_column="path")
