"""Class folders: the Kermany training folder and small multi-class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medcolor.data import FolderDataset
from medcolor.data.readers import find_images
from medcolor.errors import DataError


def test_kermany_folder(kermany) -> None:
    ds = kermany
    assert ds.name == "folder" and len(ds) == 5216 and ds.label_names == ["PNEUMONIA"]
    assert int(ds.labels.sum()) == 3875 and int((ds.labels == 0).sum()) == 1341
    cls = ds.meta["class"].to_numpy()
    assert len(set(ds.patient_ids[cls == "NORMAL"])) == 1278
    # README says 1636 pneumonia patients: it counts person447_virus_921_1.jpeg as its own patient; the file
    # belongs to person447 (who also has person447_virus_921.jpeg), so by patient there are 1635.
    assert len(set(ds.patient_ids[cls == "PNEUMONIA"])) == 1635
    names = {p.name: pid for p, pid in zip(ds.paths, ds.patient_ids, strict=True)}
    assert names["person447_virus_921_1.jpeg"] == "person447"
    assert names["NORMAL2-IM-0383-0001.jpeg"] == "NORMAL2-IM-0383"
    assert names["IM-0429-0001-0002.jpeg"] == "IM-0429-0001"
    assert ds.patients_known
    for i in (0, 1340, 1341, 5215):
        item = ds[i]
        img = item["image"]
        assert img.shape == (1, 224, 224) and img.dtype == torch.float32
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
        expected = np.asarray(Image.open(ds.paths[i]).convert("L"), dtype=np.float32) / np.float32(255)
        assert np.array_equal(img[0].numpy(), expected)
        assert item["target"].tolist() == [float(cls[i] == "PNEUMONIA")]
    reduced = ds.subset([0, 5215])
    reduced.load_size = 100
    assert reduced.load_image(1).shape == (100, 100)


def test_folder_multiclass_regex_and_errors(tmp_path: Path, gray_png) -> None:
    for cls, files in {
        "covid": ["p1_a.png", "p1_b.png"],
        "normal": ["p2_a.png"],
        "viral": ["p3_a.png"],
    }.items():
        for f in files:
            gray_png(tmp_path / cls / f)
    (tmp_path / "covid" / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="notes"):  # non-image files are counted, not silently dropped
        ds = FolderDataset(tmp_path, patient_regex=r"^(p\d+)_")
    assert ds.label_names == ["covid", "normal", "viral"]
    assert ds.labels.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert list(ds.patient_ids) == ["p1", "p1", "p2", "p3"]
    (tmp_path / "covid" / "notes.txt").unlink()
    gray_png(tmp_path / "normal" / "stray.png")
    with pytest.raises(DataError, match=r"normal/stray\.png"):
        FolderDataset(tmp_path, patient_regex=r"^(p\d+)_")
    with pytest.warns(UserWarning, match="own patient"):
        two = FolderDataset(tmp_path, classes=["normal", "viral"])
    assert two.label_names == ["viral"] and not two.patients_known


def test_folder_dataset_and_find_images_agree(kermany, shared_path) -> None:
    """One rule for which files of a folder are images: FolderDataset lists what find_images finds."""
    folder = shared_path("data", "kermany-pneumonia-224", "train")
    assert [str(p) for p in find_images(folder)] == [str(p) for p in kermany.paths]
