"""docs/tutorial.ipynb is committed without outputs, and runs top to bottom on the real Kermany data (slow; nbclient +
ipykernel, the dev extras)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "tutorial.ipynb"


def test_tutorial_is_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "docs/tutorial.ipynb has no code cells"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"docs/tutorial.ipynb: code cells {dirty} carry outputs; clear them before committing"


@pytest.mark.slow
def test_tutorial_runs(tmp_path: Path, shared_path: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # the dev extras (pip install -e '.[dev]') hold these three: a missing one is a failure, not a skip
    import ipykernel  # noqa: F401
    import nbclient
    import nbformat

    shared_path("data", "kermany-pneumonia-224")
    shared_path("weights", "mobilenet_v2-imagenet-features.pth")

    monkeypatch.setenv("MEDCOLOR_TUTORIAL_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MEDCOLOR_SHARED", str(shared_path()))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO / "docs")}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails

    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "largest ONNX - PyTorch difference" in outputs
    assert (tmp_path / "out" / "onnx" / "MODEL_CARD.md").is_file()
    assert (tmp_path / "out" / "color-module" / "model.safetensors").is_file()
