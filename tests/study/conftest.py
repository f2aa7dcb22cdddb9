"""Fixtures of the study tests: tiny synthetic studies (32 px, 4 iterations, 1 torch thread)."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_helpers import TINY, write_spec


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from medcolor.data.datasets.synthetic import make_synthetic_xrays

    d = tmp_path_factory.mktemp("synthetic")
    make_synthetic_xrays(d, n=120, image_size=40)
    return d


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory, synthetic_root) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec") / "tiny.yaml", TINY, synthetic_root)
