"""The metrics of the paper (Sec. IV-C): per-label AUC, mean AUC, bootstrap confidence intervals.

Targets use NaN for ignored labels (CheXpert U-Ignore): those entries are left out of the loss and of
the AUC of their label.  A label whose evaluation set holds a single class has no AUC (NaN) and is
left out of the mean, with the count of labels used reported next to it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc

from medcolor.errors import DataError


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the non-NaN target entries."""
    mask = ~torch.isnan(targets)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    losses = F.binary_cross_entropy_with_logits(
        logits.float(), torch.nan_to_num(targets.float(), nan=0.0), reduction="none"
    )
    return (losses * mask).sum() / mask.sum()


def auc_per_label(probs: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> np.ndarray:
    """AUROC of each column (torchmetrics' exact ``binary_auroc``), NaN where a label has only one class
    among its non-NaN targets.  Scores are taken as float32 (the precision the network produces)."""
    p = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    t = torch.as_tensor(np.asarray(targets, dtype=np.float64))
    if p.ndim == 1:
        p, t = p[:, None], t[:, None]
    check_finite_probs(p)
    out = np.full(p.shape[1], np.nan)
    for j in range(p.shape[1]):
        keep = ~torch.isnan(t[:, j])
        y = t[keep, j]
        if y.numel() == 0 or bool((y == y[0]).all()):
            continue
        out[j] = float(binary_auroc(p[keep, j], y.long()))
    return out


def check_finite_probs(probs: np.ndarray | torch.Tensor) -> None:
    """NaN/inf predictions never become an AUC (a diverged network): a DataError saying how many."""
    p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
    bad = int((~torch.isfinite(p)).sum())
    if bad:
        raise DataError(
            f"{bad} of {p.numel()} predicted probabilities are NaN/inf: no AUC is computed from them "
            "(the network diverged?)"
        )


def mean_auc(aucs: np.ndarray) -> float:
    valid = aucs[~np.isnan(aucs)]
    return float(valid.mean()) if valid.size else math.nan


class MaskedAUROC(Metric):
    """Per-label AUROC over all batches (and, under DDP, all processes: predictions are gathered,
    so the AUC equals the single-process one — no sample is counted twice with :class:`ShardSampler`)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_labels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self.preds.append(preds.detach().float().reshape(-1, self.num_labels))
        self.targets.append(targets.detach().float().reshape(-1, self.num_labels))

    def _cat(self, x: Any) -> torch.Tensor:
        if isinstance(x, list):
            return torch.cat(x) if x else torch.zeros(0, self.num_labels)
        return x

    def compute(self) -> torch.Tensor:
        p, t = self._cat(self.preds), self._cat(self.targets)
        return torch.as_tensor(auc_per_label(p.cpu().numpy(), t.cpu().numpy()), dtype=torch.float64)


def _rank_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Vectorised Mann-Whitney AUC along the last axis (ties counted 1/2); NaN without both classes."""
    r = rankdata(p, axis=-1)
    n1 = y.sum(-1)
    n0 = y.shape[-1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((r * y).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def bootstrap_ci(
    probs: np.ndarray, targets: np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Percentile bootstrap CIs of each label's AUC and of the mean AUC, resampling images with
    replacement (the same resample for every label, so the mean's CI accounts for their correlation).
    Resamples where a label lacks a class are dropped for that label (their count is returned)."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    check_finite_probs(probs)
    if probs.ndim == 1:
        probs, targets = probs[:, None], targets[:, None]
    n, n_labels = probs.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    per_label = np.full((n_resamples, n_labels), np.nan)
    for j in range(n_labels):
        keep = ~np.isnan(targets[:, j])
        for start in range(0, n_resamples, 100):  # bound memory: 100 x n at a time
            sl = idx[start : start + 100]
            if keep.all():
                per_label[start : start + 100, j] = _rank_auc(targets[sl, j], probs[sl, j])
            else:  # ignored (NaN) targets: resamples differ in length, one at a time
                for b, rows in enumerate(sl):
                    rows = rows[keep[rows]]
                    per_label[start + b, j] = _rank_auc(targets[rows, j], probs[rows, j])
    alpha = (1 - level) / 2
    with np.errstate(all="ignore"), warnings.catch_warnings():  # a label with one class in the set: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(per_label, axis=1)
        lo = np.nanquantile(per_label, alpha, axis=0)
        hi = np.nanquantile(per_label, 1 - alpha, axis=0)
    return {
        "level": level,
        "n_resamples": n_resamples,
        "per_label": [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)],
        "valid_resamples": [int(v) for v in (~np.isnan(per_label)).sum(0)],
        "mean_auc": (float(np.nanquantile(means, alpha)), float(np.nanquantile(means, 1 - alpha))),
    }


@dataclass
class EvaluationResult:
    label_names: list[str]
    auc: np.ndarray
    mean_auc: float
    n_samples: int
    ci: dict[str, Any] | None = None
    study_auc: np.ndarray | None = None
    study_mean_auc: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "n_samples": self.n_samples,
            "mean_auc": _f(self.mean_auc),
            "auc": {n: _f(a) for n, a in zip(self.label_names, self.auc, strict=True)},
            "labels_in_mean": int((~np.isnan(self.auc)).sum()),
        }
        if self.ci is not None:
            d["ci95"] = {
                "mean_auc": list(self.ci["mean_auc"]),
                **{n: list(c) for n, c in zip(self.label_names, self.ci["per_label"], strict=True)},
                "n_resamples": self.ci["n_resamples"],
            }
        if self.study_auc is not None:
            d["study_level"] = {
                "mean_auc": _f(self.study_mean_auc),
                "auc": {n: _f(a) for n, a in zip(self.label_names, self.study_auc, strict=True)},
            }
        d.update(self.extra)
        return d

    def table(self) -> pd.DataFrame:
        rows = {"AUC": [*list(self.auc), self.mean_auc]}
        if self.ci is not None:
            rows["CI95 low"] = [c[0] for c in self.ci["per_label"]] + [self.ci["mean_auc"][0]]
            rows["CI95 high"] = [c[1] for c in self.ci["per_label"]] + [self.ci["mean_auc"][1]]
        return pd.DataFrame(rows, index=[*self.label_names, "mean"])


def _f(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(
    probs: np.ndarray,
    targets: np.ndarray,
    label_names: list[str],
    *,
    bootstrap: int = 0,
    seed: int = 0,
    study_ids: np.ndarray | None = None,
) -> EvaluationResult:
    """AUCs (and optionally bootstrap CIs and study-level AUCs) of predictions ``probs`` (N, L)."""
    aucs = auc_per_label(probs, targets)
    res = EvaluationResult(list(label_names), aucs, mean_auc(aucs), len(probs))
    if bootstrap:
        res.ci = bootstrap_ci(probs, targets, bootstrap, seed)
    if study_ids is not None:
        s_probs, s_targets = study_level(probs, targets, study_ids)
        res.study_auc = auc_per_label(s_probs, s_targets)
        res.study_mean_auc = mean_auc(res.study_auc)
        res.extra["n_studies"] = len(s_probs)
    return res


def aggregate_by_study(probs: np.ndarray, study_ids: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Average per-image predictions (N, L) (or (N,)) over each study (``study_ids``: one id per image).

    Returns ``(unique_study_ids, probs_mean)``: the sorted unique study ids (S,) and the mean per study,
    shape (S, L) (or (S,) for 1-D input).  Used for MURA's study-level AUC; applied to ``labels`` it gives
    the study labels.
    """
    probs = np.asarray(probs, dtype=np.float64)
    ids = np.asarray(study_ids)
    if probs.shape[0] != ids.shape[0]:
        from medcolor.errors import DataError

        raise DataError(f"aggregate_by_study: {probs.shape[0]} predictions but {ids.shape[0]} study ids")
    uniq, inverse = np.unique(ids, return_inverse=True)
    flat = probs.reshape(probs.shape[0], -1)
    sums = np.zeros((len(uniq), flat.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, flat)
    counts = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    mean = sums / counts[:, None]
    return uniq, mean.reshape((len(uniq), *probs.shape[1:])).astype(np.float32)


def study_level(probs: np.ndarray, targets: np.ndarray, study_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability and label per study (MURA's study-level evaluation; a study's images share
    its label, so the mean label is that label), both ``(S, L)`` in sorted study order."""
    _, p = aggregate_by_study(probs, study_ids)
    _, t = aggregate_by_study(targets, study_ids)
    return p, t


__all__ = [
    "EvaluationResult",
    "MaskedAUROC",
    "aggregate_by_study",
    "auc_per_label",
    "bootstrap_ci",
    "check_finite_probs",
    "masked_bce_with_logits",
    "mean_auc",
    "study_level",
    "summarize",
]
