"""The command line's own parts: the one flag -> config-key table and the console logging."""

from __future__ import annotations

import argparse
import logging

import pytest

from medcolor.cli import CONFIG_FLAGS, apply_flags, build_parser, configure_logging
from medcolor.config import RunConfig

#: flags of `medcolor train` that are not configuration keys
TRAIN_ONLY = {"help", "config", "resume", "overwrite", "dry_run"}
#: flags of `medcolor evaluate` that are not configuration keys
EVALUATE_ONLY = {"help", "model", "config", "split", "bootstrap", "precision", "output", "test_set"}


def _subparser(name: str) -> argparse.ArgumentParser:
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _dests(p: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in p._actions}


def test_every_train_flag_is_in_the_one_table():
    from medcolor.config import config_fields, section_of

    assert _dests(_subparser("train")) - TRAIN_ONLY == set(CONFIG_FLAGS)
    values = {k for k, _, _, tp in config_fields(RunConfig) if section_of(tp) is None and "test_sets" not in k}
    assert set(CONFIG_FLAGS.values()) == values - {"stages.*.strategy"} | {"stages"}  # every value has its flag


def test_evaluate_data_and_operating_flags_come_from_the_same_table():
    p = _subparser("evaluate")
    config_flags = _dests(p) - EVALUATE_ONLY
    assert {CONFIG_FLAGS[d].split(".")[0] for d in config_flags} == {"data", "operating"}
    a = p.parse_args(["run", "--dataset", "folder", "--root", "/x", "--option", "labels=[A]", "--batch-size", "4"])
    d = apply_flags({}, a, sections=("data",))
    assert d == {"data": {"dataset": "folder", "root": "/x", "options": {"labels": ["A"]}, "batch_size": 4}}
    a = p.parse_args(["run", "--threshold", "sensitivity=0.9", "--temperature"])
    operating = apply_flags({}, a, sections=("operating",))
    assert operating == {"operating": {"threshold": "sensitivity=0.9", "temperature": True}}


def test_flags_with_converted_values_and_exclusive_keys():
    a = _subparser("train").parse_args(["--test", "none", "--val", "valid", "--mean", "compute", "--iterations", "5"])
    d = apply_flags({"stages": [{"strategy": "all", "epochs": 2}], "data": {"test": 0.2}}, a)
    assert d["data"] == {"test": None, "val": "valid", "mean": "compute"}
    assert d["stages"] == [{"strategy": "all", "iterations": "5"}]  # the flag's text: the config parses it
    assert RunConfig.from_dict(d).stages[0].length.iterations == 5


@pytest.fixture
def console():
    logger = logging.getLogger("medcolor")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def test_console_logging_prints_info_as_plain_lines(console, capsys):
    configure_logging(verbose=False)
    configure_logging(verbose=False)  # twice: still one handler
    log = logging.getLogger("medcolor.training.pipeline")
    log.info("[all] 10 iterations")
    log.debug("hidden")
    log.warning("careful")
    out, err = capsys.readouterr()
    assert out == "[all] 10 iterations\n" and err == "careful\n"
    configure_logging(verbose=True)
    log.debug("plan")
    assert capsys.readouterr().out == "medcolor.training.pipeline: plan\n"


def test_predict_finds_the_files_the_folder_dataset_finds(tmp_path):
    from medcolor.data import readers
    from medcolor.inference import collect_images

    for name in ("a.png", "b.webp", "c.dic", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = {p.name for p in collect_images([tmp_path])}
    assert found == {p.name for p in tmp_path.iterdir() if p.suffix.lower() in readers.IMAGE_EXTENSIONS}
    assert found == {"a.png", "b.webp", "c.dic"}


def test_text_flags_keep_their_text_and_the_config_parses_numbers():
    from medcolor.cli.parser import config_from_args

    a = build_parser().parse_args(["train", "--name", "007", "--weights", "1e3", "--devices", "2", "--test", "none"])
    cfg = config_from_args(a)
    assert (cfg.name, cfg.model.weights) == ("007", "1e3")  # were read as the numbers 7 and 1000.0
    assert cfg.trainer.devices == 2 and cfg.data.test is None


def test_stats_prints_counts_subset_mean_std_and_plots_on_kermany(shared_path, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from medcolor.cli import main

    monkeypatch.setattr("medcolor.cli.quiet_lightning", lambda: None)  # importing Lightning takes seconds
    root, plot = shared_path("data", "kermany-pneumonia-224"), tmp_path / "fig5.png"
    argv = ["stats", "folder", "--root", str(root), "--split", "train", "--option", "patient_regex=kermany"]
    argv += ["--subset", "50", "--seed", "1", "--mean-std", "--max-images", "8", "--size", "32", "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("folder: 5216 images, ") and out[0].endswith(" patients")
    assert out[1].split() == ["positive", "negative", "uncertain", "blank", "total"]
    assert out[2].split() == ["label"] and out[3].split()[0] == "PNEUMONIA" and out[3].split()[-1] == "5216"
    sub = out.index("subset (50 images, seed 1):")
    assert out[sub + 3].split()[0] == "PNEUMONIA" and out[sub + 3].split()[-1] == "50"
    assert out[-2] == f"plot: {plot}" and Image.open(plot).format == "PNG"
    mean, std = (float(w.rstrip(",")) for w in out[-1].split()[2:5:2])
    assert 0 < mean < 1 and 0 < std < 1
    assert out[-1].endswith(f"(over 8 images; use --mean {mean:.4f} --std {std:.4f})")
