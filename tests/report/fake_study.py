"""A fake study for the report tests: a synthetic results table (colorizers × strategies × training-set
sizes × 3 seeds on a source dataset, plus transfer cells on a target dataset) whose cells point at two
REAL tiny run directories (``conftest.real_runs``, trained once per session on the synthetic dataset at
32 px) and at run directories that only hold a config.yaml and the label counts training writes (enough for
Fig. 5)."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from medcolor.config import RunConfig
from medcolor.data.bundle import DataBundle, build_data
from medcolor.data.summary import LABEL_COUNTS_FILE, write_label_counts
from medcolor.study.results import SCHEMA_VERSION

#: external test sets and the AUC each loses there (:func:`external_shift`)
EXTERNAL = {"official-test": -0.06, "nih-pneumonia": -0.11}


def external_shift(shift: float, stages: str) -> float:
    """The AUC a cell loses on an external set: ``shift``, half as much again for the baselines (so that the
    drop differs between arms)."""
    return shift * (1.5 if stages in ("baseline", "baseline-all") else 1.0)


LABELS = ("Opacity", "Fine texture", "Enlarged heart")
STAGE_AUC = {"baseline": 0.70, "baseline-all": 0.84, "color-module": 0.78, "color-module,all": 0.85}
COLORIZER_AUC = {"replicate": 0.0, "pixelshuffle": 0.004, "colorU": 0.008}
SIZE_AUC = {30: -0.06, 60: -0.03, None: 0.0}
LABEL_AUC = {"Opacity": -0.02, "Fine texture": 0.01, "Enlarged heart": 0.025}
ARMS = [("replicate", "baseline"), ("replicate", "baseline-all"), ("pixelshuffle", "color-module"),
        ("pixelshuffle", "color-module,all"), ("colorU", "color-module"), ("colorU", "color-module,all")]  # fmt: skip
TARGET_AUC = {("replicate", "baseline", ""): 0.66, ("replicate", "baseline-all", ""): 0.80,
              ("replicate", "last-layer", "src"): 0.71}  # fmt: skip


def auc(colorizer: str, stages: str, subset, seed: int, label: str) -> float:
    """The synthetic AUC of a cell: additive effects + a seed effect that differs per arm (so paired
    differences are not constant)."""
    wiggle = {0: 0.0, 1: 0.006, 2: -0.004}[seed] * (1 + ARMS.index((colorizer, stages)) % 3)
    return STAGE_AUC[stages] + COLORIZER_AUC[colorizer] + SIZE_AUC[subset] + 0.01 * seed + wiggle + LABEL_AUC[label]


def cell_id(dataset: str, colorizer: str, stages: str, subset, seed: int) -> str:
    size = "full" if subset is None else str(subset)
    return f"{dataset}-{colorizer}-{stages.replace(',', '+')}-{size}-s{seed}"


FIXED = {"schema_version": SCHEMA_VERSION, "study": "fake-study", "iterations": 8, "git_commit": "0123abc",
         "medcolor_version": "0.1.0", "torch_version": "2.x", "device": "a CPU", "precision": "32-true"}  # fmt: skip


def make_study(study_dir: Path, real_runs: dict[str, Path] | None, *, subsets=(30, 60, None), transfer: bool = True,
               labels=LABELS, test_split: bool = True, external: dict[str, float] | None = None) -> Path:  # fmt: skip
    """Write ``study_dir/results.parquet`` and the cells' run directories (none without ``real_runs``);
    returns ``study_dir``.  With ``external`` (test set name -> AUC shift, e.g. :data:`EXTERNAL`) the table
    has a ``test_set`` column (schema version 2): "internal" rows, and per external set the same rows with
    the shift added to every test AUC (validation AUCs unchanged); without it no such column (version 1)."""
    import yaml

    study_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    real = {}
    if real_runs is not None:
        real = {
            cell_id("synthetic", "colorU", "color-module,all", None, 0): real_runs["colorU-cm-all"],
            cell_id("synthetic", "pixelshuffle", "color-module", None, 0): real_runs["pixelshuffle-cm"],
        }
        config = yaml.safe_load((real_runs["pixelshuffle-cm"] / "config.yaml").read_text())

    @functools.cache
    def bundle(subset: float) -> DataBundle:
        data = RunConfig.from_dict(dict(config, data=dict(config["data"], subset=subset))).data
        return build_data(data)

    def splits(cfg: dict) -> dict:  # what training writes: the label counts of the run's splits
        subset = cfg["data"]["subset"]
        return bundle(None if pd.isna(subset) else float(subset)).splits()

    def add(cell, grid, values, n_train):
        rd = Path("cells") / cell
        if cell in real:
            if not (study_dir / rd).exists():
                shutil.copytree(real[cell], study_dir / rd)
        elif real_runs is not None and grid["trainer.seed"] == 0 and grid["data.dataset"] == "synthetic":
            subset = None if np.isnan(grid["data.subset"]) else grid["data.subset"]  # NaN: the table's "full"
            cfg = dict(config, data=dict(config["data"], subset=subset))
            (study_dir / rd).mkdir(parents=True, exist_ok=True)
            (study_dir / rd / "config.yaml").write_text(yaml.safe_dump(cfg))
            write_label_counts(study_dir / rd / LABEL_COUNTS_FILE, splits(cfg))
        mean = float(np.mean(list(values.values())))
        for ts, shift in [("internal", 0.0), *(external or {}).items()]:
            # without external sets: a version-1 table (no test_set column; read_results migrates it)
            extra = {"test_set": ts} if external is not None else {"schema_version": 1}
            for label, v in [*values.items(), ("mean", mean)]:
                t = v + external_shift(shift, grid["stages"])
                rows.append({**FIXED, "cell": cell, **extra, **grid, "label": label, "val_auc": v + 0.01,
                             "test_auc": t if test_split else np.nan,
                             "test_ci_low": t - 0.05 if test_split else np.nan,
                             "test_ci_high": t + 0.05 if test_split else np.nan, "n_train": n_train,
                             "wall_s": 12.5, "run_dir": rd.as_posix()})  # fmt: skip

    for subset in subsets:
        for colorizer, stages in ARMS:
            for seed in range(3):
                grid = {"data.dataset": "synthetic", "model.backbone": "mobilenet_v2", "model.colorizer": colorizer,
                        "stages": stages, "data.subset": np.nan if subset is None else float(subset),
                        "trainer.seed": seed, "transfer": "", "transfer_name": ""}  # fmt: skip
                values = {lab: auc(colorizer, stages, subset, seed, lab) for lab in labels}
                add(cell_id("synthetic", colorizer, stages, subset, seed), grid, values, subset or 72)
    if transfer:
        for (colorizer, stages, tr), v in TARGET_AUC.items():
            for seed in range(3):
                src = cell_id("synthetic", "pixelshuffle", "color-module,all", None, seed) if tr else ""
                grid = {"data.dataset": "target", "model.backbone": "mobilenet_v2", "model.colorizer": colorizer,
                        "stages": stages, "data.subset": np.nan, "trainer.seed": seed, "transfer": src,
                        "transfer_name": tr}  # fmt: skip
                values = {lab: v + 0.01 * seed + (0.005 * seed * seed if tr else 0) + LABEL_AUC[lab] for lab in labels}
                add(cell_id("target", colorizer, stages, None, seed), grid, values, 50)
    df = pd.DataFrame(rows)
    df.to_parquet(study_dir / "results.parquet", index=False)
    return study_dir
