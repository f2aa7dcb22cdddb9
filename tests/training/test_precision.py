"""The precision list is what trains: every value ``trainer.precision`` accepts trains a tiny run on this
machine's CPU, and Lightning precisions medcolor cannot train are refused before anything is written."""

from __future__ import annotations

import pytest

from medcolor.cli import main
from medcolor.config import PRECISIONS

TRAIN = ["train", "--dataset", "synthetic", "--option", "n=48", "--option", "image_size=32", "--size", "32"]
TRAIN += ["--backbone", "resnet18", "--weights", "none", "--colorizer", "colorU", "--iterations", "1"]
TRAIN += ["--lr", "0.01", "--num-workers", "0", "--bootstrap", "0", "--no-progress", "--batch-size", "8"]


@pytest.mark.parametrize("precision", ["64-true", "bf16-true", "16-true", "8-bit"])
@pytest.mark.parametrize("dry", [True, False])
def test_precisions_that_cannot_train_are_refused_up_front(tmp_path, capsys, precision, dry):
    out = tmp_path / "run"
    rc = main([*TRAIN, "--precision", precision, "-o", str(out), *(["--dry-run"] if dry else [])])
    err = capsys.readouterr().err
    assert rc == 2 and "trainer.precision" in err and precision in err and "Traceback" not in err
    assert not out.exists()  # no half-written run


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_listed_precision_trains(tmp_path, capsys, precision):
    out = tmp_path / "run"
    assert main([*TRAIN, "--precision", precision, "-o", str(out)]) == 0, capsys.readouterr().err
    assert (out / "summary.json").is_file()


def test_colorize_size_is_capped_like_trainings(tmp_path, capsys):
    """`colorize --size 100000` used to try to allocate 40 GB; it is refused as train's --size is (8192)."""
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (16, 16)).save(img)
    rc = main(["colorize", "colorU", str(img), "-o", str(tmp_path / "out"), "--size", "100000"])
    err = capsys.readouterr().err
    assert rc == 2 and "--size" in err and "8192" in err
    assert not (tmp_path / "out").exists()
