"""CheXpert on the official train.csv (labels only; the README counts, the U-Ones / U-Zeros / U-Ignore policies)
and on a tiny folder with images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medcolor.data import PAPER_LABELS, CheXpert
from medcolor.errors import ConfigError, DataError

# README: positive / negative / uncertain / blank in the official CheXpert train.csv
README_CHEXPERT = {
    "Atelectasis": (33376, 1328, 33739, 154971),
    "Cardiomegaly": (27000, 11116, 8087, 177211),
    "Consolidation": (14783, 28097, 27742, 152792),
    "Edema": (52246, 20726, 12984, 137458),
    "Pleural Effusion": (86187, 35396, 11628, 90203),
}
N_CHEXPERT = 223414


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


def test_chexpert_views_default_all_as_the_paper(chexpert_csv: Path, chexpert_all) -> None:
    """The paper counts every radiograph, frontal and lateral: the default, and what the paper config asks."""
    from medcolor.config import RunConfig
    from medcolor.data.splits import label_subset

    default = CheXpert(csv=chexpert_csv, labels=["Edema"])
    assert len(default) == len(chexpert_all) == 223414
    assert default.meta["Frontal/Lateral"].value_counts().to_dict() == {"Frontal": 191027, "Lateral": 32387}
    paper_cfg = Path(__file__).resolve().parents[3] / "configs" / "examples" / "chexpert-paper.yaml"
    options = RunConfig.from_yaml(paper_cfg).data.options
    assert options["views"] == "all" and options["policy"] == "paper"
    paper = CheXpert(csv=chexpert_csv, **options)
    assert len(paper) == 223414 and paper.label_names == list(PAPER_LABELS)
    assert len(label_subset(paper.raw_labels, fraction=0.001, seed=0)) == 223  # the paper's 224 is 0.1 % of 224,316
    assert len(CheXpert(csv=chexpert_csv, views="lateral", labels=["Edema"])) == 32387


def test_chexpert_frontal(chexpert_csv: Path, chexpert_all) -> None:
    frontal = CheXpert(csv=chexpert_csv, labels=["Edema", "No Finding"], views="frontal")
    assert frontal.label_names == ["Edema", "No Finding"]
    assert len(frontal) == int((chexpert_all.meta["Frontal/Lateral"] == "Frontal").sum()) == 191027
    assert set(frontal.meta["Frontal/Lateral"]) == {"Frontal"}
    edema = chexpert_all.raw_labels[:, PAPER_LABELS.index("Edema")]
    frontal_rows = chexpert_all.meta["Frontal/Lateral"].to_numpy() == "Frontal"
    assert np.array_equal(frontal.raw_labels[:, 0], edema[frontal_rows], equal_nan=True)
    with pytest.raises(ConfigError, match="Did you mean 'Pleural Effusion'"):
        CheXpert(csv=chexpert_csv, labels=["Pleural Efusion"])


def test_chexpert_with_images(tmp_path: Path, tiny_chexpert) -> None:
    root, _ = tiny_chexpert(tmp_path)
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


def test_chexpert_policy_dict_and_bad_policy(tmp_path: Path, tiny_chexpert) -> None:
    _, csv = tiny_chexpert(tmp_path)
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
