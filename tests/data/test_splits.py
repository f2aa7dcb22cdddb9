"""Patient splits, leak checks and label-proportional subsets on the real CheXpert and NIH labels."""

from __future__ import annotations

import time

import numpy as np
import pytest

from medcolor.data import ChestXray14, check_no_leak, label_counts, label_subset, patient_split, subset_draws
from medcolor.data.datasets import NIH_LABELS
from medcolor.errors import ConfigError, DataError

STATES = ["positive", "negative", "uncertain", "blank"]


def _max_deviation(raw: np.ndarray, idx: np.ndarray) -> float:
    full = label_counts(raw)[STATES].to_numpy(dtype=np.float64)
    sub = label_counts(raw[idx])[STATES].to_numpy(dtype=np.float64)
    return float(np.abs(sub - full * len(idx) / len(raw)).max())


# ------------------------------------------------------------------------------------------ patient splits


def test_patient_split_whole_patients_sizes_and_determinism(nih_1000) -> None:
    pids = nih_1000.patient_ids
    parts = patient_split(pids, seed=0)
    assert list(parts) == ["train", "val", "test"]
    allidx = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(allidx), np.arange(len(pids)))  # a partition
    for v in parts.values():
        assert np.all(np.diff(v) > 0)  # sorted, unique
    check_no_leak(parts, pids)
    _, counts = np.unique(pids, return_counts=True)
    for name, frac in {"train": 0.8, "val": 0.1, "test": 0.1}.items():  # within one patient of the target
        assert abs(len(parts[name]) - frac * len(pids)) <= counts.max()
    again = patient_split(pids, seed=0)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = patient_split(pids, seed=1)
    assert not np.array_equal(parts["test"], other["test"])


def test_patient_split_options() -> None:
    pids = np.repeat([f"p{i}" for i in range(50)], 3)
    two = patient_split(pids, {"train": 0.7, "test": 0.3}, seed=2)
    assert set(two) == {"train", "test"} and len(two["train"]) == 105 and len(two["test"]) == 45
    with pytest.raises(ConfigError, match="sum to 1"):
        patient_split(pids, {"train": 0.8, "val": 0.1})
    with pytest.raises(ConfigError, match=">= 0"):
        patient_split(pids, {"train": 1.2, "val": -0.2})
    tiny = patient_split(["a", "b", "c"], seed=0)  # every split gets a patient when possible
    assert all(len(v) == 1 for v in tiny.values())


def test_check_no_leak_names_patients_and_splits() -> None:
    pids = np.array(["p1", "p1", "p2", "p3", "p3", "p4"])
    check_no_leak({"train": [0, 1, 2], "test": [3, 4, 5]}, pids)
    with pytest.raises(DataError) as e:
        check_no_leak({"train": [0, 2, 3], "val": [1], "test": [4, 5]}, pids)
    msg = str(e.value)
    assert "2 patient(s)" in msg and "'p1' in train, val" in msg and "'p3' in train, test" in msg
    assert "patient_split" in msg


# ------------------------------------------------------------------------------------------ label subsets


@pytest.mark.parametrize("fraction", [0.001, 0.01, 0.1])
def test_label_subset_chexpert_proportions(chexpert_all, fraction: float) -> None:
    raw = chexpert_all.raw_labels
    t0 = time.perf_counter()
    idx = label_subset(raw, fraction=fraction, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    assert len(idx) == round(fraction * len(raw)) and np.all(np.diff(idx) > 0)
    assert _max_deviation(raw, idx) <= 1.0
    # uncertain cases are kept in proportion too (the paper's Fig. 5)
    sub = label_counts(raw[idx])
    assert (sub["uncertain"] > 0).all()


def test_label_subset_seeds(chexpert_all) -> None:
    raw = chexpert_all.raw_labels
    a = label_subset(raw, fraction=0.01, seed=5)
    assert np.array_equal(a, label_subset(raw, fraction=0.01, seed=5))
    b = label_subset(raw, fraction=0.01, seed=6)
    assert len(a) == len(b) and not np.array_equal(a, b)
    assert np.array_equal(label_subset(raw, fraction=1.0), np.arange(len(raw)))


def test_label_subset_counts_and_empty(chexpert_all) -> None:
    raw = chexpert_all.raw_labels
    for count in (1, 7, 500):
        idx = label_subset(raw, count=count, seed=1)
        assert len(idx) == count and _max_deviation(raw, idx) <= 1.0
    with pytest.raises(DataError, match=r"empty subset.*smallest valid fraction is 2\.24e-06.*count=1"):
        label_subset(raw, fraction=1e-6)
    with pytest.raises(DataError, match="empty subset"):
        label_subset(raw, count=0)
    with pytest.raises(ConfigError, match="exactly one"):
        label_subset(raw)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        label_subset(raw, fraction=1.5)


def test_label_subset_nih(nih_csv, nih_1000) -> None:
    full = ChestXray14(csv=nih_csv, labels=NIH_LABELS)  # all 112,120 rows, 14 findings
    for fraction in (0.001, 0.01, 0.1):
        idx = label_subset(full.raw_labels, fraction=fraction, seed=0)
        assert _max_deviation(full.raw_labels, idx) <= 1.0
    idx = label_subset(nih_1000.raw_labels, fraction=0.1, seed=0)
    assert len(idx) == 100 and _max_deviation(nih_1000.raw_labels, idx) <= 1.0


def test_subset_draws(nih_1000) -> None:
    draws = subset_draws(nih_1000.raw_labels, [0.1, 50], draws=3, seed=0)
    assert sorted(draws, key=str) == sorted([(0.1, 0), (0.1, 1), (0.1, 2), (50, 0), (50, 1), (50, 2)], key=str)
    assert len(draws[(0.1, 0)]) == 100 and len(draws[(50, 2)]) == 50
    assert not np.array_equal(draws[(0.1, 0)], draws[(0.1, 1)])
    again = subset_draws(nih_1000.raw_labels, [0.1], draws=2, seed=0)
    assert np.array_equal(again[(0.1, 1)], draws[(0.1, 1)])
    for k, idx in draws.items():
        assert _max_deviation(nih_1000.raw_labels, idx) <= 1.0, k
