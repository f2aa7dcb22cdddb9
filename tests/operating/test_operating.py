"""Operating points and calibration (medcolor.operating): thresholds against values derived from scikit-learn's
``roc_curve``, calibration against hand computations on fixed vectors, and the files a run writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from medcolor.operating import (
    ECE_BINNING,
    ThresholdRule,
    ThresholdRuleError,
    apply_temperature,
    brier_score,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    operating_point_metrics,
    operating_points,
    reliability_bins,
    write_run_operating_points,
)


def _scores(n: int = 300, seed: int = 0, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Binary targets and probabilities with ties (rounded to 2 decimals), a fixed seed."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    z = rng.normal(size=n) + separation * y
    return np.round(1 / (1 + np.exp(-z)), 2), y


def _sk_rates(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, float]:
    tn, fp, fn, tp = confusion_matrix(y, (p >= thr).astype(int), labels=[0, 1]).ravel().astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "accuracy": (tp + tn) / len(y),
        }


# ---------------------------------------------------------------------------------------------------- thresholds
def test_youden_threshold_matches_sklearn_roc_curve() -> None:
    p, y = _scores()
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    i = int(np.argmax(tpr - fpr))
    th = choose_threshold(p, y, "youden", label="PNEUMONIA")
    assert th.threshold == thr[i]
    assert th.val_sensitivity == pytest.approx(tpr[i], abs=1e-12)
    assert th.val_specificity == pytest.approx(1 - fpr[i], abs=1e-12)
    assert th.youden_j == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    assert th.n_val == len(y) and th.rule == "youden"
    # no other distinct score gives a larger J (checked straight from confusion matrices)
    best = max(_sk_rates(y, p, t)["sensitivity"] + _sk_rates(y, p, t)["specificity"] - 1 for t in np.unique(p))
    assert th.youden_j == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95])
def test_sensitivity_and_specificity_targets_match_sklearn(target: float) -> None:
    p, y = _scores(seed=1)
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    sens = choose_threshold(p, y, f"sensitivity={target}")
    i = int(np.flatnonzero(tpr >= target)[0])  # the highest threshold reaching the target
    assert sens.threshold == thr[i]
    assert sens.val_sensitivity >= target
    assert sens.val_specificity == pytest.approx(1 - fpr[i])
    higher = np.unique(p)[np.unique(p) > sens.threshold]
    assert higher.size == 0 or _sk_rates(y, p, higher.min())["sensitivity"] < target  # no higher one does

    spec = choose_threshold(p, y, f"specificity:{target}")
    k = int(np.flatnonzero(1 - fpr >= target)[-1])  # the lowest threshold reaching the target
    assert spec.threshold == thr[k]
    assert spec.val_specificity >= target
    lower = np.unique(p)[np.unique(p) < spec.threshold]
    assert lower.size == 0 or _sk_rates(y, p, lower.max())["specificity"] < target


def test_thresholds_on_scikit_learns_documented_example() -> None:
    # roc_curve's docstring example: thresholds inf, 0.8, 0.4, 0.35, 0.1; tpr 0, .5, .5, 1, 1; fpr 0, 0, .5, .5, 1
    p, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert choose_threshold(p, y).threshold == 0.8  # J = 0.5 at 0.8 and 0.35: the higher threshold
    assert choose_threshold(p, y, "sensitivity=0.9").threshold == 0.35
    assert choose_threshold(p, y, "specificity=1").threshold == 0.8
    assert choose_threshold(p, y, "specificity=0.5").threshold == 0.35


def test_rules_that_cannot_be_met_name_the_rule_and_the_best_reachable_value() -> None:
    # the lowest score is a positive image: sensitivity 1 only by calling every image positive
    p, y = np.array([0.1, 0.2, 0.3, 0.9]), np.array([1, 0, 0, 1])
    with pytest.raises(ThresholdRuleError, match=r"sensitivity=1 cannot be met.*best sensitivity reachable .* 0\.5"):
        choose_threshold(p, y, "sensitivity=1", label="Edema")
    # the highest score is a negative image: specificity 1 only by calling none positive
    p, y = np.array([0.1, 0.5, 0.6, 0.9]), np.array([0, 1, 0, 0])
    with pytest.raises(ThresholdRuleError, match=r"specificity=1 cannot be met.*'Edema'.*reachable .* 0\.3333"):
        choose_threshold(p, y, "specificity=1", label="Edema")
    # an inverted classifier: no threshold better than chance
    with pytest.raises(ThresholdRuleError, match=r"youden cannot be met.*best Youden's J 0\.000"):
        choose_threshold([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])
    with pytest.raises(ThresholdRuleError, match="only negative images"):
        choose_threshold([0.1, 0.2], [0, 0])


@pytest.mark.parametrize("text", ["younden", "sensitivity", "sensitivity=1.5", "specificity=0", "youden=0.3", "x=y"])
def test_malformed_rules_are_refused(text: str) -> None:
    with pytest.raises(ThresholdRuleError, match="threshold rule"):
        ThresholdRule.parse(text)


def test_rule_parsing_round_trips() -> None:
    assert ThresholdRule.parse(None) == ThresholdRule("youden")
    assert str(ThresholdRule.parse(" Sensitivity = 0.90 ")) == "sensitivity=0.9"
    assert ThresholdRule.parse("specificity:0.95") == ThresholdRule("specificity", 0.95)


# ------------------------------------------------------------------------------------------ metrics at a threshold
def test_metrics_at_threshold_match_sklearn_confusion_matrix_with_seeded_cis() -> None:
    p, y = _scores(seed=2)
    thr = float(np.median(p))
    m = operating_point_metrics(p, y, thr, n_resamples=300, seed=5)
    want = _sk_rates(y, p, thr)
    tn, fp, fn, tp = confusion_matrix(y, (p >= thr).astype(int)).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    for k, v in want.items():
        assert m[k]["value"] == pytest.approx(v, abs=1e-12)
        lo, hi = m[k]["ci"]
        assert lo <= v <= hi and hi - lo < 0.3
        assert m[k]["valid_resamples"] == 300
    again = operating_point_metrics(p, y, thr, n_resamples=300, seed=5)
    assert again == m  # seeded
    assert operating_point_metrics(p, y, thr, n_resamples=300, seed=6)["sensitivity"]["ci"] != m["sensitivity"]["ci"]


def test_undefined_metrics_are_none_not_nan() -> None:
    m = operating_point_metrics([0.1, 0.2, 0.3], [0, 1, 0], 0.5, n_resamples=50)
    assert m["ppv"]["value"] is None  # no image called positive
    assert m["sensitivity"]["value"] == 0.0 and m["specificity"]["value"] == 1.0
    json.dumps(m, allow_nan=False)


# ---------------------------------------------------------------------------------------------------- calibration
# fixed vectors, binned by hand with the documented rule: bin k holds k/10 < p <= (k+1)/10, the first also p = 0
P = np.array([0.0, 0.1, 0.25, 0.3, 0.7, 0.9, 1.0])
Y = np.array([0, 1, 0, 1, 1, 0, 1])


def test_brier_score_by_hand() -> None:
    hand = (0.0**2 + 0.9**2 + 0.25**2 + 0.7**2 + 0.3**2 + 0.9**2 + 0.0**2) / 7
    assert brier_score(P, Y) == pytest.approx(hand, abs=1e-15)
    # an ignored (NaN) target is left out
    assert brier_score([*P, 0.5], [*Y, np.nan]) == pytest.approx(hand, abs=1e-15)


def test_expected_calibration_error_by_hand() -> None:
    # bin 0: p {0, .1}, y {0, 1}; bin 2: p {.25, .3}, y {0, 1}; bin 6: .7/1; bin 8: .9/0; bin 9: 1.0/1
    hand = (2 * abs(0.05 - 0.5) + 2 * abs(0.275 - 0.5) + abs(0.7 - 1) + abs(0.9 - 0) + abs(1.0 - 1)) / 7
    assert expected_calibration_error(P, Y) == pytest.approx(hand, abs=1e-15)
    bins = reliability_bins(P, Y)
    assert [b["n"] for b in bins] == [2, 0, 2, 0, 0, 0, 1, 0, 1, 1]
    assert bins[2]["bin"] == pytest.approx([0.2, 0.3]) and bins[2]["mean_prob"] == pytest.approx(0.275)
    assert bins[1]["mean_prob"] is None
    assert "equal-width" in ECE_BINNING and "k/n < p <= (k+1)/n" in ECE_BINNING


def test_ece_agrees_with_torchmetrics_away_from_bin_edges() -> None:
    from torchmetrics.functional.classification import binary_calibration_error

    rng = np.random.default_rng(3)
    p = rng.random(500)  # no value on an edge: torchmetrics' [lo, hi) bins and ours agree
    y = (rng.random(500) < p**2).astype(int)
    tm = binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=10, norm="l1")
    assert expected_calibration_error(p, y) == pytest.approx(float(tm), abs=1e-9)


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(scale=2.0, size=20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)  # calibrated at T = 1 on logits z
    overconfident = 1 / (1 + np.exp(-2.5 * z))  # the same ranking, logits 2.5x too large
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.5, rel=0.05)
    scaled = apply_temperature(overconfident, t)
    assert roc_auc_score(y, scaled) == pytest.approx(roc_auc_score(y, overconfident), abs=1e-12)
    assert expected_calibration_error(scaled, y) < expected_calibration_error(overconfident, y) / 3


# ---------------------------------------------------------------------------------------------------- whole sets
def test_multi_label_sets_leave_single_class_labels_out_and_listed() -> None:
    labels = ["A", "B", "C"]
    pa, ya = _scores(200, seed=10)
    pb, yb = _scores(200, seed=11)
    val_p = np.stack([pa, pb, pa], 1)
    val_t = np.stack([ya, yb, np.zeros(200)], 1).astype(float)  # C: negatives only on validation
    val_t[:5, 1] = np.nan  # ignored targets of B
    tp_, ty = _scores(150, seed=12)
    test_p = np.stack([tp_, tp_, tp_], 1)
    test_t = np.stack([ty, np.ones(150), ty], 1).astype(float)  # B: positives only in this set
    ops = operating_points(val_p, val_t, {"test": (test_p, test_t)}, labels, n_resamples=100, seed=0)
    assert set(ops.thresholds) == {"A", "B"}
    assert ops.left_out == {"C": "validation data: only negative images (200)"}
    s = ops.sets["test"]
    assert list(s["labels"]) == ["A"]
    assert s["left_out"] == {"B": "only positive images (150)", "C": "no threshold (validation data: only negative "
                             "images (200))"}  # fmt: skip
    assert s["mean"]["labels"] == ["A"]
    assert s["mean"]["sensitivity"] == s["labels"]["A"]["sensitivity"]["value"]
    assert s["labels"]["A"]["auc"] == pytest.approx(roc_auc_score(ty, tp_), abs=1e-12)
    thr_a = choose_threshold(pa, ya).threshold
    assert s["labels"]["A"]["threshold"] == thr_a
    assert s["labels"]["A"]["sensitivity"]["value"] == pytest.approx(_sk_rates(ty, tp_, thr_a)["sensitivity"])
    json.dumps(ops.to_dict(), allow_nan=False)  # never a NaN anywhere
    assert ops.to_dict()["temperature_scaling"] is None


def test_temperature_scaling_is_recorded_when_on() -> None:
    p, y = _scores(400, seed=20, separation=2.0)
    ops = operating_points(p, y, {"ext": (p, y)}, ["X"], temperature_scaling=True, n_resamples=50)
    d = ops.to_dict()
    assert d["temperature_scaling"]["fitted_on"] == "validation"
    assert d["temperature_scaling"]["temperature"]["X"] == pytest.approx(fit_temperature(p, y))
    e = d["sets"]["ext"]["labels"]["X"]
    assert e["uncalibrated"]["ece"] == pytest.approx(expected_calibration_error(p, y))
    assert e["ece"] <= e["uncalibrated"]["ece"] + 1e-9  # fitted on the same data: no worse
    assert e["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def _write_predictions(path: Path, probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"path": [f"img{i}.png" for i in range(len(probs))]})
    for j, n in enumerate(labels):
        df[f"target:{n}"] = targets[:, j]
    for j, n in enumerate(labels):
        df[f"prob:{n}"] = probs[:, j]
    df.to_csv(path, index=False)


def test_run_files_give_json_and_figures(tmp_path: Path) -> None:
    p, y = _scores(200, seed=30)
    q, z = _scores(120, seed=31)
    _write_predictions(tmp_path / "val" / "predictions.csv", p[:, None], y[:, None].astype(float), ["PNEUMONIA"])
    _write_predictions(tmp_path / "test" / "predictions.csv", q[:, None], z[:, None].astype(float), ["PNEUMONIA"])
    out = write_run_operating_points(tmp_path, n_resamples=100, rule="sensitivity=0.9")
    d = json.loads(out.read_text())
    assert d["rule"] == "sensitivity=0.9" and d["n_validation"] == 200
    assert d["sets"]["test"]["figures"] == {"roc": "roc-test.png", "reliability": "reliability-test.png"}
    for f in ("roc-test.png", "reliability-test.png"):
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    e = d["sets"]["test"]["labels"]["PNEUMONIA"]
    assert e["threshold"] == choose_threshold(p, y, "sensitivity=0.9").threshold
    assert not math.isnan(e["brier"])


def test_run_files_with_other_labels_are_refused(tmp_path: Path) -> None:
    from medcolor.errors import DataError

    p, y = _scores(50, seed=40)
    _write_predictions(tmp_path / "val" / "predictions.csv", p[:, None], y[:, None].astype(float), ["A"])
    _write_predictions(tmp_path / "test" / "predictions.csv", p[:, None], y[:, None].astype(float), ["B"])
    with pytest.raises(DataError, match=r"labels \['B'\] but the validation predictions \['A'\]"):
        write_run_operating_points(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        write_run_operating_points(tmp_path, test_sets=["external"])


@pytest.mark.slow
def test_a_real_run_writes_operating_points_from_its_validation_predictions(
    tmp_path: Path, shared_path, mobilenet_weights: Path
) -> None:
    """A small Kermany run (frozen ImageNet E): ``val/predictions.csv``, ``operating_points.json`` and the figures
    appear; the thresholds and test metrics are those recomputed from the two prediction files."""
    import pandas as pd

    from medcolor.cli import main
    from medcolor.training.rundir import remove_run

    out = tmp_path / "run"
    rc = main(
        [
            *("train", "--dataset", "folder", "--root", str(shared_path("data", "kermany-pneumonia-224"))),
            *("--train-split", "train", "--option", "patient_regex=kermany", "--subset", "160"),
            *("--val", "0.25", "--test", "0.25", "--backbone", "mobilenet_v2", "--weights", str(mobilenet_weights)),
            *("--stages", "baseline", "--lr", "0.05", "--iterations", "6", "--val-every", "3", "--size", "64"),
            *("--batch-size", "16", "--num-workers", "0", "--no-progress", "--bootstrap", "50", "--output", str(out)),
        ]
    )
    assert rc == 0
    d = json.loads((out / "operating_points.json").read_text())
    val = pd.read_csv(out / "val" / "predictions.csv")
    test = pd.read_csv(out / "test" / "predictions.csv")
    assert d["n_validation"] == len(val) == json.loads((out / "data.json").read_text())["val"]
    (label,) = d["thresholds"]
    th = choose_threshold(val[f"prob:{label}"], val[f"target:{label}"], "youden")
    assert d["thresholds"][label]["threshold"] == pytest.approx(th.threshold)
    e = d["sets"]["test"]["labels"][label]
    y, p = test[f"target:{label}"].to_numpy(int), test[f"prob:{label}"].to_numpy()
    for k, v in _sk_rates(y, p, e["threshold"]).items():
        assert e[k]["value"] == pytest.approx(v) if np.isfinite(v) else e[k]["value"] is None
    assert e["auc"] == pytest.approx(json.loads((out / "test" / "metrics.json").read_text())["auc"][label], abs=1e-6)
    assert e["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert (out / "roc-test.png").is_file() and (out / "reliability-test.png").is_file()
    remove_run(out)  # the run layout knows every new file: --overwrite removes them all
    assert not any(out.iterdir())


def test_operating_point_lines_read_the_file_evaluate_prints(tmp_path):
    from medcolor.operating import operating_point_lines

    rate = {"value": 0.9, "ci": [0.8, 0.95]}
    ops = {
        "rule": "youden",
        "temperature_scaling": True,
        "sets": {
            "test": {
                "labels": {
                    "PNEUMONIA": {
                        "threshold": 0.42,
                        **dict.fromkeys(("sensitivity", "specificity"), rate),
                        **{key: {"value": None} for key in ("ppv", "npv", "accuracy")},
                    }
                },
                "left_out": {"Edema": "one class only"},
            }
        },
    }
    path = tmp_path / "operating_points.json"
    path.write_text(json.dumps(ops))
    lines = operating_point_lines(path)
    assert lines[0] == (
        "  test PNEUMONIA: threshold 0.42 (youden on validation, temperature-scaled): sensitivity 90.0 % (80.0-95.0), "
        "specificity 90.0 % (80.0-95.0), ppv n/a, npv n/a, accuracy n/a"
    )
    assert lines[1:] == ["  test Edema: no operating point (one class only)", f"  operating points: {path}"]
    path.write_text(json.dumps({"error": "no threshold reaches sensitivity 0.99"}))
    assert operating_point_lines(path) == ["  no operating points: no threshold reaches sensitivity 0.99"]
    assert operating_point_lines(tmp_path / "missing.json") == [
        "  no operating points (they need the run's val/predictions.csv, and data other than it)"
    ]
