"""External test sets (``test_sets:`` of a run configuration): the best network of a run evaluated on named datasets
beside its own held-out split.

For each set ``NAME`` (a :class:`~medcolor.config.TestSetConfig`) :func:`evaluate_test_sets` writes
``RUN/test_sets/NAME/``:

* ``metrics.json`` — the shape of the run's ``test/metrics.json`` (``auc``, ``mean_auc``, ``ci95``...) over the run's
  labels, plus ``test_set`` (the name), ``labels_mapped`` (run label -> set label), ``left_out`` (run label ->
  why it is out of the mean: ``not in set``, ``one class only``) and ``overlap`` (images shared with the run's
  training/validation data);
* ``predictions.csv`` — as the run's (``target:<label>`` blank for a label the set does not have);
* ``operating_points.json``, ``roc.png``, ``reliability.png`` — the thresholds chosen on the run's validation
  predictions (``RUN/val/predictions.csv``, :mod:`medcolor.operating`) applied to the set.

Labels: a run label maps to the set label named in ``labels`` (``{Pneumonia: PNEUMONIA}``), else to the set label
of the same name (any case).  A set none of whose labels map is a :class:`~medcolor.errors.DataError`.

Overlap: an image of the set whose file content equals one of the run's training/validation images, or whose
patient id is one of theirs when both come from the same dataset kind with known patient ids, is an overlap; a set
with any is refused unless its ``allow_overlap`` is true (then a warning, and the count in ``metrics.json``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from medcolor.config import TestSetConfig
from medcolor.errors import DataError, OptionError
from medcolor.utils import write_json

log = logging.getLogger(__name__)

TEST_SETS_DIR = "test_sets"
NOT_IN_SET = "not in set"
ONE_CLASS = "one class only"
OVERLAP_EXAMPLES = 5


def map_labels(
    name: str, run_labels: Sequence[str], set_labels: Sequence[str], mapping: Mapping[str, str]
) -> dict[str, str]:
    """Run label -> set label for every run label that has one (``mapping`` first, then the same name in any
    case).  Errors name the option ``test_sets.<name>.labels`` and the labels on each side."""
    key = f"test_sets.{name}.labels"
    by_lower = {s.lower(): s for s in set_labels}
    unknown = [k for k in mapping if k not in run_labels]
    if unknown:
        raise OptionError(key, f"maps {unknown} which are not labels of the run (its labels: {list(run_labels)})")
    out: dict[str, str] = {}
    for r in run_labels:
        if r in mapping:
            target = by_lower.get(mapping[r].lower())
            if target is None:
                raise DataError(
                    f"test set {name!r}: {key} maps {r!r} to {mapping[r]!r}, which the set does not have; "
                    f"its labels: {list(set_labels)}"
                )
            out[r] = target
        elif r.lower() in by_lower:
            out[r] = by_lower[r.lower()]
    if not out:
        raise DataError(
            f"test set {name!r}: none of the run's labels {list(run_labels)} is a label of the set (its labels: "
            f"{list(set_labels)}); map them with {key}, e.g. {{{run_labels[0]}: {set_labels[0]}}}"
            if run_labels and set_labels
            else f"test set {name!r} has no labels to map onto the run's {list(run_labels)} ({key})"
        )
    return out


def load_test_set(name: str, ts: TestSetConfig, size: int, *, synthetic_dir: Path | None = None) -> Any:
    """The dataset of test set ``name`` (one official split of it, or every row), images loaded at ``size``."""
    from medcolor.data.bundle import make_dataset

    opts = SimpleNamespace(
        dataset=ts.dataset,
        root=ts.root,
        csv=ts.csv,
        options=dict(ts.options),
        size=size,
        load_size=ts.load_size,
        cache_dir=None,
        on_missing=ts.on_missing,
    )
    ds = make_dataset(opts, ts.split, synthetic_dir=synthetic_dir)  # type: ignore[arg-type]
    if len(ds) == 0:
        raise DataError(f"test set {name!r} has no images (test_sets.{name}: root {ts.root}, split {ts.split})")
    return ds


def mapped_dataset(ds: Any, run_labels: Sequence[str], mapping: Mapping[str, str]) -> Any:
    """A copy of ``ds`` whose ``labels`` are the run's (N, L_run): mapped columns, NaN (ignored) for the others."""
    new = ds.subset(np.arange(len(ds)))
    cols = {n: j for j, n in enumerate(ds.label_names)}
    labels = np.full((len(ds), len(run_labels)), np.nan, dtype=np.float32)
    raw = np.full_like(labels, np.nan)
    for j, r in enumerate(run_labels):
        if r in mapping:
            labels[:, j] = ds.labels[:, cols[mapping[r]]]
            raw[:, j] = ds.raw_labels[:, cols[mapping[r]]]
    new.labels, new.raw_labels, new.label_names = labels, raw, list(run_labels)
    return new


# ---------------------------------------------------------------------------------------------------- overlap
def file_hashes(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """blake2b of each file's bytes, by path."""
    out: dict[str, str] = {}
    for p in paths:
        h = hashlib.blake2b(digest_size=16)
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out[os.fspath(p)] = h.hexdigest()
    return out


def find_overlap(test_set: Any, run_sets: Sequence[Any], *, same_kind: bool) -> dict[str, Any]:
    """Images of ``test_set`` shared with ``run_sets`` (the run's training and validation data): the same file
    content, or (``same_kind``: the same dataset kind, both with known patient ids) the same patient id.
    Returns ``{"count", "by_content", "by_patient", "examples"}`` (examples: the set's first files)."""
    run_hashes = set()
    for ds in run_sets:
        run_hashes |= set(file_hashes(ds.paths).values())
    hashes = file_hashes(test_set.paths)
    content = np.array([hashes[os.fspath(p)] in run_hashes for p in test_set.paths], dtype=bool)
    patient = np.zeros(len(test_set), dtype=bool)
    if (
        same_kind
        and getattr(test_set, "patients_known", True)
        and all(getattr(ds, "patients_known", True) for ds in run_sets)
    ):
        run_patients = {str(p) for ds in run_sets for p in ds.patient_ids}
        patient = np.array([str(p) in run_patients for p in test_set.patient_ids], dtype=bool)
    both = content | patient
    return {
        "count": int(both.sum()),
        "by_content": int(content.sum()),
        "by_patient": int(patient.sum()),
        "examples": [str(test_set.paths[i]) for i in np.flatnonzero(both)[:OVERLAP_EXAMPLES]],
    }


def check_overlap(name: str, ts: TestSetConfig, overlap: dict[str, Any]) -> None:
    """Refuse a set sharing images with the run's training/validation data, unless ``allow_overlap``."""
    if not overlap["count"]:
        return
    what = f"{overlap['by_content']} by file content, {overlap['by_patient']} by patient id"
    msg = (
        f"test set {name!r} shares {overlap['count']} images with the run's training/validation data ({what}); "
        f"first: {', '.join(overlap['examples'])}"
    )
    if not ts.allow_overlap:
        raise DataError(f"{msg}. Remove them from the set, or set test_sets.{name}.allow_overlap: true")
    log.warning(f"{msg} (test_sets.{name}.allow_overlap: true; the count is in its metrics.json)")


# ---------------------------------------------------------------------------------------------------- evaluate
def prepare_test_sets(
    test_sets: Mapping[str, TestSetConfig],
    run_labels: Sequence[str],
    size: int,
    *,
    run_sets: Sequence[Any] = (),
    run_dataset: str | None = None,
    synthetic_dir: Path | None = None,
) -> dict[str, tuple[Any, dict[str, str], dict[str, Any]]]:
    """Load every set, map its labels and check its overlap with ``run_sets`` (the run's train/val data of
    dataset kind ``run_dataset``) before anything is predicted: ``{name: (dataset, mapping, overlap)}``."""
    out = {}
    for name, ts in test_sets.items():
        ds = load_test_set(name, ts, size, synthetic_dir=synthetic_dir)
        mapping = map_labels(name, run_labels, ds.label_names, ts.labels)
        overlap = find_overlap(ds, [d for d in run_sets if d is not None], same_kind=ts.dataset == run_dataset)
        check_overlap(name, ts, overlap)
        out[name] = (mapped_dataset(ds, run_labels, mapping), mapping, overlap)
    return out


def evaluate_test_sets(
    model: torch.nn.Module,
    run_dir: str | os.PathLike,
    prepared: Mapping[str, tuple[Any, dict[str, str], dict[str, Any]]],
    *,
    size: int,
    normalization: dict[str, float],
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "cpu",
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = False,
    validation: str | os.PathLike | None = None,
    operating: Any = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``model`` on every prepared set (:func:`prepare_test_sets`); writes ``RUN/test_sets/<name>/`` and
    returns ``{name: metrics}`` (metrics as ``RUN/test/metrics.json`` + ``left_out``, ``labels_mapped``,
    ``overlap``).  ``validation``: the predictions the thresholds are chosen on (default
    ``RUN/val/predictions.csv``); ``operating``: the run's ``operating:`` section (threshold rule, temperature
    scaling; default: that of the ``config.yaml`` of the run that holds ``validation``, else Youden's J)."""
    from medcolor.evaluation.dataset import evaluate_run
    from medcolor.operating import run_operating_config, write_set_operating_points

    run = Path(run_dir)
    val = Path(validation) if validation is not None else run / "val" / "predictions.csv"
    operating = operating or run_operating_config(val.parent.parent)
    results: dict[str, dict[str, Any]] = {}
    for name, (ds, mapping, overlap) in prepared.items():
        out = run / TEST_SETS_DIR / name
        labels = list(ds.label_names)
        metrics = evaluate_run(
            model,
            ds,
            out,
            split=name,
            size=size,
            normalization=normalization,
            label_names=labels,
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            precision="32-true",
            bootstrap=bootstrap,
            seed=seed,
            progress=progress,
        )
        left_out = {r: NOT_IN_SET for r in labels if r not in mapping}
        left_out |= {r: ONE_CLASS for r in labels if r in mapping and metrics["auc"].get(r) is None}
        for r in [*left_out, *(["mean_auc"] if metrics["mean_auc"] is None else [])]:  # never NaN in the JSON
            if r in metrics.get("ci95", {}):
                metrics["ci95"][r] = None
        metrics |= {"test_set": name, "labels_mapped": dict(mapping), "left_out": left_out, "overlap": overlap}
        write_json(out / "metrics.json", metrics)
        write_set_operating_points(val, out, name, operating, n_resamples=bootstrap, seed=seed, what=f"test set {name}")
        mean = "n/a" if metrics["mean_auc"] is None else f"{metrics['mean_auc']:.4f}"
        left = f"; left out: {left_out}" if left_out else ""
        log.info(f"test set {name}: {metrics['n_samples']} images, mean AUC {mean}{left}")
        results[name] = metrics
    return results


__all__ = [
    "NOT_IN_SET",
    "ONE_CLASS",
    "TEST_SETS_DIR",
    "check_overlap",
    "evaluate_test_sets",
    "file_hashes",
    "find_overlap",
    "load_test_set",
    "map_labels",
    "mapped_dataset",
    "prepare_test_sets",
]
