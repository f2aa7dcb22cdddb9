"""Training: the paper's multi-stage transfer procedure on Lightning (Sec. III-A, IV-B).

One job per module:

============ ==========================================================================================
pipeline     :func:`train` (a whole run: data, network, stages, test) and :func:`run_stage`
plan         a stage resolved once into a :class:`StagePlan` (strategy, lr, schedule, batch, seed...)
lr_find      the LR range test (``lr: find``)
lr_suggest   the rules (``lr_find.rule``: valley, minimum, steepest) reading a max lr off its curve
module       :class:`ColorTransferModule`: the network + the optimisation recipe (BCE, SGD, one-cycle)
data         Lightning data modules over a :class:`~medcolor.data.bundle.DataBundle`
callbacks    history.json, best and latest checkpoints, reseeding each step (exact resume)
runtime      accelerator, precision, channels_last, the Trainer, OOM hints
rundir       the run directory: layout, prepare/resume, read results back
============ ==========================================================================================

Configuration checks live with the configuration (:func:`medcolor.config.check_run_config`), test-set
evaluation with evaluation (:func:`medcolor.evaluation.evaluate_run`).

The names below are imported from their module on first use, so that light modules (``runtime``,
``plan``, ``rundir``) can be used without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_WHERE = {
    "train": "pipeline",
    "run_stage": "pipeline",
    "build_model": "pipeline",
    "Schedule": "plan",
    "StagePlan": "plan",
    "plan_stage": "plan",
    "resolve_stage": "plan",
    "find_lr": "lr_find",
    "LR_RULES": "lr_suggest",
    "suggest_lr": "lr_suggest",
    "ColorTransferModule": "module",
    "TrainData": "data",
    "TrainValData": "data",
    "History": "callbacks",
    "StageCallbacks": "callbacks",
    "Runtime": "runtime",
    "make_trainer": "runtime",
    "out_of_memory_hint": "runtime",
    "resolve_accelerator": "runtime",
    "resolve_channels_last": "runtime",
    "resolve_precision": "runtime",
    "resolve_runtime": "runtime",
    "CONFIG_FILE": "rundir",
    "RunResult": "rundir",
    "StageResult": "rundir",
    "model_metadata": "rundir",
    "prepare_run_dir": "rundir",
    "read_run": "rundir",
    "read_stage_result": "rundir",
    "stage_dir": "rundir",
    "check_run_config": "medcolor.config",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(where if "." in where else f"{__name__}.{where}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
