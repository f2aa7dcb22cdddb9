"""Datasets on the real label files and images in ../shared/data, and on small bad inputs in tmp_path."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medcolor.data import (
    CHEXPERT_LABELS,
    MURA,
    PAPER_LABELS,
    ChestXray14,
    CheXpert,
    CsvDataset,
    FolderDataset,
    MissingImagesWarning,
    create_dataset,
    list_datasets,
    patient_split,
)
from medcolor.data.splits import check_no_leak
from medcolor.errors import ConfigError, DataError, ImageReadError, UnknownNameError
from medcolor.evaluation import aggregate_by_study

# README: positive / negative / uncertain / blank in the official CheXpert train.csv
README_CHEXPERT = {
    "Atelectasis": (33376, 1328, 33739, 154971),
    "Cardiomegaly": (27000, 11116, 8087, 177211),
    "Consolidation": (14783, 28097, 27742, 152792),
    "Edema": (52246, 20726, 12984, 137458),
    "Pleural Effusion": (86187, 35396, 11628, 90203),
}
N_CHEXPERT = 223414


def _gray_png(path: Path, value: int = 100, size: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)
    return path


# =========================================================================================== CheXpert


def test_chexpert_counts_match_readme(chexpert_all) -> None:
    ds = chexpert_all
    assert ds.name == "chexpert" and len(ds) == N_CHEXPERT and ds.root is None
    assert ds.label_names == list(PAPER_LABELS)
    counts = ds.label_counts()
    for label, (pos, neg, unc, blank) in README_CHEXPERT.items():
        assert tuple(counts.loc[label, ["positive", "negative", "uncertain", "blank"]]) == (
            pos,
            neg,
            unc,
            blank,
        )
    assert ds.raw_labels.dtype == np.float32 and ds.labels.dtype == np.float32
    assert ds.raw_labels.shape == ds.labels.shape == (N_CHEXPERT, 5)


def _policy_counts(labels: np.ndarray) -> dict[str, tuple[int, int, int]]:
    return {
        n: (int((labels[:, j] == 1).sum()), int((labels[:, j] == 0).sum()), int(np.isnan(labels[:, j]).sum()))
        for j, n in enumerate(PAPER_LABELS)
    }


@pytest.mark.parametrize("policy", ["ones", "zeros", "ignore", "paper"])
def test_chexpert_policies(chexpert_all, policy: str) -> None:
    from medcolor.data import apply_policy

    labels = apply_policy(chexpert_all.raw_labels, PAPER_LABELS, policy)
    if policy == "paper":  # the dataset's default policy is the paper's
        np.testing.assert_array_equal(labels, chexpert_all.labels)
    paper = {
        "Atelectasis": "ones",
        "Cardiomegaly": "zeros",
        "Consolidation": "zeros",
        "Edema": "ones",
        "Pleural Effusion": "ones",
    }
    got = _policy_counts(labels)
    for label, (pos, neg, unc, blank) in README_CHEXPERT.items():
        p = paper[label] if policy == "paper" else policy
        expected = {
            "ones": (pos + unc, neg + blank, 0),
            "zeros": (pos, neg + unc + blank, 0),
            "ignore": (pos, neg + blank, unc),  # blank is negative, uncertain is ignored
        }[p]
        assert got[label] == expected, (label, p)
    # raw labels keep the states untouched
    assert np.array_equal(np.isnan(chexpert_all.raw_labels).sum(axis=0), [v[3] for v in README_CHEXPERT.values()])


def test_chexpert_policy_dict_and_bad_policy(tmp_path: Path) -> None:
    _, csv = _tiny_chexpert(tmp_path)
    ds = CheXpert(csv=csv, labels=["Pleural Effusion", "Support Devices"], policy={"Support Devices": "ones"})
    assert ds.labels[:, 1].tolist() == [
        0,
        1,
        0,
        1,
    ]  # -1 -> 1 by the dict; Pleural Effusion: not listed -> zeros
    with pytest.raises(ConfigError, match="not among the labels"):
        CheXpert(csv=csv, policy={"Nodule": "ones"})
    with pytest.raises(ConfigError, match="unknown uncertainty policy"):
        CheXpert(csv=csv, policy="maybe")


def test_chexpert_ids_paths_views(chexpert_all, chexpert_csv: Path) -> None:
    ds = chexpert_all
    assert ds.patient_ids[0] == "patient00001" and ds.study_ids[0] == "patient00001/study1"
    assert ds.paths[0] == Path("train/patient00001/study1/view1_frontal.jpg")  # relative: root is None
    assert ds.meta["source_row"].iloc[0] == 2 and ds.meta["source_row"].iloc[-1] == N_CHEXPERT + 1
    n_frontal = int((ds.meta["Frontal/Lateral"] == "Frontal").sum())
    sub = ds.subset(np.flatnonzero(ds.meta["Frontal/Lateral"].to_numpy() == "Frontal"))
    assert len(sub) == n_frontal and (sub.meta["Frontal/Lateral"] == "Frontal").all()
    with pytest.raises(DataError, match="without root"):
        ds.load_image(0)
    with pytest.raises(DataError, match="without root"):
        ds[0]


def test_chexpert_frontal_default(chexpert_csv: Path, chexpert_all) -> None:
    frontal = CheXpert(csv=chexpert_csv, labels=["Edema", "No Finding"])  # views=("frontal",) by default
    assert frontal.label_names == ["Edema", "No Finding"]
    assert len(frontal) == int((chexpert_all.meta["Frontal/Lateral"] == "Frontal").sum()) == 191027
    assert set(frontal.meta["Frontal/Lateral"]) == {"Frontal"}
    edema = chexpert_all.raw_labels[:, PAPER_LABELS.index("Edema")]
    frontal_rows = chexpert_all.meta["Frontal/Lateral"].to_numpy() == "Frontal"
    assert np.array_equal(frontal.raw_labels[:, 0], edema[frontal_rows], equal_nan=True)
    with pytest.raises(ConfigError, match="Did you mean 'Pleural Effusion'"):
        CheXpert(csv=chexpert_csv, labels=["Pleural Efusion"])


def _tiny_chexpert(tmp_path: Path, rows: list[str] | None = None) -> tuple[Path, Path]:
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
        _gray_png(root / rel, value=50)  # PNG content in a .jpg name: decided by content
    return root, root / "train.csv"


def test_chexpert_with_images(tmp_path: Path) -> None:
    root, _ = _tiny_chexpert(tmp_path)
    ds = CheXpert(root, load_size=16)  # csv defaults to root/train.csv
    assert len(ds) == 4 and ds.paths[1] == root / "train/patient00002/study1/view1_frontal.jpg"
    assert list(ds.patient_ids) == ["patient00001", "patient00002", "patient00002", "patient00003"]
    item = ds[1]
    assert item["image"].shape == (1, 16, 21) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"], torch.tensor(50 / 255))
    # only Support Devices (last column, not a default label) is filled in rows 3-5
    assert item["target"].tolist() == [0, 0, 0, 0, 0] and item["index"] == 1
    ds14 = CheXpert(root, labels=["Support Devices"], policy="ignore")
    assert np.isnan(ds14.labels[1, 0]) and ds14.raw_labels[1, 0] == -1 and ds14.labels[3, 0] == 1


def test_missing_image_error_names_rows_and_fix(tmp_path: Path) -> None:
    root, csv = _tiny_chexpert(tmp_path)
    (root / "train/patient00002/study2/view1_frontal.jpg").unlink()
    with pytest.raises(DataError) as e:
        CheXpert(root)
    msg = str(e.value)
    assert "1 of 4 images" in msg and "row 4" in msg and "patient00002/study2/view1_frontal.jpg" in msg
    assert 'on_missing="skip"' in msg and str(csv) in msg


def test_on_missing_skip_reports_every_row(tmp_path: Path) -> None:
    root, _ = _tiny_chexpert(tmp_path)
    for rel in ("train/patient00002/study2/view1_frontal.jpg", "train/patient00003/study1/view1_frontal.jpg"):
        (root / rel).unlink()
    with pytest.warns(MissingImagesWarning, match=r"skipped 2 of 4 rows.*dataset\.skipped"):
        ds = CheXpert(root, on_missing="skip")
    assert len(ds) == 2
    assert list(ds.skipped.columns) == ["source_row", "path", "reason"]
    assert ds.skipped["source_row"].tolist() == [4, 5]
    assert ds.skipped["path"].str.endswith("view1_frontal.jpg").all()
    assert ds.meta["source_row"].tolist() == [2, 3]


def test_all_images_missing_hints_at_root(tmp_path: Path) -> None:
    _, csv = _tiny_chexpert(tmp_path)
    with pytest.raises(DataError, match="contains train/ and valid/"):
        CheXpert(tmp_path, csv)


def test_bad_label_value_names_file_row_column(tmp_path: Path) -> None:
    blank = "," * 13
    rows = [
        f"CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,F,68,Frontal,AP,1.0{blank}",
        "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,M,50,Frontal,PA,,,,,,2.0,,,,,,,,",
    ]
    _, csv = _tiny_chexpert(tmp_path, rows)
    with pytest.raises(DataError) as e:
        CheXpert(csv=csv, views="all")
    msg = str(e.value)
    assert str(csv) in msg and "row 3" in msg and "'Edema'" in msg and "2.0" in msg and "-1 (uncertain)" in msg
    rows[1] = rows[1].replace("2.0", "yes")
    _, csv = _tiny_chexpert(tmp_path, rows)
    with pytest.raises(DataError, match=r"row 3, column 'Edema' holds 'yes'"):
        CheXpert(csv=csv, views="all")


def test_csv_without_expected_columns(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("Path,Atelectasis,Cardiomegaly\nx/train/patient1/study1/a.jpg,1,0\n")
    with pytest.raises(DataError) as e:
        CheXpert(csv=csv, views="all")
    msg = str(e.value)
    assert str(csv) in msg and "'Consolidation'" in msg and "'Edema'" in msg and "'Pleural Effusion'" in msg
    with pytest.raises(DataError, match="label file not found"):
        CheXpert(csv=tmp_path / "nope.csv")


def test_source_row_with_multiline_quoted_field(tmp_path: Path) -> None:
    _gray_png(tmp_path / "a.png")
    _gray_png(tmp_path / "b.png")
    csv = tmp_path / "l.csv"
    csv.write_text('path,note,y\na.png,"two\nlines",1\n\nb.png,x,7\n')
    with pytest.raises(DataError, match=r"row 5, column 'y' holds 7"):
        CsvDataset(tmp_path, csv, label_columns=["y"], patient_column="path")


# =========================================================================================== ChestX-ray14


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
    root = shared_path("nih-chestxray14-1000", "images")
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


# =========================================================================================== MURA


def test_mura_shoulder_counts(shared_path) -> None:
    labels = shared_path("labels", "mura")
    train = MURA(csv=labels / "train_image_paths.csv")
    assert train.name == "mura" and len(train) == 8379 and train.label_names == ["abnormal"]
    studies = train.study_table()
    assert (
        len(studies) == 2821
        and int(studies["abnormal"].sum()) == 1457
        and int((studies["abnormal"] == 0).sum()) == 1364
    )
    assert (train.meta["body_part"] == "XR_SHOULDER").all()
    assert train.patient_ids[0] == "patient00001" and len(set(train.patient_ids)) == 2694  # the paper's count
    assert train.study_ids[0] == "MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive"
    valid = MURA(csv=labels / "valid_image_paths.csv", split="valid")
    assert len(valid) == 563
    every = MURA(csv=labels / "train_image_paths.csv", body_parts=None)
    assert len(every) == 36808
    # study-level aggregation: mean of per-image predictions; applied to labels it gives the study labels
    ids, mean = aggregate_by_study(train.labels, train.study_ids)
    assert len(ids) == 2821 and mean.shape == (2821, 1) and set(np.unique(mean)) == {0.0, 1.0}
    probs = np.random.default_rng(0).random(len(train))
    ids1, m1 = aggregate_by_study(probs, train.study_ids)
    k = int(np.flatnonzero(ids1 == train.study_ids[0])[0])
    assert m1[k] == pytest.approx(probs[train.study_ids == train.study_ids[0]].mean(), rel=1e-6)


def test_mura_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "train_image_paths.csv").write_text("MURA-v1.1/train/XR_SHOULDER/patient1/study1_positive/image1.png\n")
    (tmp_path / "train_labeled_studies.csv").write_text("MURA-v1.1/train/XR_SHOULDER/patient1/study1_positive/,3\n")
    with pytest.raises(DataError, match=r"train_labeled_studies\.csv: row 1.*0 or 1"):
        MURA(csv=tmp_path / "train_image_paths.csv")
    with pytest.raises(ConfigError, match="unknown MURA body part"):
        MURA(csv=tmp_path / "train_image_paths.csv", body_parts="knee")


# =========================================================================================== Kermany folders


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


def test_folder_multiclass_regex_and_errors(tmp_path: Path) -> None:
    for cls, files in {
        "covid": ["p1_a.png", "p1_b.png"],
        "normal": ["p2_a.png"],
        "viral": ["p3_a.png"],
    }.items():
        for f in files:
            _gray_png(tmp_path / cls / f)
    (tmp_path / "covid" / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="notes"):  # non-image files are counted, not silently dropped
        ds = FolderDataset(tmp_path, patient_regex=r"^(p\d+)_")
    assert ds.label_names == ["covid", "normal", "viral"]
    assert ds.labels.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert list(ds.patient_ids) == ["p1", "p1", "p2", "p3"]
    (tmp_path / "covid" / "notes.txt").unlink()
    _gray_png(tmp_path / "normal" / "stray.png")
    with pytest.raises(DataError, match=r"normal/stray\.png"):
        FolderDataset(tmp_path, patient_regex=r"^(p\d+)_")
    with pytest.warns(UserWarning, match="own patient"):
        two = FolderDataset(tmp_path, classes=["normal", "viral"])
    assert two.label_names == ["viral"] and not two.patients_known


# =========================================================================================== COVID CSV


def test_covid_csv(covid) -> None:
    ds = covid
    assert ds.name == "csv" and len(ds) == 653 and len(set(map(str, ds.paths))) == 648
    assert ds.label_names == ["COVID-19"]
    finding = ds.meta["finding"]
    # the decision: COVID-19 anywhere in the comma-separated finding -> 1; "todo" -> NaN (unknown); else 0
    assert int(np.nansum(ds.labels)) == 439 + 12 == int(finding.str.contains("COVID-19").sum())
    assert np.isnan(ds.labels[:, 0]).sum() == 78 == int((finding == "todo").sum())
    assert int((ds.labels == 0).sum()) == 653 - 451 - 78
    assert ds.labels[(finding == "COVID-19, ARDS").to_numpy()].min() == 1
    assert ds.labels[(finding == "No Finding").to_numpy()].max() == 0
    assert len(set(ds.patient_ids)) == ds.meta["patientid"].nunique()
    assert ds.meta["source_row"].tolist() == list(range(2, 655))
    # images of varied sizes and colour modes come out as (1, H, W) float32 in [0, 1]
    shapes = set()
    for i in range(0, 653, 41):
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
    ds = CsvDataset(
        root,
        csv,
        views=["PA"],
        categories=["COVID-19", "No Finding", "SARS"],
        load_size=32,
        transform=lambda t: t * 2,
        **opts,
    )
    assert len(ds) == 309 and ds.label_names == ["COVID-19", "No Finding", "SARS"]
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


def test_csv_label_columns_and_patient_warning(tmp_path: Path) -> None:
    for n in ("a", "b", "c"):
        _gray_png(tmp_path / "img" / f"{n}.png")
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


def test_corrupt_image_in_dataset_names_file_and_row(tmp_path: Path) -> None:
    _gray_png(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    csv = tmp_path / "l.csv"
    csv.write_text("path,y,pid\nok.png,1,p1\nbad.png,0,p2\n")
    ds = CsvDataset(tmp_path, csv, label_columns=["y"], patient_column="pid")
    assert ds[0]["image"].shape == (1, 24, 32)
    with pytest.raises(ImageReadError, match=r"bad\.png.*row 3 of"):
        ds[1]


# =========================================================================================== registry


def test_registry(chexpert_csv: Path, shared_path) -> None:
    assert list_datasets() == ["chexpert", "chestxray14", "mura", "csv", "folder", "synthetic"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = create_dataset("MURA", csv=shared_path("labels", "mura", "valid_image_paths.csv"), split="valid")
    assert isinstance(ds, MURA) and len(ds) == 563
    with pytest.raises(UnknownNameError, match="Did you mean 'chexpert'"):
        create_dataset("chexpret")
    with pytest.raises(ConfigError, match="on_missing"):
        CheXpert(csv=chexpert_csv, on_missing="ignore")
