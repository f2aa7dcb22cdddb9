"""Specs and helpers shared by the study tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

BASE = """\
base:
  data:
    dataset: synthetic
    root: {root}
    options: {{n: 120, image_size: 40}}
    size: 32
    batch_size: 8
    num_workers: 0
    val: 0.2
    test: 0.2
  model: {{colorizer: colorU, backbone: mobilenet_v2, weights: none}}
  trainer: {{precision: 32-true, bootstrap: 50}}
stage_defaults: {{lr: 0.05, iterations: 4, val_every: 2}}
"""

#: 2 strategies x 3 seeds + one cell whose T comes from the color-module cell of seed 0
TINY = (
    "name: tiny\n"
    + BASE
    + """\
grid:
  trainer.seed: [0, 1, 2]
cells:
  baseline: {{stages: baseline, model.colorizer: replicate}}
  color: {{stages: color-module}}
  moved: {{stages: last-layer, transfer: T, trainer.seed: 0}}
transfer:
  T: {{from: {{cells: color}}, use: colorizer}}
"""
)


def write_spec(path: Path, template: str, root: Path) -> Path:
    path.write_text(template.format(root=root))
    return path


def subprocess_env() -> dict[str, str]:
    """The environment of a runner started as a subprocess: this source tree first on the path."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("MEDCOLOR_STUDY_PARENT", None)
    return env


def medcolor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medcolor.cli", *args]


#: a two-cell study whose second cell starts from the first's network (a transfer dependency)
CHAIN = (
    "name: chain\n"
    + BASE
    + """\
cells:
  source: {{stages: color-module}}
  target: {{stages: last-layer, transfer: T}}
transfer:
  T: {{from: {{cells: source}}, use: model}}
resources: {{time: 10, cpus: 1}}
"""
)


#: a tiny real study's base on Kermany (32 px, 64 training images, 2 iterations) tested also on the NIH folder's
#: Pneumonia (mapped onto Kermany's PNEUMONIA); ``{stage_defaults}`` and ``{body}`` (grid, cells...) per test
KERMANY_NIH = """\
name: {name}
base:
  data:
    dataset: folder
    root: {kermany}
    train_split: train
    options: {{patient_regex: kermany}}
    subset: 64
    val: 0.02
    test: 0.02
    size: 32
    batch_size: 16
    num_workers: 0
    augment: false
  model: {{backbone: mobilenet_v2, weights: {weights}}}
  trainer: {{precision: 32-true, bootstrap: 20}}
stage_defaults: {stage_defaults}
{body}test_sets:
  nih:
    dataset: chestxray14
    root: {nih}
    csv: {nih_csv}
    on_missing: present
    options: {{labels: [Pneumonia]}}
    labels: {{PNEUMONIA: Pneumonia}}
"""


def run_kermany_nih_study(tmp: Path, shared_path, weights: Path, **spec: str) -> tuple[Path, object]:
    """Write :data:`KERMANY_NIH` filled with ``spec`` (name, stage_defaults, body) under ``tmp`` and run it in
    this process; the study directory and the run's result."""
    from medcolor.study.executors import LocalExecutor
    from medcolor.study.runner import run_study

    path = tmp / "spec.yaml"
    path.write_text(
        KERMANY_NIH.format(
            kermany=shared_path("data", "kermany-pneumonia-224"),
            weights=weights,
            nih=shared_path("data", "nih-chestxray14-1000", "images"),
            nih_csv=shared_path("data", "labels", "nih", "Data_Entry_2017_v2020.csv.gz"),
            **spec,
        )
    )
    return tmp / "study", run_study(path, tmp / "study", executor=LocalExecutor(workers=0, threads=1))
