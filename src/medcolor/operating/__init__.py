"""Operating points and calibration: what a network's probabilities mean at a threshold, per test set.

AUC alone hides what a shift between data sets does to a classifier in use.  This package

1. chooses, per label, a decision threshold **on validation data** (:func:`choose_threshold`) by a
   :class:`ThresholdRule`: Youden's J (default; the ROC point maximising sensitivity + specificity - 1), a target
   sensitivity (``sensitivity=0.9``: the highest threshold whose sensitivity reaches the target, i.e. the best
   specificity among those that do) or a target specificity (``specificity=0.95``: the lowest threshold whose
   specificity reaches it);
2. applies that threshold to each test set (:func:`operating_point_metrics`): sensitivity, specificity, PPV, NPV and
   accuracy with percentile bootstrap CIs (images resampled with replacement, seeded; one resample set for every
   metric and label), plus the confusion counts;
3. measures calibration: the Brier score and the expected calibration error (:func:`expected_calibration_error`:
   10 equal-width bins on [0, 1], bin ``k`` holding ``k/10 < p <= (k+1)/10`` and the first bin also ``p = 0``;
   ECE = sum over non-empty bins of ``n_bin / n * |mean(p) - fraction positive|``);
4. optionally fits a temperature per label on validation data (:func:`fit_temperature`, off by default and
   recorded when on): ``p' = sigmoid(logit(p) / T)``; it changes calibration, never the ranking (AUC).

The ROC points are scikit-learn's :func:`sklearn.metrics.roc_curve` (every distinct score a threshold; an image is
called positive when ``p >= threshold``).  Targets may hold NaN (an ignored label of an image): such entries are left
out of that label.  A label with a single class in a set has no ROC: it is left out of that set and listed under
``left_out`` with the reason, never a NaN in a mean.  A rule that only a degenerate classifier meets (every image
called positive, or none) is a :class:`ThresholdRuleError` naming the rule and the best value reachable.

:func:`write_run_operating_points` writes ``operating_points.json`` and, per test set, ``roc-<set>.png`` and
``reliability-<set>.png`` into a run directory from its ``val/predictions.csv`` and ``<set>/predictions.csv``;
:func:`write_set_operating_points` the same for one set in its own folder (an external test set, the output of
``medcolor evaluate``).

Modules: :mod:`~medcolor.operating.thresholds` (rules, thresholds, metrics at a threshold),
:mod:`~medcolor.operating.calibration` (Brier, ECE, temperature), :mod:`~medcolor.operating.sets` (whole sets and
their figures), :mod:`~medcolor.operating.run` (a run directory's files).
"""

from medcolor.operating.calibration import (
    ECE_BINNING,
    ECE_BINS,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from medcolor.operating.run import (
    OPERATING_POINTS_FILE,
    RELIABILITY_FIGURE,
    ROC_FIGURE,
    format_rate,
    operating_point_lines,
    read_predictions,
    run_operating_config,
    run_operating_points,
    write_run_operating_points,
    write_set_operating_points,
)
from medcolor.operating.sets import OperatingPoints, operating_points, plot_reliability, plot_roc
from medcolor.operating.thresholds import (
    METRICS,
    Threshold,
    ThresholdRule,
    ThresholdRuleError,
    choose_threshold,
    operating_point_metrics,
    roc_points,
    single_class,
)

__all__ = [
    "ECE_BINNING",
    "ECE_BINS",
    "METRICS",
    "OPERATING_POINTS_FILE",
    "RELIABILITY_FIGURE",
    "ROC_FIGURE",
    "OperatingPoints",
    "Threshold",
    "ThresholdRule",
    "ThresholdRuleError",
    "apply_temperature",
    "brier_score",
    "choose_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "format_rate",
    "operating_point_lines",
    "operating_point_metrics",
    "operating_points",
    "plot_reliability",
    "plot_roc",
    "read_predictions",
    "reliability_bins",
    "roc_points",
    "run_operating_config",
    "run_operating_points",
    "single_class",
    "write_run_operating_points",
    "write_set_operating_points",
]
