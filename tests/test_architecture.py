"""The layout rules of the package: small modules, and no import from a lower layer into a higher one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medcolor"
MAX_LINES = 450


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every medcolor module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medcolor"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("medcolor")}
    return out


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_are_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("data", ("medcolor.training", "medcolor.evaluation", "medcolor.inference", "medcolor.cli")),
        ("evaluation.py", ("medcolor.training", "medcolor.inference", "medcolor.cli")),
        ("strategies.py", ("medcolor.model", "medcolor.training", "medcolor.cli")),
        ("model.py", ("medcolor.training", "medcolor.inference", "medcolor.cli")),
        ("training", ("medcolor.cli",)),
    ],
)
def test_no_import_from_a_lower_layer_into_a_higher_one(lower: str, higher: tuple[str, ...]) -> None:
    files = [SRC / lower] if lower.endswith(".py") else sorted((SRC / lower).rglob("*.py"))
    bad = {f"{f.relative_to(SRC)} imports {m}" for f in files for m in _imports(f) if m.startswith(higher)}
    assert not bad


def test_inference_works_without_importing_lightning() -> None:
    """``predict``/``evaluate`` share the autocast helper of training.runtime without loading Lightning."""
    code = "import sys, medcolor.inference; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0
