"""The row checks at construction (medcolor.data.datasets.checks): paths inside root, duplicates and
conflicting labels, label files with no rows — every offending row reported at once, for every dataset."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from medcolor.data import CheXpert, CsvDataset, DuplicateRowsWarning, MissingImagesWarning, create_dataset
from medcolor.data.datasets import MURA
from medcolor.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:.*no patient_column given")


@pytest.fixture
def images(tmp_path: Path, gray_png) -> Path:
    root = tmp_path / "data" / "images"
    for name in ("a.png", "b.png", "sub/c.png"):
        gray_png(root / name)
    (tmp_path / "outside.png").write_bytes((root / "a.png").read_bytes())  # exists, but outside root
    return root


def _csv(tmp_path: Path, rows: list[str], header: str = "path,y") -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("on_missing", ["error", "skip", "present"])
def test_paths_leaving_root_are_all_reported_at_construction(tmp_path, images, on_missing) -> None:
    rows = [
        "a.png,1",
        "../../outside.png,0",  # exists: would have been read
        "../../../../../../etc/passwd,1",
        f"{tmp_path / 'outside.png'},0",  # absolute, outside root
        "sub/../b.png,0",  # stays inside: fine
        f"{images / 'sub' / 'c.png'},1",  # absolute inside root: fine
        "/etc/hostname,1",
    ]
    csv = _csv(tmp_path, rows)
    with pytest.raises(DataError) as e:
        CsvDataset(images, csv, label_columns=["y"], on_missing=on_missing)
    msg = str(e.value)
    assert f"4 of 7 rows of {csv} name an image outside the dataset root {images}" in msg
    for row, path in ((3, "../../outside.png"), (4, "../../../../../../etc/passwd"), (8, "/etc/hostname")):
        assert f"row {row}: {path!r}" in msg
    assert "pass as root the folder that holds every image" in msg and "\n" not in msg
    assert e.value.rows == [3, 4, 5, 8]
    assert pickle.loads(pickle.dumps(e.value)).rows == [3, 4, 5, 8]  # survives a DataLoader worker
    ok = CsvDataset(images, _csv(tmp_path, [rows[0], rows[4], rows[5]]), label_columns=["y"])
    assert [p.relative_to(images).as_posix() for p in ok.paths] == ["a.png", "b.png", "sub/c.png"]


def test_symbolic_links_to_and_inside_root_are_followed(tmp_path, images) -> None:
    link = tmp_path / "link-to-images"
    link.symlink_to(images, target_is_directory=True)
    (images / "linked").symlink_to(tmp_path, target_is_directory=True)  # a link inside root: followed as before
    csv = _csv(tmp_path, [f"{link / 'a.png'},1", "linked/outside.png,0"])
    ds = CsvDataset(link, csv, label_columns=["y"])  # root is resolved; the CSV names it through the link
    assert ds.root == images and [p.name for p in ds.paths] == ["a.png", "outside.png"]
    assert ds.load_image(1).shape == ds.load_image(0).shape


def test_many_escaping_rows_name_the_first_paths_and_every_row(tmp_path, images) -> None:
    csv = _csv(tmp_path, [f"../x{k}.png,1" for k in range(40)])
    with pytest.raises(DataError) as e:
        CsvDataset(images, csv, label_columns=["y"])
    msg = str(e.value)
    assert "40 of 40 rows" in msg and "row 6: '../x4.png'" in msg and "'../x5.png'" not in msg
    assert "rows 2, 3, 4," in msg and "(10 more)" in msg and e.value.rows == list(range(2, 42))


def test_escaping_paths_in_chexpert_and_mura(tmp_path, tiny_chexpert, gray_png) -> None:
    """The same check for datasets with their own path rules (one check in the base class)."""
    bad = "CheXpert-v1.0-small/../../elsewhere/patient00009/study1/view1_frontal.jpg,Male,50,Frontal,PA" + "," * 14
    root, csv = tiny_chexpert(tmp_path)
    csv.write_text(csv.read_text() + bad + "\n")
    with pytest.raises(DataError, match=r"1 of 5 rows .* outside the dataset root .*row 6: '\.\./\.\./elsewhere/"):
        CheXpert(root, on_missing="skip")
    mura = tmp_path / "MURA-v1.1"
    paths = ["MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/image1.png", "/abs/XR_SHOULDER/patient9/s/i.png"]
    mura.mkdir()
    (mura / "train_image_paths.csv").write_text("\n".join(paths) + "\n")
    studies = ["MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/,1", "/abs/XR_SHOULDER/patient9/s/,0"]
    (mura / "train_labeled_studies.csv").write_text("\n".join(studies) + "\n")
    gray_png(tmp_path / paths[0])
    with pytest.raises(DataError, match=r"1 of 2 rows .* outside .*row 2: '/abs/XR_SHOULDER/patient9/s/i\.png'"):
        MURA(tmp_path, body_parts=None)


def test_duplicate_rows_are_an_error_unless_dropped(tmp_path, images) -> None:
    csv = _csv(tmp_path, ["a.png,1", "b.png,0", "./a.png,1", "sub/c.png,1", "b.png,0", "a.png,1"])
    with pytest.raises(DataError) as e:
        CsvDataset(images, csv, label_columns=["y"])
    msg = str(e.value)
    assert "3 row(s) of" in msg and "row 4 repeats row 2" in msg and "row 6 repeats row 3" in msg
    assert "on_duplicate='drop'" in msg and e.value.rows == [4, 6, 7]
    with pytest.warns(DuplicateRowsWarning, match="dropped 3 row"):
        ds = CsvDataset(images, csv, label_columns=["y"], on_duplicate="drop")
    assert ds.meta["source_row"].tolist() == [2, 3, 5] and ds.labels[:, 0].tolist() == [1, 0, 1]
    assert ds.skipped["source_row"].tolist() == [4, 6, 7]
    assert ds.skipped["reason"].tolist() == ["duplicate of row 2", "duplicate of row 3", "duplicate of row 2"]
    with pytest.raises(Exception, match="on_duplicate must be one of"):
        CsvDataset(images, csv, label_columns=["y"], on_duplicate="keep")


def test_conflicting_labels_are_always_an_error(tmp_path, images) -> None:
    csv = _csv(tmp_path, ["a.png,1,0", "b.png,0,", "a.png,1,1", "b.png,0,"], header="path,y,z")
    for policy in ("error", "drop"):
        with pytest.raises(DataError) as e:
            CsvDataset(images, csv, label_columns=["y", "z"], on_duplicate=policy)
        msg = str(e.value)
        assert "1 image(s) are listed in" in msg and "rows 2, 4:" in msg and "'z' = 0 vs 1" in msg
        assert e.value.rows == [2, 4]
    with pytest.raises(DataError, match=r"rows 2, 3: 'x/a\.png'"):  # without root too (paths compared normalised)
        CsvDataset(None, _csv(tmp_path, ["x/a.png,1", "x/./a.png,0"]), label_columns=["y"])


def test_empty_label_file_and_empty_selection(tmp_path, images, tiny_chexpert) -> None:
    csv = _csv(tmp_path, [])
    with pytest.raises(DataError, match=rf"no rows in label file {csv} \(only a header line\)"):
        CsvDataset(images, csv, label_columns=["y"])
    with pytest.raises(DataError, match="no rows in"):
        create_dataset("csv", images, csv, label_columns=["y"])
    from medcolor.config import DataConfig
    from medcolor.data.bundle import build_data

    cfg = DataConfig(dataset="csv", root=str(images), csv=str(csv), options={"label_columns": ["y"]})
    with pytest.raises(DataError, match=r"no rows in label file .*labels\.csv"):  # not "patient_split needs..."
        build_data(cfg)
    csv = _csv(tmp_path, ["a.png,1,PA"], header="path,y,view")
    with pytest.raises(DataError, match=r"csv: no rows in .*labels.csv match view in \['AP'\]"):
        CsvDataset(images, csv, label_columns=["y"], views=["AP"])
    root, _ = tiny_chexpert(tmp_path / "cx")
    with pytest.raises(DataError, match=r"chexpert: no rows in .*train.csv match views \['lateral'\]"):
        CheXpert(root, views="lateral")


def test_a_root_without_any_of_the_images_is_an_error_with_every_policy(tmp_path, images) -> None:
    csv = _csv(tmp_path, ["x.png,1", "y.png,0"])
    for policy in ("error", "skip", "present"):
        with pytest.raises(DataError, match=r"2 of 2 images .* missing .*None of the images were found"):
            CsvDataset(images, csv, label_columns=["y"], on_missing=policy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingImagesWarning)
        with pytest.raises(MissingImagesWarning, match="skipped 1 of 2 rows"):
            CsvDataset(images, _csv(tmp_path, ["a.png,1", "y.png,0"]), label_columns=["y"], on_missing="skip")


def test_real_label_files_pass_the_checks(chexpert_all, nih_1000, covid) -> None:
    """The official files have no escaping paths and no repeated images (COVID: 5 repeats, dropped)."""
    assert len(chexpert_all) == 223414 and chexpert_all.skipped.empty
    assert len(nih_1000) == 1000 and set(nih_1000.skipped["reason"]) == {"image file not found"}
    assert len(covid) == 648 and (covid.skipped["reason"].str.startswith("duplicate of row")).sum() == 5
    assert np.isfinite(covid.raw_labels[~np.isnan(covid.raw_labels)]).all()
