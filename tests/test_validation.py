"""Every option is checked up front, in one place, with the option's flag and key in a one-line message:
before any data is read or any folder is created."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from medcolor.cli import main
from medcolor.config import RunConfig, StageConfig, check_run_config
from medcolor.errors import OptionError
from medcolor.validation import check_run_files

#: a valid `medcolor train` that needs no download and no data on disk (synthetic is generated)
BASE = ["train", "--dataset", "synthetic", "--backbone", "resnet18", "--weights", "none", "--size", "32"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--subset", "1.5"], r"--subset \(data\.subset\): must be a fraction in \(0, 1\] or a whole number"),
        (["--subset", "0"], r"--subset \(data\.subset\)"),
        (["--batch-size", "0"], r"--batch-size \(data\.batch_size\): must be an integer >= 1 and <= 65536, got 0"),
        (["--lr", "-1"], r"--lr \(stages\[0\]\.lr\): must be a number > 0, got -1\.0"),
        (["--lr", "0"], r"--lr \(stages\[0\]\.lr\): must be a number > 0"),
        (["--lr", "fast"], r"--lr \(stages\[0\]\.lr\): must be a number > 0, got 'fast' \(or 'find'"),
        (["--weight-decay", "-1"], r"--weight-decay \(stages\[0\]\.weight_decay\): must be a number >= 0"),
        (["--num-workers", "-1"], r"--num-workers \(data\.num_workers\): must be an integer >= 0"),
        (["--num-workers", "many"], r"argument --num-workers: expected an integer or auto, got 'many'"),
        (["--mean", "abc"], r"argument --mean: expected a number or 'compute', got 'abc'"),
        (["--std", "0"], r"--std \(data\.std\): must be a number > 0"),
        (["--option", "labels=[A"], r"argument --option: the value of labels is not valid YAML"),
        (["--option", "=1"], r"argument --option: expected KEY=VALUE with a KEY"),
        (["--option", "bogus=1"], r"--option \(data\.options\): dataset 'synthetic' has no option 'bogus'; valid"),
        (["--option", "load_size=3"], r"--option \(data\.options\): 'load_size' is not a dataset option; set data"),
        (["--seed", "-1"], r"--seed \(trainer\.seed\): must be an integer >= 0"),
        (["--bootstrap", "-1"], r"--bootstrap \(trainer\.bootstrap\): must be an integer >= 0"),
        (["--val-every", "0"], r"--val-every \(stages\[0\]\.val_every\): must be an integer >= 1"),
        (["--size", "0"], r"--size \(data\.size\): must be an integer >= 8 and <= 8192, got 0"),
        (["--epochs", "nan"], r"--epochs \(stages\[0\]\.epochs\): must be a number > 0"),
        (["--val", "0.6", "--test", "0.5"], r"--val, --test \(data\.val, data\.test\): leave no training data"),
        (["--lr-min", "2"], r"--lr-min, --lr-max \(.*min_lr, .*max_lr\): the LR range test needs min_lr < max_lr"),
        (["--stages", ""], r"--stages \(stages\): the run has no stages"),
        (["--stages", "color-module,al"], r"--stages \(stages\[1\]\.strategy\): unknown strategy 'al'"),
        (["--colorizer", "pixelshufle"], r"--colorizer \(model\.colorizer\): unknown colorizer.*pixelshuffle"),
        (["--devices", "0"], r"--devices \(trainer\.devices\): must be auto"),
        (["--accelerator", "tpu"], r"--accelerator \(trainer\.accelerator\): must be one of auto, cpu"),
        (["--weights", "missing.pth"], r"--weights \(model\.weights\): missing\.pth does not exist"),
        (["--colorizer-from", "missing.safetensors"], r"--colorizer-from \(model\.colorizer_from\): missing"),
    ],
)
def test_bad_options_fail_up_front_naming_the_flag(tmp_path, capsys, monkeypatch, args, expected):
    import re

    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, *BASE, *args, "--output", "run")
    line = one_line_error(rc, err)
    assert line.startswith("medcolor train: error: ")
    assert re.search(expected, line), line
    assert list(tmp_path.iterdir()) == []  # no run folder, no data generated


def test_yaml_users_see_the_key_and_the_flag(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data: {dataset: synthetic, batch_size: many}\n")
    rc, _, err = run_cli(capsys, "train", "--config", str(cfg))
    line = one_line_error(rc, err)
    assert f"--batch-size (data.batch_size in {cfg}): expected an integer, got 'many'" in line
    cfg.write_text("data: {dataset: synthetic, size: 4}\nmodel: {weights: none}\n")
    rc, _, err = run_cli(capsys, "train", "--config", str(cfg), "--output", str(tmp_path / "r"))
    assert f"--size (data.size in {cfg}): must be an integer >= 8 and <= 8192, got 4" in one_line_error(rc, err)


def test_non_utf8_yaml(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"data: {dataset: synth\xff\xfe}\n")
    rc, _, err = run_cli(capsys, "train", "--config", str(cfg))
    assert f"config file {cfg} is not UTF-8 text" in one_line_error(rc, err)


def test_output_that_is_a_file_or_not_writable(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(capsys, *BASE, "--output", str(tmp_path / "afile"))
    assert "--output (output): " in one_line_error(rc, err) and "is a file; give a folder" in err
    rc, _, err = run_cli(capsys, *BASE, "--output", str(tmp_path / "afile" / "run"))
    assert "afile is a file, not a folder" in one_line_error(rc, err)
    # a read-only file system (simulated: statvfs says so)
    real = os.statvfs

    class ReadOnly:
        def __init__(self, path):
            self.f_flag = real(path).f_flag | os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", ReadOnly)
    rc, _, err = run_cli(capsys, *BASE, "--output", str(tmp_path / "run"))
    assert "is on a read-only file system" in one_line_error(rc, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_a_folder_without_write_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    rc, _, err = run_cli(capsys, *BASE, "--output", str(locked / "run"))
    assert "is not writable" in one_line_error(rc, err)


def test_any_oserror_becomes_one_line_naming_the_path(capsys, monkeypatch):
    import medcolor.training

    def fail(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", "/data/runs/x/config.yaml")

    monkeypatch.setattr(medcolor.training, "train", fail)
    rc, _, err = run_cli(capsys, *BASE, "--output", "/data/runs/x")
    assert one_line_error(rc, err) == "medcolor train: error: Read-only file system: /data/runs/x/config.yaml"


def test_dry_run_prints_the_resolved_configuration_and_creates_nothing(tmp_path, capsys):
    import yaml

    args = ["--subset", "100", "--lr", "0.05", "--output", str(tmp_path / "run"), "--dry-run"]
    rc, out, _ = run_cli(capsys, *BASE, *args)
    assert rc == 0 and not (tmp_path / "run").exists()
    d = yaml.safe_load(out)
    assert d["data"]["subset"] == 100 and d["stages"][0]["lr"] == 0.05


def test_predict_colorize_export_evaluate_outputs(tmp_path, capsys):
    folder, file = tmp_path / "folder", tmp_path / "file.csv"
    folder.mkdir()
    file.write_text("x")
    cases = [
        (["predict", "m.safetensors", "a.png", "-o", str(folder)], f"--output: {folder} is a folder; give a file"),
        (["predict", "m.safetensors", "a.png", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
        (["colorize", "m.safetensors", "a.png", "-o", str(file)], f"--output: {file} is a file; give a folder"),
        (["colorize", "m.safetensors", "a.png", "-o", str(folder), "--size", "0"], "--size: must be an integer >= 8"),
        (["export-colorizer", "run", "-o", str(folder)], f"--output: {folder} is a folder; give a file name ending"),
        (["export-colorizer", "run", "-o", str(file)], f"--output: {file} should end in .safetensors"),
        (["evaluate", "run", "-o", str(file)], f"--output: {file} is a file; give a folder"),
        (["evaluate", "run", "--bootstrap", "-1"], "--bootstrap: must be an integer >= 0"),
        (["stats", "synthetic", "--subset", "1.5"], "--subset: must be a fraction in (0, 1] or a whole number"),
        (["demo", "--epochs", "0"], "--epochs: must be a number > 0"),
        (["demo", "--lr", "-2"], "--lr: must be a number > 0"),
    ]
    for argv, expected in cases:
        rc, _, err = run_cli(capsys, *argv)
        assert expected in one_line_error(rc, err), argv


def test_colorizer_from_with_another_architecture_is_an_error(tmp_path, capsys):
    from medcolor.io import save_colorizer
    from medcolor.model import ColorTransferNet

    t = save_colorizer(ColorTransferNet.create("colorU", "resnet18", 1).colorizer, tmp_path / "T.safetensors")
    args = [*BASE, "--colorizer-from", str(t), "--stages", "last-layer", "--output", str(tmp_path / "r")]
    rc, _, err = run_cli(capsys, *args, "--colorizer", "deconv")
    line = one_line_error(rc, err)
    assert "--colorizer, --colorizer-from (model.colorizer, model.colorizer_from)" in line
    assert f"T is 'deconv' but {t} holds a 'colorU' T" in line
    assert run_cli(capsys, *args, "--colorizer", "colorU", "--dry-run")[0] == 0
    assert run_cli(capsys, *args, "--dry-run")[0] == 0  # T comes from the file


def test_the_python_api_gets_the_same_checks(tmp_path):
    with pytest.raises(OptionError, match=r"^stages\.\*\.lr: must be a number > 0"):
        StageConfig("color-module", lr=0.0)  # checked when it is built
    cfg = RunConfig(output=str(tmp_path / "r"))
    cfg.stages[0].lr = 0.0  # and again by check_run_config, after an assignment
    with pytest.raises(OptionError, match=r"^stages\[0\]\.lr: must be a number > 0") as info:
        check_run_config(cfg)
    assert info.value.keys == ("stages[0].lr",)
    cfg = RunConfig(output=str(tmp_path / "r"))
    cfg.model.weights = str(tmp_path / "none.pth")
    with pytest.raises(OptionError, match=r"model\.weights: .* does not exist"):
        check_run_files(cfg)


def test_safetensors_metadata_is_checked(tmp_path, capsys):
    from safetensors.torch import save_file

    cases = {
        "notjson": "{not json",
        "list": "[1, 2]",
        "noarch": '{"format": "medcolor-model"}',
        "badarch": '{"format": "medcolor-model", "architecture": {"colorizer": "colorU"}}',
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({"a": torch.zeros(1)}, str(path), metadata={"medcolor": header})
        rc, _, err = run_cli(capsys, "predict", str(path), str(path))
        line = one_line_error(rc, err)
        assert str(path) in line and ("JSON" in line or "architecture" in line), line
        rc, _, err = run_cli(capsys, *BASE, "--init-from", str(path), "--dry-run", "--output", str(tmp_path / "r"))
        assert str(path) in one_line_error(rc, err)


def test_data_failure_after_the_checks_leaves_no_run_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    args = ["train", "--dataset", "folder", "--root", str(empty), "--weights", "none", "--size", "32"]
    rc, _, err = run_cli(capsys, *args, "--backbone", "resnet18", "--output", str(out))
    one_line_error(rc, err)
    assert not out.exists()  # so the corrected command is not refused as "another run"
    assert Path(empty).is_dir() and list(empty.iterdir()) == []
