"""Evaluation (paper Sec. IV-C): the metrics (:mod:`~medcolor.evaluation.metrics`: per-label and mean AUC,
bootstrap CIs, study-level aggregation for MURA) and the one path that evaluates a network on a dataset
(:mod:`~medcolor.evaluation.dataset`: predict, score, write ``metrics.json`` / ``predictions.csv``)."""

from __future__ import annotations

from medcolor.evaluation.dataset import (
    DatasetPredictions,
    check_finite_weights,
    evaluate_dataset,
    evaluate_run,
    held_out_split,
    predict_probs,
    write_predictions,
)
from medcolor.evaluation.metrics import (
    EvaluationResult,
    MaskedAUROC,
    aggregate_by_study,
    auc_per_label,
    bootstrap_ci,
    check_finite_probs,
    masked_bce_with_logits,
    mean_auc,
    study_level,
    summarize,
)

__all__ = [
    "DatasetPredictions",
    "EvaluationResult",
    "MaskedAUROC",
    "aggregate_by_study",
    "auc_per_label",
    "bootstrap_ci",
    "check_finite_probs",
    "check_finite_weights",
    "evaluate_dataset",
    "evaluate_run",
    "held_out_split",
    "masked_bce_with_logits",
    "mean_auc",
    "predict_probs",
    "study_level",
    "summarize",
    "write_predictions",
]
