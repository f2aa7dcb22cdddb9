"""Operating points of a run directory, from its ``val/predictions.csv`` and ``<set>/predictions.csv``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medcolor.config import OperatingConfig, RunConfig
from medcolor.errors import ConfigError, DataError
from medcolor.operating.sets import OperatingPoints, operating_points, plot_reliability, plot_roc
from medcolor.operating.thresholds import ThresholdRule, ThresholdRuleError
from medcolor.utils import write_json

log = logging.getLogger(__name__)

OPERATING_POINTS_FILE = "operating_points.json"
#: The figures written per test set (``{set}`` is its name, e.g. ``test``).
ROC_FIGURE = "roc-{set}.png"
RELIABILITY_FIGURE = "reliability-{set}.png"


def read_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(probs, targets, label_names)`` of a ``predictions.csv`` (``target:<label>``/``prob:<label>`` columns;
    a blank target is an ignored one)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: operating points need the predictions of that split")
    df = pd.read_csv(path)
    labels = [c[len("prob:") :] for c in df.columns if c.startswith("prob:")]
    missing = [f"target:{n}" for n in labels if f"target:{n}" not in df.columns]
    if not labels or missing:
        raise DataError(
            f"{path} is not a medcolor predictions.csv: it needs prob:<label> and target:<label> columns"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    probs = df[[f"prob:{n}" for n in labels]].to_numpy(dtype=np.float64)
    targets = df[[f"target:{n}" for n in labels]].to_numpy(dtype=np.float64)
    return probs, targets, labels


def write_run_operating_points(
    run_dir: str | os.PathLike,
    *,
    test_sets: Sequence[str] = ("test",),
    validation: str = "val",
    rule: str | ThresholdRule | None = None,
    temperature_scaling: bool = False,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Path:
    """Operating points of a run from its files: the thresholds from ``RUN/<validation>/predictions.csv``, applied
    to ``RUN/<set>/predictions.csv`` of each of ``test_sets``; writes ``RUN/operating_points.json`` with
    ``roc-<set>.png`` and ``reliability-<set>.png`` beside it and returns the JSON's path."""
    run = Path(run_dir)
    vp, vt, labels = read_predictions(run / validation / "predictions.csv")
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in test_sets:
        if name == validation:
            raise ConfigError(f"test set {name!r} is the validation set the thresholds are chosen on")
        p, t, set_labels = read_predictions(run / name / "predictions.csv")
        if set_labels != labels:
            raise DataError(
                f"{run / name / 'predictions.csv'} has labels {set_labels} but the validation predictions {labels}"
            )
        sets[name] = (p, t)
    beside = lambda name: (run / ROC_FIGURE.format(set=name), run / RELIABILITY_FIGURE.format(set=name))  # noqa: E731
    ops = _points_with_figures(
        vp, vt, sets, labels, beside,
        rule=rule, temperature_scaling=temperature_scaling, n_resamples=n_resamples, seed=seed,
    )  # fmt: skip
    d = ops.to_dict() | {"validation": validation, "n_validation": len(vp)}
    return write_json(run / OPERATING_POINTS_FILE, d)


def _points_with_figures(
    vp: np.ndarray,
    vt: np.ndarray,
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: list[str],
    figure_paths: Callable[[str], tuple[Path, Path]],
    **kw: Any,
) -> OperatingPoints:
    """:func:`operating_points` of ``sets`` (thresholds from the validation ``vp``/``vt``; ``kw``: rule, temperature
    scaling, bootstrap) with each set's ROC curve and reliability diagram drawn at ``figure_paths(set)`` (none for a
    set without an operating point) and named in its ``figures``."""
    ops = operating_points(vp, vt, sets, labels, **kw)
    for name, (p, t) in sets.items():
        figures = {}
        if ops.sets[name]["labels"]:
            roc, reliability = figure_paths(name)
            figures["roc"] = plot_roc(ops, name, p, t, roc).name
            figures["reliability"] = plot_reliability(ops, name, reliability).name
        ops.sets[name]["figures"] = figures
    return ops


def run_operating_config(run_dir: str | os.PathLike) -> OperatingConfig:
    """The ``operating:`` section of the run in ``run_dir`` (its ``config.yaml``), or the default one (Youden's J,
    no temperature scaling) outside a run."""
    cfg = Path(run_dir) / "config.yaml"
    return RunConfig.from_yaml(cfg).operating if cfg.is_file() else OperatingConfig()


def write_set_operating_points(
    validation: str | os.PathLike,
    folder: str | os.PathLike,
    name: str,
    operating: OperatingConfig | None = None,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    what: str | None = None,
) -> Path | None:
    """The thresholds of the validation predictions ``validation`` (by ``operating``: threshold rule, temperature
    scaling; default Youden's J) applied to the set ``name`` whose predictions are ``folder/predictions.csv``:
    ``folder/operating_points.json`` with ``roc.png`` and ``reliability.png`` (an external test set's folder,
    ``medcolor evaluate``'s output).  None without validation predictions; a rule that cannot be met is logged as
    a warning (starting with ``what``, default the name) and recorded (``error``, ``rule``)."""
    val, out, what = Path(validation), Path(folder), what or name
    operating = operating or OperatingConfig()
    rule, temperature_scaling = operating.threshold, operating.temperature
    if not val.is_file():
        log.info(f"{what}: no operating points (no validation predictions in {val})")
        return None
    vp, vt, labels = read_predictions(val)
    p, t, set_labels = read_predictions(out / "predictions.csv")
    if set_labels != labels:
        raise DataError(f"{out / 'predictions.csv'} has labels {set_labels} but {val} has {labels}")
    try:
        ops = _points_with_figures(
            vp, vt, {name: (p, t)}, labels, lambda _: (out / "roc.png", out / "reliability.png"),
            rule=rule, temperature_scaling=temperature_scaling, n_resamples=n_resamples, seed=seed,
        )  # fmt: skip
    except ThresholdRuleError as exc:
        log.warning(f"{what}: no operating points: {exc}")
        return write_json(out / OPERATING_POINTS_FILE, unmet_rule(exc, rule, temperature_scaling))
    return write_json(out / OPERATING_POINTS_FILE, ops.to_dict() | {"validation": "val", "n_validation": len(vp)})


def run_operating_points(
    model: Any,
    bundle: Any,
    run_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    seed: int = 0,
    n_resamples: int = 1000,
    rule: str | ThresholdRule | None = None,
    temperature_scaling: bool = False,
) -> Path | None:
    """After a run's test evaluation: predict its validation split (``RUN/val/predictions.csv``, full precision,
    the test's input path) and write the operating points of its test split (``rule``, ``temperature_scaling``:
    the run's ``operating:`` section).  A run without a test split (tested on its validation split) or without a
    validation split gets none (logged).  A rule that cannot be met is logged as a warning naming the label and
    recorded in ``operating_points.json`` (``error``, ``rule``) instead of failing the finished run."""
    from medcolor.data.bundle import NetworkView
    from medcolor.data.transforms import EvalTransform
    from medcolor.evaluation.dataset import predict_probs, write_predictions

    run = Path(run_dir)
    if bundle.test is None or bundle.val is None:
        log.info("no operating points: they need a validation split to choose thresholds and a test split")
        return None
    norm = bundle.normalization
    view = NetworkView(bundle.val, EvalTransform(bundle.size, norm["mean"], norm["std"]))
    probs = predict_probs(
        model, view, batch_size=batch_size, num_workers=num_workers, device=device, precision="32-true"
    )
    write_predictions(run / "val" / "predictions.csv", bundle.val, probs, list(bundle.label_names))
    try:
        path = write_run_operating_points(
            run, seed=seed, n_resamples=n_resamples, rule=rule, temperature_scaling=temperature_scaling
        )
    except ThresholdRuleError as exc:
        log.warning(f"no operating points: {exc}")
        return write_json(run / OPERATING_POINTS_FILE, unmet_rule(exc, rule, temperature_scaling))
    ops = json.loads(path.read_text())
    for name, e in (ops["sets"]["test"]["labels"] or {}).items():
        log.info(
            f"test {name}: threshold {e['threshold']:.3g} ({ops['rule']} on validation): sensitivity "
            f"{format_rate(e['sensitivity'])}, specificity {format_rate(e['specificity'])}, ECE {e['ece']:.3f}"
        )
    return path


def unmet_rule(exc: ThresholdRuleError, rule: str | ThresholdRule | None, temperature_scaling: bool) -> dict[str, Any]:
    """What ``operating_points.json`` records when the threshold rule cannot be met on validation data."""
    return {"error": str(exc), "rule": str(ThresholdRule.parse(rule)), "temperature_scaling": temperature_scaling}


def format_rate(m: dict[str, Any], with_ci: bool = False) -> str:
    """A rate of ``operating_points.json`` (``{"value": v, "ci": [lo, hi]}``) as a percentage, ``97.4 %``, with
    ``with_ci`` followed by its 95 % CI, ``97.4 % (95.9-98.9)``; ``n/a`` where it has no value."""
    value = "n/a" if m["value"] is None else f"{100 * m['value']:.1f} %"
    ci = m.get("ci") if with_ci else None
    return value + (f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else "")


def operating_point_lines(path: str | os.PathLike) -> list[str]:
    """An evaluated set's operating points (its ``operating_points.json``) as text, as ``medcolor evaluate``
    prints them: per label the threshold and, at it, sensitivity, specificity, PPV, NPV and accuracy with their
    95 % CIs; or why there are none."""
    path = Path(path)
    if not path.is_file():
        return ["  no operating points (they need the run's val/predictions.csv, and data other than it)"]
    ops = json.loads(path.read_text())
    if "error" in ops:
        return [f"  no operating points: {ops['error']}"]
    scaled = ", temperature-scaled" if ops.get("temperature_scaling") else ""
    lines = []
    for name, rec in ops["sets"].items():
        for label, e in rec["labels"].items():
            rates = ", ".join(
                f"{m} {format_rate(e[m], with_ci=True)}"
                for m in ("sensitivity", "specificity", "ppv", "npv", "accuracy")
            )
            lines.append(
                f"  {name} {label}: threshold {e['threshold']:.4g} ({ops['rule']} on validation{scaled}): {rates}"
            )
        lines += [f"  {name} {label}: no operating point ({why})" for label, why in rec["left_out"].items()]
    return [*lines, f"  operating points: {path}"]
