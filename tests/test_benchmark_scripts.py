"""The benchmark scripts' own logic (issue 19): the feature-cache benchmark's step/epoch timing and the GPU
check's refusal without a GPU.  The scripts themselves are run by hand (their results are in
benchmarks/results/); ``benchmarks/gpu_check.sh --dry`` is their CPU smoke run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def fc():
    sys.path.insert(0, str(BENCH))
    try:
        import feature_cache

        yield feature_cache
    finally:
        sys.path.remove(str(BENCH))


def _timer(fc, start, ends, val=(), epoch_starts=()):
    t = fc.Timer.__new__(fc.Timer)
    t.start, t.ends, t.val, t.epoch_starts = start, list(ends), [list(v) for v in val], list(epoch_starts)
    return t


def test_steps_leave_out_validation_and_loader_starts(fc):
    # steps of 1 s; a 5 s validation pass after step 2 and a new Lightning epoch (loader start) before step 3
    t = _timer(fc, 0.0, [1.0, 2.0, 9.0, 10.0, 11.0], val=[(2.5, 7.5)], epoch_starts=[0.0, 8.0])
    assert t.steps() == [1.0, 1.0, 1.0]
    assert t.validation() == [5.0]
    # whole epochs of 2 steps: validation subtracted, the loader start kept (it is part of an epoch's wall time)
    assert t.epochs(2) == [2.0, 10.0 - 2.0 - 5.0]  # epoch 2 spans 2 s -> 10 s, 5 s of it validation


def test_gpu_check_refuses_without_a_gpu(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check

        monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", "/nonexistent-not-written"])
        assert gpu_check.main() == 2
    finally:
        sys.path.remove(str(BENCH))
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "--dry" in err
