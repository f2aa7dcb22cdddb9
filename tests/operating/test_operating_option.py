"""The run configuration's ``operating:`` section (threshold rule, temperature scaling): parsed and checked, used by
training for the internal test split and every external set, recorded in ``operating_points.json``; a rule that
cannot be met on validation data is a warning naming the label, recorded instead of failing the run."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcolor.config import OperatingConfig, RunConfig, TestSetConfig
from medcolor.errors import OptionError
from medcolor.operating import apply_temperature, choose_threshold


@pytest.mark.parametrize(
    ("given", "stored"),
    [("youden", "youden"), ("Sensitivity = 0.9", "sensitivity=0.9"), ("specificity:0.95", "specificity=0.95")],
)
def test_threshold_rules_are_parsed_and_normalised(given: str, stored: str) -> None:
    cfg = RunConfig.from_dict({"operating": {"threshold": given, "temperature": "yes"}})
    assert cfg.operating == OperatingConfig(stored, True)
    assert RunConfig.from_dict(cfg.to_dict()).operating == cfg.operating  # config.yaml round trip
    assert RunConfig().operating == OperatingConfig("youden", False)  # the default: Youden's J, no temperature


@pytest.mark.parametrize("bad", ["sensitivity=1.5", "specificity=0", "sens=0.9", "youden=0.5", "sensitivity"])
def test_bad_threshold_rules_name_the_key_and_the_file(bad: str) -> None:
    with pytest.raises(OptionError, match=r"run\.yaml.*operating\.threshold: must be youden, sensitivity=<target>"):
        RunConfig.from_dict({"operating": {"threshold": bad}}, where="run.yaml")
    with pytest.raises(OptionError, match=r"operating: unknown option 'treshold'|treshold"):
        RunConfig.from_dict({"operating": {"treshold": "youden"}}, where="run.yaml")


def test_a_run_uses_its_rule_and_temperature_on_every_test_set(tmp_path: Path, tiny_config, shared_path) -> None:
    from medcolor.training.pipeline import train

    nih = TestSetConfig(
        dataset="chestxray14",
        root=str(shared_path("data", "nih-chestxray14-1000", "images")),
        csv=str(shared_path("data", "labels", "nih", "Data_Entry_2017_v2020.csv.gz")),
        on_missing="present",
        options={"labels": ["Pneumonia"]},
        labels={"Opacity": "Pneumonia"},
    )
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", colorizer="replicate", test_sets={"nih": nih})
    cfg.stages[0].strategy = "baseline"
    cfg.operating = OperatingConfig("specificity=0.8", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = train(cfg).directory
    internal = json.loads((out / "operating_points.json").read_text())
    external = json.loads((out / "test_sets" / "nih" / "operating_points.json").read_text())
    for d in (internal, external):
        if "error" in d:  # a tiny network may not meet the rule for some label: then it is named and recorded
            assert d["rule"] == "specificity=0.8" and "label '" in d["error"]
            continue
        assert d["rule"] == "specificity=0.8" and d["temperature_scaling"]["fitted_on"] == "validation"
        val = pd.read_csv(out / "val" / "predictions.csv")
        for label, th in d["thresholds"].items():
            temp = d["temperature_scaling"]["temperature"][label]
            p = apply_temperature(val[f"prob:{label}"].to_numpy(), temp)
            want = choose_threshold(p, val[f"target:{label}"], "specificity=0.8", label=label)
            assert th["threshold"] == pytest.approx(want.threshold) and th["val_specificity"] >= 0.8
    assert yaml_operating(out) == {"threshold": "specificity=0.8", "temperature": True}


def yaml_operating(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["operating"]


def _predictions(path: Path, probs: np.ndarray, targets: np.ndarray, label: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"path": [f"{i}.png" for i in range(len(probs))], f"target:{label}": targets,
                  f"prob:{label}": probs}).to_csv(path, index=False)  # fmt: skip


def test_an_unmet_rule_on_validation_is_a_warning_naming_the_label(tmp_path: Path, caplog) -> None:
    """Validation scores that rank every positive below every negative: no threshold beats chance (Youden), and
    sensitivity 0.9 is reached only by calling every image positive; the set's file records why."""
    from medcolor.operating import write_set_operating_points

    y = np.array([0, 0, 0, 1, 1, 1], dtype=float)
    _predictions(tmp_path / "val" / "predictions.csv", np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), y, "PNEUMONIA")
    out = tmp_path / "test_sets" / "ext"
    _predictions(out / "predictions.csv", np.array([0.2, 0.4, 0.6, 0.8]), np.array([0, 0, 1, 1.0]), "PNEUMONIA")
    for rule, why in [("youden", "no threshold separates the classes"), ("sensitivity=0.9", "only calling every")]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="medcolor.operating"):
            write_set_operating_points(
                tmp_path / "val" / "predictions.csv",
                out,
                "ext",
                OperatingConfig(rule),
                n_resamples=10,
                what="test set ext",
            )
        (msg,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert msg.startswith("test set ext: no operating points: threshold rule") and "label 'PNEUMONIA'" in msg
        assert why in msg
        d = json.loads((out / "operating_points.json").read_text())
        assert d["rule"] == rule and "label 'PNEUMONIA'" in d["error"] and d["temperature_scaling"] is False
