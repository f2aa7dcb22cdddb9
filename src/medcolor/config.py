"""Run configuration: what to train on, which T/E/C, which stages, how.

A run is described by a :class:`RunConfig`, written as YAML (``medcolor train --config run.yaml``)
or built in Python.  Every key can also be given as a command-line flag; flags override the file.
Unknown keys are errors that name the key and list the valid ones; :func:`check_run_config` checks
names and combinations (datasets, T, E, the stage sequence, precision) before any work starts.

.. code-block:: yaml

    data:
      dataset: folder                 # chexpert | chestxray14 | mura | csv | folder | synthetic
      root: ../shared/data/kermany-pneumonia-224/train
      options: {patient_regex: kermany}
      val: 0.1                        # patient-level fraction, or a split name of the dataset ("valid")
      test: 0.1
      subset: 1000                    # training subset: a fraction (0.001 = 0.1 %) or a count
      size: 224
      batch_size: 32
    model:
      colorizer: pixelshuffle
      backbone: mobilenet_v2
      weights: ../shared/weights/mobilenet_v2-imagenet-features.pth   # or imagenet, or none
    stages:
      - {strategy: color-module, lr: find, epochs: 2}
      - {strategy: all, lr: find, epochs: 2}
    trainer: {precision: auto, seed: 0}
    output: runs/kermany
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medcolor.errors import ConfigError


@dataclass
class DataConfig:
    #: dataset registry name (chexpert, chestxray14, mura, csv, folder, synthetic)
    dataset: str = "synthetic"
    #: image folder (see each dataset's documentation)
    root: str | None = None
    #: label file (default: the dataset's official file inside root)
    csv: str | None = None
    #: extra keyword arguments of the dataset class (policy, labels, patient_regex, category_column...)
    options: dict[str, Any] = field(default_factory=dict)
    #: official split of the dataset used for training (None: the dataset's default)
    train_split: str | None = None
    #: validation set: a fraction of the training patients, or an official split name ("valid")
    val: float | str = 0.1
    #: test set: a fraction of the patients, an official split name, or None (evaluate on val)
    test: float | str | None = 0.1
    #: seed of the patient split and of the subset draw
    split_seed: int = 0
    #: training subset: a fraction in (0, 1] or a count of images, label-proportional (paper Fig. 5)
    subset: float | None = None
    #: which independent draw of that subset (0, 1, 2: the paper's three datasets per size)
    subset_draw: int = 0
    #: network input size (the paper: 320)
    size: int = 320
    #: images are decoded and reduced so their short side is this (default: size)
    load_size: int | None = None
    #: a directory for the decoded-once image cache (None: decode every epoch)
    cache_dir: str | None = None
    #: normalisation; None = the paper's CheXpert values, "compute" = from the training set
    mean: float | str | None = None
    std: float | None = None
    batch_size: int = 16
    #: DataLoader worker processes (0: load in the main process)
    num_workers: int = 2
    #: the paper's augmentation (random square crop, rotation +-10 deg, zoom 0-10 %, p=0.75)
    augment: bool = True
    #: where rotation/zoom runs: "worker" (per sample), "device" (batched on the accelerator), "auto"
    augment_on: str = "auto"
    #: missing image files: "error" or "skip" (skipped rows are reported)
    on_missing: str = "error"


@dataclass
class ModelConfig:
    #: T: deconv | pixelshuffle | colorU | replicate (None: replicate for baseline stages, else pixelshuffle)
    colorizer: str | None = None
    #: E: any torchvision classifier
    backbone: str = "resnet18"
    #: E's weights: imagenet | none | a local state-dict file
    weights: str | None = "imagenet"
    #: start T from an exported colour module (medcolor export-colorizer)
    colorizer_from: str | None = None
    #: start T and E from an earlier run (its directory or model.safetensors); C is new
    init_from: str | None = None
    #: BatchNorm in frozen parts: fastai (trainable, as the paper) | stats | eval
    frozen_bn: str = "fastai"
    dropout: float = 0.0


@dataclass
class LRFindConfig:
    min_lr: float = 1e-6
    max_lr: float = 1.0
    num_training: int = 100
    #: how the max lr is read off the curve: valley | minimum | steepest (medcolor.training.lr_suggest)
    rule: str = "valley"


@dataclass
class StageConfig:
    #: baseline | baseline-all | color-module | all | last-layer | transfer-all
    strategy: str = "color-module"
    #: the one-cycle maximum learning rate, or "find" (LR range test before the stage)
    lr: float | str = "find"
    #: length: epochs over the training set, or iterations (one of them)
    epochs: float | None = None
    iterations: int | None = None
    #: validate and checkpoint every N iterations (the paper: 4800; default: once per epoch)
    val_every: int | None = None
    #: re-initialise C at the start of the stage (default: the strategy's, i.e. yes)
    reset_head: bool | None = None
    #: SGD momentum, the upper bound of the one-cycle momentum cycle: momentum falls to
    #: ``momentum - 0.1`` while the learning rate rises and comes back (fastai: 0.95 -> 0.85 -> 0.95)
    momentum: float = 0.95
    weight_decay: float = 1e-4
    #: fraction of the cycle spent increasing the learning rate (fastai: 0.25)
    pct_start: float = 0.25
    lr_find: LRFindConfig = field(default_factory=LRFindConfig)


@dataclass
class TrainerConfig:
    seed: int = 0
    #: auto | 32-true | bf16-mixed | 16-mixed (auto: bf16-mixed where supported)
    precision: str = "auto"
    #: channels_last memory format: auto | true | false
    channels_last: str | bool = "auto"
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    #: DDP etc.; auto picks ddp for several devices
    strategy: str = "auto"
    progress: bool = True
    #: torch deterministic algorithms: true | false | warn
    deterministic: str | bool = "warn"
    #: number of test-set bootstrap resamples for the 95 % confidence intervals
    bootstrap: int = 1000


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig("color-module")])
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    #: the run directory
    output: str = "runs/run"
    #: a free-text name for reports
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> RunConfig:
        return _build(cls, d, where)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_yaml(path), where=str(path))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"config file {p} must hold a mapping (data:, model:, stages:, ...), not {type(d).__name__}")
    return d


def read_data_config(path: str | os.PathLike) -> DataConfig:
    """The ``data:`` section of a YAML run configuration (or a file holding only that section)."""
    d = read_yaml(path)
    return RunConfig.from_dict({"data": d.get("data", d)}, where=str(path)).data


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, d: Any, where: str) -> Any:
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} options, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs = {}
    for key, value in d.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{where}: unknown option {key!r}; valid options: {', '.join(fields)}")
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in {"none", "null"} and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: invalid value {value!r} ({'; '.join(errors)})")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


#: valid ``trainer.precision`` values (``auto`` is resolved per machine by :mod:`medcolor.training.runtime`)
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(sorted(PRECISIONS))}")
    return precision


def parse_channels_last(value: str | bool) -> bool:
    """``trainer.channels_last``: true/false (or yes/no, 1/0); ``auto`` means true (faster on CPU and GPU)."""
    if isinstance(value, bool):
        return value
    v = str(value).lower()
    if v == "auto" or v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"channels_last must be auto, true or false, got {value!r}")


def check_run_config(cfg: RunConfig) -> None:
    """Fail fast — before any data is read or any stage runs — on names and combinations that cannot work."""
    from medcolor.backbones import _unknown_backbone, list_backbones
    from medcolor.colorizers import COLORIZERS
    from medcolor.data.datasets import list_datasets
    from medcolor.strategies import check_frozen_bn, check_stage_sequence, default_colorizer, get_strategy
    from medcolor.training.lr_suggest import LR_RULES

    if not cfg.stages:
        raise ConfigError("the run has no stages; give --stages (e.g. color-module,all)")
    names = [n.lower() for n in list_datasets()]
    if cfg.data.dataset.lower() not in names:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}; valid datasets: {', '.join(names)}")
    if cfg.model.colorizer is not None:
        COLORIZERS.get(cfg.model.colorizer)
    if not cfg.model.init_from and cfg.model.backbone not in list_backbones():
        raise ConfigError(_unknown_backbone(cfg.model.backbone))
    check_frozen_bn(cfg.model.frozen_bn)
    check_precision(cfg.trainer.precision)
    parse_channels_last(cfg.trainer.channels_last)
    strategies = [get_strategy(s.strategy) for s in cfg.stages]
    for i, (st, s) in enumerate(zip(cfg.stages, strategies, strict=True)):
        if st.iterations is not None and st.epochs is not None:
            raise ConfigError(f"stage {i + 1} ({s.name}): give epochs or iterations, not both")
        if not 0 <= st.momentum < 1:
            raise ConfigError(f"stage {i + 1} ({s.name}): momentum must be in [0, 1), got {st.momentum!r}")
        if st.lr_find.rule not in LR_RULES:
            raise ConfigError(
                f"stage {i + 1} ({s.name}): unknown LR finder rule {st.lr_find.rule!r} (--lr-rule, "
                f"lr_find.rule); valid: {', '.join(LR_RULES)}"
            )
    colorizer = cfg.model.colorizer or default_colorizer(strategies[0])
    check_stage_sequence(
        strategies,
        colorizer=colorizer,
        learnable=COLORIZERS.get(colorizer).learnable or bool(cfg.model.colorizer_from),
        transferred=bool(cfg.model.colorizer_from or cfg.model.init_from),
    )


def diff_configs(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


__all__ = [
    "PRECISIONS",
    "DataConfig",
    "LRFindConfig",
    "ModelConfig",
    "RunConfig",
    "StageConfig",
    "TrainerConfig",
    "check_precision",
    "check_run_config",
    "diff_configs",
    "parse_channels_last",
    "read_data_config",
    "read_yaml",
]
