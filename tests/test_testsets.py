"""External test sets (``test_sets:``, medcolor.testsets): a tiny synthetic run tested on the NIH 1000 folder and the
COVID-19 collection of ../shared/data; label mapping, one-class labels, overlap, and ``evaluate --test-set``."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from medcolor.config import RunConfig, TestSetConfig
from medcolor.errors import DataError, OptionError
from medcolor.testsets import NOT_IN_SET, ONE_CLASS, find_overlap, map_labels

COVID = {
    "path_column": "filename",
    "category_column": "finding",
    "separator": ",",
    "ignore": ["todo"],
    "patient_column": "patientid",
    "on_duplicate": "drop",
}
#: every finding of the collection's lateral views (besides "todo")
LATERAL_FINDINGS = ["Bacterial", "COVID-19", "Influenza", "Klebsiella", "Legionella", "Lipoid"]
LATERAL_FINDINGS += ["Mycoplasma Bacterial Pneumonia", "Pneumocystis", "Pneumonia", "Streptococcus", "Varicella"]


def _sets(shared_path) -> dict:
    nih = shared_path("data", "nih-chestxray14-1000", "images")
    nih_csv = shared_path("data", "labels", "nih", "Data_Entry_2017_v2020.csv.gz")
    covid = shared_path("data", "covid-chestxray")
    return {
        "nih": {
            "dataset": "chestxray14",
            "root": str(nih),
            "csv": str(nih_csv),
            "on_missing": "present",
            "options": {"labels": ["Pneumonia", "Cardiomegaly"]},
            "labels": {"Opacity": "Pneumonia", "Enlarged heart": "cardiomegaly"},  # any case
        },
        "covid": {
            "dataset": "csv",
            "root": str(covid / "images"),
            "csv": str(covid / "metadata.csv"),
            "options": COVID | {"positive": ["COVID-19", "Pneumonia"], "positive_name": "opacity", "views": ["PA"]},
        },
        # lateral views, every finding there counted positive: the mapped label has positives only
        "one-class": {
            "dataset": "csv",
            "root": str(covid / "images"),
            "csv": str(covid / "metadata.csv"),
            "options": COVID | {"positive": LATERAL_FINDINGS, "positive_name": "Opacity", "views": ["L"]},
        },
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_config, shared_path):
    from medcolor.training.pipeline import train

    tmp = tmp_path_factory.mktemp("tsets")
    cfg = tiny_config(tmp / "run", tmp / "data")
    cfg.test_sets = RunConfig.from_dict({"test_sets": _sets(shared_path)}).test_sets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(cfg)
    return result


def test_a_run_with_external_sets_writes_metrics_per_set(run) -> None:
    out = run.directory
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test_sets"]) == {"nih", "covid", "one-class"}
    assert set(summary["test"]) <= set(summary["test_sets"]["nih"])  # the shape of the internal test's entry
    for name in ("nih", "covid"):
        folder = out / "test_sets" / name
        m = json.loads((folder / "metrics.json").read_text())
        assert m == summary["test_sets"][name] == run.test_sets[name]
        pred = pd.read_csv(folder / "predictions.csv")
        assert len(pred) == m["n_samples"]
        # the AUC of a mapped label is scikit-learn's on the written predictions
        t = pred["target:Opacity"].to_numpy()
        keep = ~np.isnan(t)
        assert m["auc"]["Opacity"] == pytest.approx(roc_auc_score(t[keep], pred["prob:Opacity"][keep]), abs=1e-6)
        assert m["left_out"]["Fine texture"] == NOT_IN_SET  # no label of the set maps onto it
        assert pred["target:Fine texture"].isna().all()
        assert m["overlap"]["count"] == 0
        ops = json.loads((folder / "operating_points.json").read_text())
        assert "error" in ops or set(ops["sets"][name]["labels"]) <= set(m["labels_mapped"])
    nih = summary["test_sets"]["nih"]
    assert nih["n_samples"] == 1000 and nih["labels_mapped"] == {
        "Opacity": "Pneumonia",
        "Enlarged heart": "Cardiomegaly",
    }
    assert nih["labels_in_mean"] == 2
    assert nih["mean_auc"] == pytest.approx(np.mean([nih["auc"]["Opacity"], nih["auc"]["Enlarged heart"]]))
    covid = summary["test_sets"]["covid"]
    assert covid["labels_mapped"] == {"Opacity": "opacity"}
    assert covid["mean_auc"] == pytest.approx(covid["auc"]["Opacity"])


def test_a_label_with_one_class_in_a_set_is_listed_not_nan(run) -> None:
    m = run.test_sets["one-class"]
    assert m["left_out"] == {"Opacity": ONE_CLASS, "Fine texture": NOT_IN_SET, "Enlarged heart": NOT_IN_SET}
    assert m["auc"]["Opacity"] is None and m["mean_auc"] is None and m["labels_in_mean"] == 0
    text = (run.directory / "test_sets" / "one-class" / "metrics.json").read_text()
    assert "NaN" not in text


def test_read_run_gives_the_test_sets_back(run) -> None:
    from medcolor.training.rundir import read_run

    assert read_run(run.directory).test_sets == run.test_sets


def test_a_set_none_of_whose_labels_map_is_refused(tmp_path, tiny_config, shared_path) -> None:
    from medcolor.training.pipeline import train

    nih = _sets(shared_path)["nih"] | {"labels": {}, "options": {}}
    cfg = tiny_config(tmp_path / "run", tmp_path / "data")
    cfg.test_sets = {"nih": TestSetConfig(**nih)}
    with warnings.catch_warnings(), pytest.raises(DataError) as err:
        warnings.simplefilter("ignore")
        train(cfg)
    msg = str(err.value)
    assert "test_sets.nih.labels" in msg and "Opacity" in msg and "Atelectasis" in msg  # run's and set's labels
    assert not (tmp_path / "run" / "model.safetensors").exists()  # refused before training


def test_map_labels_names_the_option() -> None:
    assert map_labels("s", ["PNEUMONIA", "Edema"], ["Pneumonia", "Effusion"], {}) == {"PNEUMONIA": "Pneumonia"}
    with pytest.raises(OptionError, match=r"test_sets\.s\.labels.*'Edma'"):
        map_labels("s", ["PNEUMONIA"], ["Pneumonia"], {"Edma": "Edema"})
    with pytest.raises(DataError, match=r"maps 'PNEUMONIA' to 'Pneu'.*\['Pneumonia'\]"):
        map_labels("s", ["PNEUMONIA"], ["Pneumonia"], {"PNEUMONIA": "Pneu"})


def _overlapping_set(data_dir: Path, **extra) -> dict:
    from medcolor.data.datasets.synthetic import CSV_OPTIONS

    return {
        "dataset": "csv",
        "root": str(data_dir),
        "csv": str(data_dir / "labels.csv"),
        "options": CSV_OPTIONS,
    } | extra


def test_overlap_with_the_training_data_is_refused_or_allowed(tmp_path, tiny_config) -> None:
    from medcolor.training.pipeline import train

    data = tmp_path / "data"
    cfg = tiny_config(tmp_path / "run", data)
    train(cfg, evaluate_test=False)  # writes the synthetic images; the same files as a "test set" overlap
    cfg = tiny_config(tmp_path / "run2", data)
    cfg.test_sets = {"same": TestSetConfig(**_overlapping_set(data))}
    with warnings.catch_warnings(), pytest.raises(DataError) as err:
        warnings.simplefilter("ignore")  # the csv dataset warns about the patient column
        train(cfg)
    msg = str(err.value)
    assert "test set 'same' shares" in msg and "allow_overlap" in msg and "images/" in msg
    n_train_val = 120 - 24  # synthetic n=120, test 0.2 of the patients (about 24 images) is not train/val
    shared = int(msg.split("shares ")[1].split(" ")[0])
    assert 0.6 * n_train_val < shared < 120
    cfg.test_sets = {"same": TestSetConfig(**_overlapping_set(data, allow_overlap=True))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(cfg, overwrite=True)
    assert res.test_sets["same"]["overlap"]["count"] == shared
    assert res.test_sets["same"]["overlap"]["by_content"] == shared


def test_overlap_by_patient_id_of_the_same_dataset_kind(shared_path) -> None:
    from medcolor.data import FolderDataset

    kermany = FolderDataset(shared_path("data", "kermany-pneumonia-224"), split="train", patient_regex="kermany")
    a, b = kermany.subset(np.arange(0, 40)), kermany.subset(np.arange(40, 80))
    assert find_overlap(b, [a], same_kind=True)["by_content"] == 0
    shared_patients = len(set(a.patient_ids) & set(b.patient_ids))
    same = int(np.isin(b.patient_ids, a.patient_ids).sum())
    assert find_overlap(b, [a], same_kind=True)["by_patient"] == same
    assert find_overlap(b, [a], same_kind=False)["by_patient"] == 0
    assert (shared_patients > 0) == (same > 0)


def test_evaluate_a_finished_run_on_two_sets(run, tmp_path, shared_path, capsys) -> None:
    import medcolor
    from medcolor.cli import main

    sets = _sets(shared_path)
    metrics, _ = medcolor.evaluate(run.directory, test_sets={"nih": sets["nih"]}, output=tmp_path / "api")
    assert metrics["test_sets"]["nih"]["auc"] == run.test_sets["nih"]["auc"]  # the same network, the same images
    assert (tmp_path / "api" / "test_sets" / "nih" / "predictions.csv").is_file()
    files = {}
    for name in ("nih", "covid"):
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(sets[name]))
    argv = ["evaluate", str(run.directory), "-o", str(tmp_path / "cli"), "--bootstrap", "0"]
    argv += [x for n in files for x in ("--test-set", f"{n}={files[n]}")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test set nih: mean AUC" in out and "test set covid: mean AUC" in out
    for name in ("nih", "covid"):
        m = json.loads((tmp_path / "cli" / "test_sets" / name / "metrics.json").read_text())
        assert m["auc"] == run.test_sets[name]["auc"]
        assert not math.isnan(m["mean_auc"])
    assert main(["evaluate", str(run.directory), "--test-set", f"internal={files['nih']}"]) == 2  # a reserved name
    assert "'internal'" in capsys.readouterr().err
