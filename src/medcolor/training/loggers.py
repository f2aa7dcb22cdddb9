"""Experiment logs of a stage (Lightning loggers), in the stage's directory:

* ``logs/csv/version_N/metrics.csv`` — always (Lightning's ``CSVLogger``): the training loss every
  :data:`LOG_EVERY_N_STEPS` steps, validation loss and AUCs after each chunk, one row per logged step;
* ``trainer.logger: tensorboard`` adds ``logs/tensorboard/version_N/`` (``tensorboard --logdir RUN``);
* ``trainer.logger: mlflow`` adds an MLflow run in the local file store ``RUN/mlruns``
  (``mlflow ui --backend-store-uri RUN/mlruns``), experiment = the run's name.

A resumed stage writes the next ``version_N``.  Loggers only record: the run computes the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcolor.errors import OptionError

LOGGERS = ("csv", "tensorboard", "mlflow")
LOG_DIR = "logs"
#: the training loss is logged every this many steps (validation metrics after every chunk)
LOG_EVERY_N_STEPS = 10


def check_logger(name: str) -> str:
    value = str(name).lower()
    if value not in LOGGERS:
        raise OptionError("trainer.logger", f"must be one of {', '.join(LOGGERS)}, got {name!r}")
    return value


def experiment_loggers(name: str, stage_dir: Path, *, run_name: str | None = None) -> list[Any]:
    """The Lightning loggers of a stage in ``stage_dir`` for ``trainer.logger`` = ``name``: a CSV logger,
    plus TensorBoard's or MLflow's when asked for (a clear error names the package when it is missing)."""
    from lightning.pytorch.loggers import CSVLogger

    kind = check_logger(name)
    stage_dir = Path(stage_dir)
    loggers: list[Any] = [CSVLogger(save_dir=str(stage_dir / LOG_DIR), name="csv")]
    if kind == "tensorboard":
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(stage_dir / LOG_DIR), name="tensorboard"))
        except ModuleNotFoundError as exc:
            raise OptionError("trainer.logger", f"tensorboard needs `pip install tensorboard` ({exc})") from None
    elif kind == "mlflow":
        try:
            from lightning.pytorch.loggers import MLFlowLogger

            store = (stage_dir.parent / "mlruns").resolve()
            loggers.append(
                MLFlowLogger(
                    experiment_name=run_name or stage_dir.parent.name,
                    run_name=stage_dir.name,
                    tracking_uri=store.as_uri(),
                )
            )
        except ModuleNotFoundError as exc:
            raise OptionError("trainer.logger", f"mlflow needs `pip install mlflow` ({exc})") from None
    return loggers


__all__ = ["LOGGERS", "LOG_DIR", "LOG_EVERY_N_STEPS", "check_logger", "experiment_loggers"]
