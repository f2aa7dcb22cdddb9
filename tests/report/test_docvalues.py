"""What a study document reads from run directories (:mod:`medcolor.report.docvalues`): values with their
intervals, paired differences, operating points per test set and the plateau of validation AUC — on run
directories written here with fixed numbers, each expectation computed from those numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medcolor.errors import DataError
from medcolor.report.docvalues import Difference, DocArm, Estimate, Values


def test_estimate_one_repeat_shows_its_own_interval() -> None:
    e = Estimate([0.9183], [0.8901], [0.9412])
    assert str(e) == "91.8 [89.0, 94.1]" and e.n == 1 and e.ci == "[89.0, 94.1]"


def test_estimate_several_repeats_mean_std_and_the_union_of_their_intervals() -> None:
    v, lo, hi = [0.90, 0.92, 0.95], [0.85, 0.88, 0.91], [0.94, 0.96, 0.99]
    e = Estimate(v, lo, hi)
    assert str(e) == f"{np.mean(v) * 100:.1f} ± {np.std(v, ddof=1) * 100:.1f} [85.0, 99.0]"
    # a repeat without a value (no positive image) is left out, with its interval
    e = Estimate([0.5, None, 0.7], [0.4, None, 0.6], [0.6, None, 0.8])
    assert e.n == 2 and e.ci == "[40.0, 80.0]"
    assert str(Estimate([], [], [])) == "n/a"
    assert Estimate([0.5], [None], [None]).ci == "[n/a]"


def test_difference_and_values() -> None:
    assert str(Difference([-0.069])) == "-6.9"
    d = [-0.05, -0.07, -0.09]
    assert str(Difference(d)) == f"{np.mean(d) * 100:+.1f} ± {np.std(d, ddof=1) * 100:.1f}"
    assert str(Difference()) == "n/a"
    assert Values([0.1234, 0.1334]).pm(3) == f"{np.mean([0.1234, 0.1334]):.3f} ± {np.std([0.1234, 0.1334], ddof=1):.3f}"
    assert Values([0.5]).pm(1, 100) == "50.0" and Values().pm() == "n/a"


def _metric(value: float | None, lo: float | None, hi: float | None) -> dict:
    return {"value": value, "ci": [lo, hi], "valid_resamples": 20}


def _entry(tp: int, fp: int, tn: int, fn: int, threshold: float, brier: float, ece: float) -> dict:
    sens, spec = tp / (tp + fn), tn / (tn + fp)
    return {
        "threshold": threshold, "n": tp + fp + tn + fn, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "sensitivity": _metric(sens, sens - 0.1, min(sens + 0.1, 1.0)),
        "specificity": _metric(spec, spec - 0.2, min(spec + 0.1, 1.0)),
        "ppv": _metric(tp / (tp + fp), None, None), "npv": _metric(tn / (tn + fn), None, None),
        "accuracy": _metric((tp + tn) / (tp + fp + tn + fn), None, None),
        "auc": 0.8, "brier": brier, "ece": ece,
    }  # fmt: skip


def _ops(set_key: str, entry: dict | None, left_out: dict | None = None) -> dict:
    return {
        "rule": "youden",
        "thresholds": {},
        "sets": {set_key: {"labels": {"PNEUMONIA": entry} if entry else {}, "left_out": left_out or {}}},
    }


def _run(root: Path, name: str, hist: list[tuple[int, float]], internal: dict, ext: dict | None) -> Path:
    rd = root / name
    (rd / "1-baseline").mkdir(parents=True)
    (rd / "1-baseline" / "history.json").write_text(
        json.dumps([{"step": s, "val_mean_auc": v, "val_auc": {"PNEUMONIA": v}} for s, v in hist])
    )
    stage = {"index": 0, "directory": str(rd / "1-baseline"), "best_step": max(hist, key=lambda h: h[1])[0]}
    (rd / "summary.json").write_text(json.dumps({"stages": [stage]}))
    (rd / "operating_points.json").write_text(json.dumps(_ops("test", internal)))
    if ext is not None:
        (rd / "test_sets" / "nih").mkdir(parents=True)
        (rd / "test_sets" / "nih" / "operating_points.json").write_text(json.dumps(ext))
    return rd


@pytest.fixture
def arm(tmp_path: Path) -> DocArm:
    e1, e2 = _entry(80, 10, 30, 20, 0.41, 0.12, 0.05), _entry(90, 5, 35, 10, 0.52, 0.10, 0.03)
    r1 = _run(
        tmp_path, "c1", [(65, 0.90), (130, 0.95), (195, 0.94)], e1, _ops("nih", _entry(9, 400, 580, 11, 0.41, 0.3, 0.4))
    )
    r2 = _run(
        tmp_path, "c2", [(65, 0.91), (130, 0.93), (195, 0.96)], e2, {"error": "no threshold meets it", "rule": "youden"}
    )
    internal = DocArm("g", "mean", [0.95, 0.96], ["c1", "c2"], [r1, r2], val_values=[0.95, 0.96])
    nih = DocArm("g", "mean", [0.80, 0.85], ["c1", "c2"], [r1, r2], test_set="nih")
    internal._on = nih._on = lambda ts: {"internal": internal, "nih": nih}[ts]
    return internal


def test_operating_points_per_set_from_the_run_directories(arm: DocArm) -> None:
    op = arm.operating()
    assert op.n == 2 and op.rule == "youden" and op.unavailable == []
    assert list(op.threshold) == [0.41, 0.52] and list(op.positives) == [100, 100] and list(op.negatives) == [40, 40]
    sens = [80 / 100, 90 / 100]
    assert str(op.sensitivity) == f"{np.mean(sens) * 100:.1f} ± {np.std(sens, ddof=1) * 100:.1f} [70.0, 100.0]"
    assert op.brier.pm(3) == f"{np.mean([0.12, 0.10]):.3f} ± {np.std([0.12, 0.10], ddof=1):.3f}"
    assert op.ppv.ci == "[n/a]"  # no interval recorded
    nih = arm.operating("nih")
    # the second run's rule could not be met on its validation data: said, not averaged
    assert nih.cells == ["c1"] and nih.unavailable == ["c2: no threshold meets it"]
    assert str(nih.sensitivity) == f"{9 / 20 * 100:.1f} [{(9 / 20 - 0.1) * 100:.1f}, {(9 / 20 + 0.1) * 100:.1f}]"
    assert list(nih.positives) == [20] and list(nih.negatives) == [980]
    assert arm.on("nih").operating().cells == ["c1"]  # the same from the external arm


def test_a_label_left_out_of_a_set_and_a_missing_file_are_named(arm: DocArm, tmp_path: Path) -> None:
    (tmp_path / "c1" / "test_sets" / "nih" / "operating_points.json").write_text(
        json.dumps(_ops("nih", None, {"PNEUMONIA": "one class only"}))
    )
    one = DocArm("g", "PNEUMONIA", [0.8], ["c1"], [tmp_path / "c1"], test_set="nih")
    assert one.operating().unavailable == ["c1: PNEUMONIA has no operating point on nih (one class only)"]
    (tmp_path / "c1" / "operating_points.json").unlink()
    assert arm.operating().unavailable == ["c1: no operating_points.json"]


def test_drop_pairs_the_same_runs(arm: DocArm) -> None:
    d = arm.drop("nih")
    assert list(d) == pytest.approx([0.80 - 0.95, 0.85 - 0.96])
    assert arm.on("nih").auc.n == 2 and arm.val.mean == pytest.approx(0.955)


def test_plateau_best_against_last_validation_step(arm: DocArm) -> None:
    p = arm.plateau()
    assert list(p.best) == [0.95, 0.96] and list(p.best_step) == [130, 195]
    assert list(p.last) == [0.94, 0.96] and list(p.last_step) == [195, 195]
    assert p.still_improving == 1  # the second run's best step is its last
    assert list(p.gap) == pytest.approx([0.94 - 0.95, 0.0])
    assert str(p).startswith("best 95.0 at step 130, last 94.0 at step 195; ")


def test_plateau_of_a_run_without_history_is_a_data_error(arm: DocArm, tmp_path: Path) -> None:
    (tmp_path / "c2" / "1-baseline" / "history.json").unlink()
    with pytest.raises(DataError, match="c2 has no history of stage -1"):
        arm.plateau()
