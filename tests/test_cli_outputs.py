"""Outputs of predict / colorize / export-colorizer never replace an input or a run's own files, and an
empty output is refused (it used to mean the current folder); nothing is written when refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from medcolor.cli import main
from medcolor.training.rundir import RUN_MARKER


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    img = tmp_path / "x.png"
    Image.new("L", (16, 16), 100).save(img)
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_MARKER).write_text('{"format": "medcolor-run"}')
    (run / "model.safetensors").write_bytes(b"the run's network")
    return img, run


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["predict", "{run}", "{img}", "-o", "{img}"], "is also an input"),
        (["predict", "{run}/model.safetensors", "{img}", "-o", "{run}/model.safetensors"], "is also an input"),
        (["colorize", "colorU", "{img}", "-o", ""], "is empty"),
        (["colorize", "{run}", "{img}", "-o", "{run}/colors"], "inside the medcolor run"),
        (["export-colorizer", "{run}", "-o", "{run}/model.safetensors"], "inside the medcolor run"),
        (["export-colorizer", "{run}", "-o", "{run}/1-color-module/t.safetensors"], "inside the medcolor run"),
    ],
)
def test_an_output_that_would_replace_an_input_or_a_runs_file_is_refused(files, tmp_path, capsys, argv, message):
    img, run = files
    before = snapshot(tmp_path)
    rc = main([a.format(img=img, run=run) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and "--output" in err and message in err and "Traceback" not in err
    assert snapshot(tmp_path) == before
