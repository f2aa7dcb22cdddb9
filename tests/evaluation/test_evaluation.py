from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medcolor.evaluation import (
    MaskedAUROC,
    auc_per_label,
    bootstrap_ci,
    masked_bce_with_logits,
    mean_auc,
    study_level,
    summarize,
)


def _pairs_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC by definition: P(score of a positive > score of a negative), ties 1/2."""
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_the_definition_with_ties_and_ignored_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < 0.4).astype(float)
    p = np.round((rng.random((60, 3)) + 0.3 * y) / 1.3, 1)  # in [0, 1]; rounding makes ties
    y[::7, 1] = np.nan  # ignored entries of label 1
    aucs = auc_per_label(p, y)
    for j in range(3):
        keep = ~np.isnan(y[:, j])
        assert aucs[j] == pytest.approx(_pairs_auc(y[keep, j], p[keep, j]), abs=1e-6)


def test_single_class_label_has_no_auc_and_is_left_out_of_the_mean():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=float)
    p = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]])
    aucs = auc_per_label(p, y)
    assert aucs[0] == 1.0 and np.isnan(aucs[1])
    assert mean_auc(aucs) == 1.0
    res = summarize(p, y, ["a", "b"])
    assert res.to_dict()["labels_in_mean"] == 1 and res.to_dict()["auc"]["b"] is None


def test_masked_bce_ignores_nan_targets():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    t = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], t[:, 0])
    assert torch.allclose(masked_bce_with_logits(logits, t), expected)
    assert masked_bce_with_logits(logits, torch.full_like(t, float("nan"))) == 0


def test_metric_accumulates_batches():
    rng = np.random.default_rng(1)
    y = (rng.random((50, 2)) < 0.5).astype(np.float32)
    p = rng.random((50, 2)).astype(np.float32)
    m = MaskedAUROC(2)
    for s in range(0, 50, 8):
        m.update(torch.from_numpy(p[s : s + 8]), torch.from_numpy(y[s : s + 8]))
    assert np.allclose(m.compute().numpy(), auc_per_label(p, y))


def _ddp_worker(rank: int, world: int, init_file: str, p: np.ndarray, y: np.ndarray, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    m = MaskedAUROC(y.shape[1])
    idx = np.arange(rank, len(p), world)  # uneven shards (ShardSampler order)
    for s in range(0, len(idx), 5):
        sl = idx[s : s + 5]
        m.update(torch.from_numpy(p[sl]), torch.from_numpy(y[sl]))
    value = m.compute().numpy()
    np.save(f"{out}-{rank}.npy", value)
    dist.destroy_process_group()


@pytest.mark.slow
def test_auc_is_exact_across_ddp_processes(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random((47, 3)) < 0.4).astype(np.float32)
    y[::5, 2] = np.nan
    p = rng.random((47, 3)).astype(np.float32)
    out = str(tmp_path / "auc")
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), p, y, out), nprocs=2, start_method="spawn")
    expected = auc_per_label(p, y)
    for r in range(2):
        assert np.allclose(np.load(f"{out}-{r}.npy"), expected, equal_nan=True)


def test_bootstrap_ci_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 2)) < 0.3).astype(float)
    p = rng.random((300, 2)) + 0.5 * y
    a = bootstrap_ci(p, y, 300, seed=0)
    b = bootstrap_ci(p, y, 300, seed=0)
    assert a == b
    aucs = auc_per_label(p, y)
    for (lo, hi), auc in zip(a["per_label"], aucs, strict=True):
        assert lo < auc < hi and hi - lo < 0.2
    lo, hi = a["mean_auc"]
    assert lo < mean_auc(aucs) < hi
    small = bootstrap_ci(p[:60], y[:60], 300, seed=0)
    assert small["mean_auc"][1] - small["mean_auc"][0] > hi - lo  # fewer samples, wider interval


def test_bootstrap_with_ignored_targets():
    rng = np.random.default_rng(4)
    y = (rng.random((80, 1)) < 0.5).astype(float)
    p = rng.random((80, 1)) + 0.4 * y
    y_masked = y.copy()
    y_masked[::4] = np.nan
    ci = bootstrap_ci(p, y_masked, 100, seed=0)
    assert ci["valid_resamples"] == [100]
    lo, hi = ci["per_label"][0]
    keep = ~np.isnan(y_masked[:, 0])
    assert lo < auc_per_label(p[keep], y_masked[keep])[0] < hi


def test_study_level_aggregation():
    probs = np.array([[0.2], [0.4], [0.9], [0.7], [0.1]])
    targets = np.array([[0], [0], [1], [1], [0]], dtype=float)
    studies = np.array(["a", "a", "b", "b", "c"])
    p, t = study_level(probs, targets, studies)
    assert np.allclose(p[:, 0], [0.3, 0.8, 0.1]) and np.array_equal(t[:, 0], [0, 1, 0])
    r = summarize(probs, targets, ["abnormal"], study_ids=studies)
    assert r.study_mean_auc == 1.0 and r.extra["n_studies"] == 3


def test_evaluate_run_passes_the_prediction_settings_to_predict_probs(shared_path, tmp_path) -> None:
    """``evaluate_run``'s batch size / precision / device reach :func:`predict_probs` (its defaults, one place):
    on 16 real Kermany images the written probabilities are predict_probs' at those settings, the batch size
    changes none of them, and a setting predict_probs does not take is refused."""
    import json

    import pandas as pd

    from medcolor.data import FolderDataset
    from medcolor.data.bundle import NetworkView
    from medcolor.data.transforms import EvalTransform
    from medcolor.evaluation import evaluate_run, predict_probs

    full = FolderDataset(shared_path("data", "kermany-pneumonia-224"), split="train", patient_regex="kermany")
    positive = np.flatnonzero(full.labels[:, 0] == 1)
    ds = full.subset(np.r_[np.flatnonzero(full.labels[:, 0] == 0)[:8], positive[:8]])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(16, 1))
    norm = {"mean": 0.5, "std": 0.25}
    runs = {}
    for batch_size in (3, 16):
        out = tmp_path / f"b{batch_size}"
        metrics = evaluate_run(
            model, ds, out, split="test", size=32, normalization=norm, bootstrap=20, batch_size=batch_size
        )
        runs[batch_size] = (metrics, pd.read_csv(out / "predictions.csv"))
        assert json.loads((out / "metrics.json").read_text())["split"] == "test"
    view = NetworkView(ds, EvalTransform(32, norm["mean"], norm["std"]))
    expected = predict_probs(model, view, batch_size=5)[:, 0]
    name = ds.label_names[0]
    for _, predictions in runs.values():
        np.testing.assert_allclose(predictions[f"prob:{name}"].to_numpy(), expected, rtol=1e-6)
        assert predictions["path"].tolist() == [str(p) for p in ds.paths]
    assert 0 <= runs[3][0]["mean_auc"] <= 1 and runs[3][0]["mean_auc"] == runs[16][0]["mean_auc"]
    with pytest.raises(TypeError, match="batchsize"):
        evaluate_run(model, ds, tmp_path / "x", split="test", size=32, normalization=norm, batchsize=4)
