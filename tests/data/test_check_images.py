"""Unreadable images found up front (check_images, ``medcolor stats --check``) and, when they are not, reported
as one clean medcolor error naming the file even from inside a DataLoader worker."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from medcolor.cli import main
from medcolor.data import FolderDataset, check_images
from medcolor.errors import DataError, ImageReadError, MedcolorError

pytestmark = pytest.mark.filterwarnings("ignore:.*no patient_regex given")


@pytest.fixture
def folder(tmp_path: Path, gray_png) -> Path:
    """Two classes of 8 images each; two broken files (truncated PNG, random bytes) in PNEUMONIA."""
    root = tmp_path / "xrays"
    for c in ("NORMAL", "PNEUMONIA"):
        for k in range(8):
            gray_png(root / c / f"{k}.png", 10 * k, (12, 10))
    good = (root / "NORMAL" / "0.png").read_bytes()
    (root / "PNEUMONIA" / "3.png").write_bytes(good[: len(good) // 2])
    (root / "PNEUMONIA" / "6.png").write_bytes(b"not an image at all")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_check_images_reports_every_unreadable_file(folder: Path, workers: int) -> None:
    ds = FolderDataset(folder, load_size=8, transform=lambda t: t)  # a transform that does not pickle
    bad = check_images(ds, workers=workers)
    assert list(bad.columns) == ["index", "source_row", "path", "error"]
    assert [Path(p).relative_to(folder).as_posix() for p in bad["path"]] == ["PNEUMONIA/3.png", "PNEUMONIA/6.png"]
    assert bad["index"].tolist() == [11, 14] and bad["source_row"].tolist() == [12, 15]
    for path, msg in zip(bad["path"], bad["error"], strict=True):
        assert msg.startswith(f"cannot decode image {path}:") and "\n" not in msg
    assert check_images(ds.subset([0, 1, 2]), workers=workers).empty


def test_check_images_needs_images(tmp_path: Path) -> None:
    from medcolor.data import CsvDataset

    (tmp_path / "l.csv").write_text("path,y\na.png,1\n")
    ds = CsvDataset(None, tmp_path / "l.csv", label_columns=["y"], patient_column="path")
    with pytest.raises(DataError, match="no root"):
        check_images(ds)


def test_worker_errors_are_one_clean_medcolor_error(folder: Path) -> None:
    ds = FolderDataset(folder, load_size=8)
    with pytest.raises(ImageReadError) as e:
        for _ in DataLoader(ds, batch_size=4, num_workers=1):
            pass
    msg = str(e.value)
    assert msg.startswith(f"cannot decode image {folder / 'PNEUMONIA' / '3.png'}: ")
    assert msg.endswith("(sample 11, file PNEUMONIA/3.png) (raised in DataLoader worker process 0)")
    assert "\n" not in msg and "Traceback" not in msg
    err = pickle.loads(pickle.dumps(ImageReadError("cannot read image x.png")))
    assert type(err) is ImageReadError and str(err) == "cannot read image x.png"
    assert str(DataError("Caught nothing")) == "Caught nothing"  # only PyTorch's re-raise format is rewritten


def test_stats_check_lists_all_broken_files_and_exits_2(folder: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("medcolor.cli.quiet_lightning", lambda: None)  # importing Lightning takes seconds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["stats", "folder", "--root", str(folder), "--size", "8", "--check"])
    out, err = capsys.readouterr()
    assert rc == 2 and "folder: 16 images" in out
    lines = err.strip().splitlines()
    assert lines[0].strip().startswith(f"cannot decode image {folder / 'PNEUMONIA' / '3.png'}")
    assert lines[1].strip().startswith(f"cannot decode image {folder / 'PNEUMONIA' / '6.png'}")
    assert lines[2] == f"medcolor stats: error: 2 of 16 images of {folder} cannot be read (listed above); " + (
        "replace or remove those files (and their label rows) before training"
    )
    for name in ("3.png", "6.png"):
        (folder / "PNEUMONIA" / name).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["stats", "folder", "--root", str(folder), "--size", "8", "--check"]) == 0
    assert "check: all 14 images decode" in capsys.readouterr().out


def test_medcolor_errors_from_workers_keep_their_class() -> None:
    """The message PyTorch builds when it re-raises (torch.utils.data._utils.ExceptionWrapper.reraise)."""
    text = (
        "Caught DataError in DataLoader worker process 3.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise DataError("row 7 of a.csv: bad")\n'
        "medcolor.errors.DataError: row 7 of a.csv: bad\n"
    )
    err = DataError(text)
    assert isinstance(err, MedcolorError) and str(err) == "row 7 of a.csv: bad (raised in DataLoader worker process 3)"
