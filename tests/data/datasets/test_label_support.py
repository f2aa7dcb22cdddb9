"""Labels that nothing can be learned from — a label column blank in every row, a class folder without
images — are a DataError naming the column / folder and what to do, before any training; and a label with
one class only in a set gives NaN AUCs without numpy's raw RuntimeWarnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medcolor.data import CsvDataset, FolderDataset
from medcolor.errors import DataError

KERMANY = ("data", "kermany-pneumonia-224", "train")


@pytest.fixture(scope="module")
def xray_files(tmp_path_factory, shared_path) -> dict[str, list[Path]]:
    """Eight real Kermany images per class, as 8-bit PNGs."""
    root = tmp_path_factory.mktemp("kermany16")
    out: dict[str, list[Path]] = {}
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir()
        out[cls] = []
        for src in sorted(shared_path(*KERMANY, cls).glob("*.jpeg"))[:8]:
            Image.open(src).convert("L").save(root / cls / f"{src.stem}.png")
            out[cls].append(root / cls / f"{src.stem}.png")
    return out


@pytest.mark.filterwarnings("ignore:.*no patient_regex given:UserWarning")
def test_an_empty_class_folder_is_named_with_the_classes_to_pick(xray_files, tmp_path):
    root = xray_files["NORMAL"][0].parent.parent
    (root / "COVID").mkdir(exist_ok=True)  # three classes, one of them empty
    (root / "COVID" / "notes.txt").write_text("not an image")
    try:
        with (
            pytest.raises(
                DataError, match=r"class folder\(s\) .*/COVID hold no image files.*classes=\[NORMAL, PNEUMONIA\]"
            ),
            pytest.warns(UserWarning, match=r"ignored 1 file\(s\) .*COVID/notes.txt"),
        ):
            FolderDataset(root)
        ds = FolderDataset(root, classes=["NORMAL", "PNEUMONIA"])  # the way out the message names
        assert len(ds) == 16 and ds.label_names == ["PNEUMONIA"]
    finally:
        (root / "COVID" / "notes.txt").unlink()
        (root / "COVID").rmdir()


def _csv(xray_files, tmp_path: Path, blank: float | None) -> Path:
    files = xray_files["NORMAL"] + xray_files["PNEUMONIA"]
    df = pd.DataFrame(
        {
            "path": [str(f) for f in files],
            "patient": [f.stem for f in files],
            "PNEUMONIA": [float(f.parent.name == "PNEUMONIA") for f in files],
            "Effusion": blank,
        }
    )
    path = tmp_path / "labels.csv"
    df.to_csv(path, index=False)
    return path


def test_a_label_column_blank_in_every_row_is_named_with_its_file(xray_files, tmp_path):
    csv = _csv(xray_files, tmp_path, None)
    options = {"path_column": "path", "patient_column": "patient", "label_columns": ["PNEUMONIA", "Effusion"]}
    with pytest.raises(DataError, match=r"label column\(s\) 'Effusion' of .*labels.csv have no value in any of its 16"):
        CsvDataset("/", csv, **options)
    ds = CsvDataset("/", csv, **{**options, "label_columns": ["PNEUMONIA"]})
    assert len(ds) == 16 and int(ds.labels.sum()) == 8


def test_train_refuses_a_blank_label_column_before_any_stage(xray_files, tmp_path, capsys):
    from medcolor.cli import main

    csv = _csv(xray_files, tmp_path, None)
    argv = ["train", "--dataset", "csv", "--root", "/", "--csv", str(csv), "-o", str(tmp_path / "run")]
    argv += ["--option", "path_column=path", "--option", "patient_column=patient"]
    argv += ["--option", "label_columns=[PNEUMONIA, Effusion]", "--weights", "none", "--size", "32"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "'Effusion'" in err and "labels.csv" in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_label_with_one_class_only_gives_nan_intervals_without_raw_warnings():
    from medcolor.evaluation.metrics import summarize

    rng = np.random.default_rng(0)
    targets = np.stack([rng.integers(0, 2, 40), np.zeros(40)], axis=1).astype(np.float32)  # no positive
    probs = rng.random((40, 2)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = summarize(probs, targets, ["a", "never"], bootstrap=50, seed=0)
    assert np.isnan(res.auc[1]) and not np.isnan(res.auc[0])
    assert all(np.isnan(v) for v in res.ci["per_label"][1]) and not np.isnan(res.ci["per_label"][0][0])
