"""Exact resume: a two-stage run (``color-module`` then ``all`` with an LR range test) SIGKILLed in each of
its phases in turn — stage 1 after a checkpoint, between the stages, in the LR range test, in stage 2
after a checkpoint, in the test evaluation — and re-run each time ends bit-identical to an uninterrupted
run: every stage's weights, history and LR suggestion, the final weights, test AUCs and probabilities.

The kills come from ``tests/training/resume_driver.py`` (the CLI in a subprocess that SIGKILLs itself at the point).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import RARE

from medcolor.config import LRFindConfig, RunConfig, StageConfig

DRIVER = Path(__file__).with_name("resume_driver.py")
STAGE1, STAGE2 = "1-color-module", "2-all"

pytestmark = pytest.mark.slow


def _config(path: Path, cfg: RunConfig) -> Path:
    cfg.data.options |= RARE  # the LR range test sees a real descent
    cfg.stages = [
        StageConfig("color-module", lr=0.05, iterations=12, val_every=4),
        StageConfig("all", lr="find", iterations=8, val_every=4, lr_find=LRFindConfig(1e-4, 1.0, 12)),
    ]
    path.write_text(cfg.to_yaml())
    return path


def _run(config: Path, phase: str = "none", step: int = 0) -> subprocess.CompletedProcess:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PYTHONPATH": src, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(DRIVER), str(config), phase, str(step)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{a} and {b} differ in {len(differ)} tensors, e.g. {differ[:3]}"


def _json(path: Path):
    return json.loads(path.read_text())


def _history(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in _json(path)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


def test_killed_in_every_phase_resumes_bit_identical(tiny_config, tmp_path, data_dir):
    ref = tmp_path / "reference"
    r = _run(_config(tmp_path / "ref.yaml", tiny_config(ref, data_dir)))
    assert r.returncode == 0, r.stderr

    out = tmp_path / "run"
    config = _config(tmp_path / "run.yaml", tiny_config(out, data_dir))
    # each kill leaves the run in the state named; the next command resumes it and is killed further on
    kills = [
        (
            "stage-1",
            6,
            lambda: (
                (out / STAGE1 / "checkpoints" / "last.ckpt").is_file() and not (out / STAGE1 / "result.json").exists()
            ),
        ),
        (
            "between-stages",
            0,
            lambda: (out / STAGE1 / "result.json").is_file() and not (out / STAGE2 / "lr_find.json").exists(),
        ),
        ("lr-test", 6, lambda: not (out / STAGE2 / "lr_find.json").exists()),
        (
            "stage-2",
            6,
            lambda: (
                (out / STAGE2 / "checkpoints" / "last.ckpt").is_file() and not (out / STAGE2 / "result.json").exists()
            ),
        ),
        ("test", 0, lambda: (out / "model.safetensors").is_file() and not (out / "test" / "metrics.json").exists()),
    ]
    for phase, step, killed_there in kills:
        r = _run(config, phase, step)
        assert r.returncode == -9, f"{phase}: not killed (exit {r.returncode}): {r.stderr[-2000:]}"
        assert killed_there(), f"killed in the wrong place for phase {phase}"
    r = _run(config)
    assert r.returncode == 0, r.stderr[-2000:]

    for stage in (STAGE1, STAGE2):
        assert _history(out / stage / "history.json") == _history(ref / stage / "history.json"), stage
        _same_weights(out / stage / "model.safetensors", ref / stage / "model.safetensors")
    assert _json(out / STAGE2 / "lr_find.json") == _json(ref / STAGE2 / "lr_find.json")
    _same_weights(out / "model.safetensors", ref / "model.safetensors")
    got, want = _json(out / "test" / "metrics.json"), _json(ref / "test" / "metrics.json")
    assert (got["mean_auc"], got["auc"]) == (want["mean_auc"], want["auc"])
    assert (out / "test" / "predictions.csv").read_text() == (ref / "test" / "predictions.csv").read_text()
