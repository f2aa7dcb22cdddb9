"""The README runs verbatim: every shell block marked ``<!-- runnable -->`` is run, in order, in a temporary copy of
the repository with ``../shared`` beside it and ``medcolor`` resolved to this interpreter's environment (slow).

The fast checks below keep the README honest without running anything: the runnable blocks are found, they only
call commands the CLI has, and every relative link points at a file of the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = "<!-- runnable -->"
#: a marked block: the marker line, optional blank lines, then a ```bash fence
_BLOCK = re.compile(re.escape(MARK) + r"\s*\n```(?:bash|sh)\n(.*?)\n```", re.S)
#: what the copy leaves out: environments, caches and whatever earlier runs wrote
_SKIP = (
    ".git .venv __pycache__ .pytest_cache .ruff_cache runs studies demo-run *.egg-info build dist lightning_logs mlruns"
)
_IGNORE = shutil.ignore_patterns(*_SKIP.split())


def runnable_blocks(text: str) -> list[str]:
    """The shell blocks of ``text`` that follow a ``<!-- runnable -->`` line, in order."""
    return [m.group(1) for m in _BLOCK.finditer(text)]


def _commands(block: str) -> list[list[str]]:
    """The ``medcolor ...`` command lines of a block (continuation lines joined), split into words."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [ln.split("#", 1)[0].strip() for ln in joined.splitlines()]
    return [ln.split() for ln in lines if ln.startswith("medcolor ")]


def test_readme_marks_runnable_blocks() -> None:
    blocks = runnable_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, f"README.md has {len(blocks)} blocks marked {MARK}; the quick start needs more"
    commands = [c for b in blocks for c in _commands(b)]
    used = {c[1] for c in commands}
    # the quick start covers what a new user does first with a run
    for name in ("train", "evaluate", "predict", "colorize", "export-colorizer", "export", "stats", "list"):
        assert name in used, f"no runnable README block calls `medcolor {name}`"


def test_runnable_commands_exist() -> None:
    from medcolor.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for block in runnable_blocks(README.read_text(encoding="utf-8")):
        for words in _commands(block):
            assert words[1] in sub.choices, f"README runs `medcolor {words[1]}`, which the CLI does not have"


def test_relative_links_exist() -> None:
    text = README.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (REPO / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that are not in the repository: {missing}"


@pytest.mark.slow
def test_readme_runs_verbatim(tmp_path: Path, shared_path: Callable[..., Path]) -> None:
    shared = shared_path()
    shared_path("data", "kermany-pneumonia-224")
    shared_path("weights", "mobilenet_v2-imagenet-features.pth")
    clone = tmp_path / "medcolor"
    shutil.copytree(REPO, clone, ignore=_IGNORE, symlinks=True)
    (tmp_path / "shared").symlink_to(shared, target_is_directory=True)  # ../shared, as beside a fresh clone

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # this venv's medcolor
    env["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), env.get("PYTHONPATH", "")])  # the code under test
    env.pop("MEDCOLOR_WEIGHTS", None)

    blocks = runnable_blocks((clone / "README.md").read_text(encoding="utf-8"))
    assert blocks
    for i, block in enumerate(blocks, 1):
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], cwd=clone, env=env, capture_output=True, text=True, timeout=1800
        )
        out = (proc.stdout + proc.stderr)[-4000:]
        assert proc.returncode == 0, f"README runnable block {i} failed (exit {proc.returncode}):\n{block}\n---\n{out}"
