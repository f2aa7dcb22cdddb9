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


# ------------------------------------------------------------------ unwritable outputs, every command with -o
#: every command with -o: (argv before -o, what -o must be: a file or a folder)
OUTPUT_COMMANDS = {
    "predict": (["predict", "{model}", "{img}"], "file"),
    "evaluate": (["evaluate", "{model}"], "folder"),
    "colorize": (["colorize", "{model}", "{img}"], "folder"),
    "explain": (["explain", "{model}", "{img}"], "folder"),
    "export": (["export", "{model}"], "folder"),
    "export-colorizer": (["export-colorizer", "{model}"], "file"),
    "demo": (["demo"], "folder"),
    "study run": (["study", "run", "{spec}"], "folder"),
    "study report": (["study", "report", "{tmp}"], "folder"),
    "study document": (["study", "document", "{spec}", "--study", "a={tmp}"], "file"),
}


def _unwritable(kind: str, tmp_path: Path, img: Path) -> dict[str, str]:
    """Outputs no command can write: under a file, a folder where a file is wanted (or the reverse), and a
    place where no file can be created although the permission bits allow it (/proc, as root too)."""
    cases = {"under a file": f"{img}/out" + (".safetensors" if kind == "file" else "")}
    cases["wrong kind"] = str(tmp_path) if kind == "file" else str(img)
    if Path("/proc/version").is_file():
        cases["/proc file"] = "/proc/version"
        cases["/proc new"] = "/proc/medcolor-out.safetensors"
    return cases


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_an_unwritable_output_is_named_with_its_option_before_any_work(files, tmp_path, capsys, command):
    img, _ = files
    argv, kind = OUTPUT_COMMANDS[command]
    spec = tmp_path / "spec.yaml"
    spec.write_text("study: s\n")
    fill = {"model": tmp_path / "missing-model.safetensors", "img": img, "spec": spec, "tmp": tmp_path}
    for case, out in _unwritable(kind, tmp_path, img).items():
        before = snapshot(tmp_path)
        rc = main([a.format(**fill) for a in argv] + ["-o", out])
        err = capsys.readouterr().err
        line = err.strip().splitlines()[-1] if err.strip() else ""
        # the option and the user's path, never a temporary file; refused before the (missing) model is read
        assert rc == 2, (case, err)
        assert "-o/--output" in line and out in line, (case, line)
        assert ".tmp" not in line and "missing-model" not in line, (case, line)
        assert snapshot(tmp_path) == before, case


def test_a_write_that_fails_names_the_file_asked_for_not_its_temporary_file(tmp_path):
    from medcolor.utils import atomic_path

    target = tmp_path / "out.csv"
    target.mkdir()  # os.replace onto a folder fails after the temporary file was written
    with pytest.raises(OSError) as exc, atomic_path(target) as tmp:
        tmp.write_text("a")
    assert exc.value.filename == str(target) and not list(tmp_path.glob(".out.csv.*"))
    if Path("/proc/version").is_file():
        with pytest.raises(OSError) as exc, atomic_path("/proc/version"):
            pass
        assert exc.value.filename == "/proc/version"
