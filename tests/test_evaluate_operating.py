"""``medcolor evaluate`` with operating points: ``--threshold`` / ``--temperature`` (the ``operating:`` section, as
``train`` has them), thresholds chosen on the run's validation predictions and applied to the evaluated data.  A tiny
real run on Kermany (64 training images, 32 px, 2 iterations) trained with ``sensitivity=0.9``."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from medcolor.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_path, mobilenet_weights) -> Path:
    from medcolor.config import RunConfig
    from medcolor.training.pipeline import train

    tmp = tmp_path_factory.mktemp("evop")
    cfg = RunConfig.from_dict(
        {
            "data": {
                "dataset": "folder",
                "root": str(shared_path("data", "kermany-pneumonia-224")),
                "train_split": "train",
                "options": {"patient_regex": "kermany"},
                "subset": 64,
                "val": 0.02,
                "test": 0.02,
                "size": 32,
                "batch_size": 16,
                "num_workers": 0,
                "augment": False,
            },
            "model": {"backbone": "mobilenet_v2", "weights": str(mobilenet_weights), "colorizer": "replicate"},
            "stages": [{"strategy": "baseline", "lr": 0.02, "iterations": 2, "val_every": 2}],
            "trainer": {"precision": "32-true", "bootstrap": 20, "progress": False},
            "operating": {"threshold": "sensitivity=0.9"},
            "output": str(tmp / "run"),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(cfg).directory


def _columns(path: Path, label: str) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(path)
    return df[f"prob:{label}"].to_numpy(), df[f"target:{label}"].to_numpy().astype(int)


def _sklearn_threshold(probs: np.ndarray, targets: np.ndarray, rule: str) -> float:
    """The threshold of ``rule`` read off scikit-learn's ROC points (thresholds in decreasing order)."""
    fpr, tpr, thr = roc_curve(targets, probs, drop_intermediate=False)
    if rule == "youden":
        return float(thr[np.argmax(tpr - fpr)])
    return float(thr[np.flatnonzero(tpr >= 0.9)[0]])  # sensitivity=0.9: the first (highest) that reaches it


def _without_figures(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "figures"}


def test_evaluate_with_a_rule_gives_the_threshold_train_chose(run: Path, tmp_path: Path, capsys) -> None:
    trained = json.loads((run / "operating_points.json").read_text())
    assert trained["rule"] == "sensitivity=0.9", trained.get("error")
    (label,) = trained["thresholds"]
    vp, vt = _columns(run / "val" / "predictions.csv", label)
    # with the rule given, and without it (the run's own rule): the threshold train chose, on the same images
    for argv in (["--threshold", "sensitivity=0.9"], []):
        out = tmp_path / ("flag" if argv else "own")
        assert main(["evaluate", str(run), "-o", str(out), "--bootstrap", "20", *argv]) == 0
        printed = capsys.readouterr().out
        ev = json.loads((out / "operating_points.json").read_text())
        assert ev["rule"] == "sensitivity=0.9" and ev["thresholds"] == trained["thresholds"]
        assert _without_figures(ev["sets"]["test"]) == _without_figures(trained["sets"]["test"])
        th = ev["thresholds"][label]["threshold"]
        assert th == pytest.approx(_sklearn_threshold(vp, vt, "sensitivity=0.9"))
        p, t = _columns(out / "predictions.csv", label)
        e = ev["sets"]["test"]["labels"][label]
        assert e["sensitivity"]["value"] == pytest.approx(((p >= th) & (t == 1)).sum() / (t == 1).sum())
        assert e["specificity"]["value"] == pytest.approx(((p < th) & (t == 0)).sum() / (t == 0).sum())
        assert e["sensitivity"]["ci"][0] <= e["sensitivity"]["value"] <= e["sensitivity"]["ci"][1]
        assert (out / "roc.png").is_file() and (out / "reliability.png").is_file()
        assert f"test {label}: threshold {th:.4g} (sensitivity=0.9 on validation): sensitivity" in printed
    # another rule: Youden's J on the same validation predictions, as scikit-learn's ROC points give it
    assert main(["evaluate", str(run), "-o", str(tmp_path / "youden"), "--threshold", "youden"]) == 0
    ev = json.loads((tmp_path / "youden" / "operating_points.json").read_text())
    assert ev["rule"] == "youden"
    assert ev["thresholds"][label]["threshold"] == pytest.approx(_sklearn_threshold(vp, vt, "youden"))


def test_temperature_alone_keeps_the_runs_threshold_rule(run: Path, tmp_path: Path) -> None:
    """The flags go over the run's own ``operating:`` section: ``--temperature`` alone scales, with the run's rule."""
    assert main(["evaluate", str(run), "-o", str(tmp_path / "t"), "--bootstrap", "20", "--temperature"]) == 0
    ev = json.loads((tmp_path / "t" / "operating_points.json").read_text())
    assert ev["rule"] == "sensitivity=0.9"
    assert ev["temperature_scaling"]["fitted_on"] == "validation" and ev["temperature_scaling"]["temperature"]


def test_evaluate_model_sets_operating_keys_over_the_runs_own_section(run: Path, tmp_path: Path) -> None:
    """In Python the same: a mapping of ``operating:`` keys goes over the run's section (an OperatingConfig
    replaces it); a bad key or value is refused before the network is read."""
    from medcolor.config import OperatingConfig
    from medcolor.errors import OptionError
    from medcolor.inference import evaluate_model

    for operating, rule in (({"temperature": True}, "sensitivity=0.9"), (OperatingConfig(), "youden")):
        out = tmp_path / rule
        evaluate_model(run, output=out, bootstrap=20, progress=False, operating=operating)
        ev = json.loads((out / "operating_points.json").read_text())
        assert ev["rule"] == rule and bool(ev.get("temperature_scaling")) == (rule != "youden")
    with pytest.raises(OptionError, match=r"operating\.threshold"):
        evaluate_model(tmp_path / "missing", operating={"threshold": "sens=0.9"})


def test_a_rule_the_validation_data_cannot_meet_names_threshold(run: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    val = pd.read_csv(copy / "val" / "predictions.csv")
    prob = next(c for c in val.columns if c.startswith("prob:"))
    val[prob] = 0.5  # no threshold separates the classes: Youden's J is 0, sensitivity 0.9 needs every image
    val.to_csv(copy / "val" / "predictions.csv", index=False)
    for rule in ("youden", "sensitivity=0.9"):
        assert main(["evaluate", str(copy), "-o", str(tmp_path / rule), "--threshold", rule]) == 2
        err = capsys.readouterr().err
        assert f"--threshold (operating.threshold): threshold rule {rule} cannot be met" in err
        assert "choose a rule the validation data allow" in err
        assert not (tmp_path / rule).exists()  # refused before anything was predicted


def test_a_rule_for_a_model_outside_its_run_is_refused(run: Path, tmp_path: Path, capsys, shared_path) -> None:
    bare = tmp_path / "bare" / "model.safetensors"
    bare.parent.mkdir()
    shutil.copy(run / "model.safetensors", bare)
    root = shared_path("data", "kermany-pneumonia-224", "train")
    argv = ["evaluate", str(bare), "--dataset", "folder", "--root", str(root), "--threshold", "specificity=0.9"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--threshold, --temperature (operating.threshold, operating.temperature)" in err
    assert f"{bare} is not inside a run directory" in err and "evaluate the run directory" in err


def test_a_malformed_rule_is_refused_before_the_network_is_read(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "missing"), "--threshold", "sens=0.9"]) == 2
    assert "--threshold (operating.threshold): must be youden, sensitivity=<target>" in capsys.readouterr().err


def test_evaluate_help_lists_the_operating_flags(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "operating points:" in out and "--threshold THRESHOLD" in out and "--temperature" in out
    assert "without these flags, the run's own operating: section" in " ".join(out.split())
