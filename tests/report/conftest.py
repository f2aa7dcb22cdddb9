"""Fixtures of the report tests: two real tiny run directories, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcolor.config import LRFindConfig, StageConfig


@pytest.fixture(scope="session")
def real_runs(tiny_config, tmp_path_factory) -> dict[str, Path]:
    """Two real run directories: colorU color-module -> all (stage 2 with an LR range test) and
    pixelshuffle color-module (fixed LR)."""
    from medcolor.training import train

    base = tmp_path_factory.mktemp("real-runs")
    data = base / "synthetic-data"
    runs = {}
    for name, colorizer, stages in (
        ("colorU-cm-all", "colorU", [
            StageConfig("color-module", lr=0.05, iterations=4, val_every=2),
            StageConfig("all", lr="find", iterations=4, val_every=2, lr_find=LRFindConfig(1e-4, 1.0, 10)),
        ]),
        ("pixelshuffle-cm", "pixelshuffle", [StageConfig("color-module", lr=0.05, iterations=4, val_every=2)]),
    ):  # fmt: skip
        cfg = tiny_config(base / name, data, colorizer=colorizer, stages=stages, bootstrap=20)
        train(cfg)
        runs[name] = base / name
    runs["data"] = data
    return runs
