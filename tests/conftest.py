from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDCOLOR_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet-features.pth"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def need(path: Path) -> Path:
    """Skip (with the reason) when a file from ../shared is absent."""
    if not path.exists():
        pytest.skip(f"{path} is not available (the shared data/weights folder lives next to the repo)")
    return path


@pytest.fixture
def mobilenet_weights() -> Path:
    return need(MOBILENET_WEIGHTS)
