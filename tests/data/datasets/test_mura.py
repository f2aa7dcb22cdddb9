"""MURA on the official label files (shoulder counts, studies, study-level aggregation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcolor.data import MURA
from medcolor.errors import ConfigError, DataError
from medcolor.evaluation import aggregate_by_study


def test_mura_shoulder_counts(shared_path) -> None:
    labels = shared_path("data", "labels", "mura")
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
