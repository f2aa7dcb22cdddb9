"""``~user`` in a user's path: expanded once, and an unknown user is a clear error (exit 2), never Python's bare
``RuntimeError: Could not determine home directory`` (hypothesis found ``--output '~nobody-here/x'``)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from medcolor.cli import main
from medcolor.errors import ConfigError, OptionError
from medcolor.paths import user_path

NOBODY = "~nobody-medcolor-xyz"


def test_home_and_plain_paths_expand_as_pathlib_does() -> None:
    assert user_path("~/x") == Path.home() / "x"
    assert user_path("runs/x") == Path("runs/x")


def test_an_unknown_user_names_the_path_and_the_option() -> None:
    with pytest.raises(ConfigError, match=f"{NOBODY}/x.*names no user"):
        user_path(f"{NOBODY}/x")
    with pytest.raises(OptionError, match="--output"):
        user_path(f"{NOBODY}/x", "--output")


@pytest.mark.parametrize(
    "argv",
    [
        [
            "train",
            "--dataset",
            "synthetic",
            "--backbone",
            "resnet18",
            "--weights",
            "none",
            "--size",
            "32",
            "--dry-run",
            "--output",
            f"{NOBODY}/run",
        ],
        [
            "train",
            "--dataset",
            "folder",
            "--root",
            f"{NOBODY}/data",
            "--backbone",
            "resnet18",
            "--weights",
            "none",
            "--dry-run",
            "--output",
            "unused",
        ],
        ["predict", f"{NOBODY}/model.safetensors", "x.png"],
    ],
    ids=["output", "root", "model"],
)
def test_the_cli_refuses_an_unknown_user_with_exit_2(argv: list[str], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    assert rc == 2, err.getvalue()
    assert NOBODY in err.getvalue() and "Traceback" not in err.getvalue()
    if "--output" in argv and "unused" not in argv:
        assert "--output" in err.getvalue(), err.getvalue()  # the option is named (tests/cli/test_cli_fuzz.py asks it)
