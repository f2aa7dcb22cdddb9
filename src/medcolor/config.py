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

from medcolor.errors import ConfigError, OptionError, UnknownNameError, UnknownOptionValueError


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
    #: DataLoader worker processes (0: load in the main process); auto: 2 on the CPU (where the model
    #: uses the cores: a cached 320 px sample costs ~1 ms of a worker, a training step ~140 ms per image),
    #: beside GPUs up to 8 per GPU within the machine's cores (medcolor.utils.resolve_num_workers)
    num_workers: int | str = "auto"
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
    #: how a learnable T starts: "random" (the paper) or "gray" (a residual on the gray copy, zero at start)
    colorizer_start: str = "random"
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
    #: how the max lr is read off the curve: steepest | minimum | valley (medcolor.training.lr_suggest).
    #: Default steepest: in the LR-rule study (docs/reproduction.md, 3 subsets) it and minimum / 10 did not
    #: differ (94.2 vs 95.2 test AUC, one steepest draw picked 5.8e-4); valley was far behind (84.1)
    rule: str = "steepest"


@dataclass
class StageConfig:
    #: baseline | baseline-all | color-module | all | last-layer | transfer-all
    strategy: str = "color-module"
    #: the one-cycle maximum learning rate, or "find" (LR range test before the stage).  Default 0.01
    #: (fastai's for one-cycle SGD fine-tuning): on 1,000 Kermany images (colorU color-module, 120
    #: iterations, 3 subsets) it gave test AUC 97.9 where the range test's suggestions gave 94.2
    #: (steepest), 95.2 (minimum / 10) and 84.1 (valley): docs/reproduction.md, "LR rule"
    lr: float | str = 0.01
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
    #: frozen-E feature cache for stages where nothing before C trains: off | auto (used where exact)
    feature_cache: str = "off"


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
    def from_dict(cls, d: dict[str, Any], where: str | None = "config") -> RunConfig:
        return _build(cls, d, where)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_yaml(path), where=str(path))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} {'is not a file' if p.exists() else 'does not exist'}")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"config file {p} must hold a mapping (data:, model:, stages:, ...), not {type(d).__name__}")
    return d


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def read_data_config(path: str | os.PathLike) -> DataConfig:
    """The ``data:`` section of a YAML run configuration (or a file holding only that section)."""
    d = read_yaml(path)
    return RunConfig.from_dict({"data": d.get("data", d)}, where=str(path)).data


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, d: Any, where: str | None, key: str = "") -> Any:
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise OptionError(key, f"expected a mapping of {cls.__name__} options, got {d!r}", where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    kwargs = {}
    for k, value in d.items():
        name = str(k).replace("-", "_")
        if name not in fields:
            raise OptionError(key, f"unknown option {k!r}; valid options: {', '.join(fields)}", where)
        kwargs[name] = _coerce(hints[name], value, where, f"{key}.{name}" if key else name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str | None, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise OptionError(key, f"expected a list, got {value!r}", where)
        return [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise OptionError(key, f"expected a mapping, got {value!r}", where)
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
                return _coerce(a, value, where, key)
            except OptionError as exc:
                errors.append(exc.problem)
        raise OptionError(key, f"invalid value {value!r} ({'; '.join(errors)})", where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise OptionError(key, f"expected true/false, got {value!r}", where)
    if tp is int:
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(value) if isinstance(value, int) else int(f)
        except (TypeError, ValueError, OverflowError):
            raise OptionError(key, f"expected an integer, got {value!r}", where) from None
    if tp is float:
        if isinstance(value, bool):
            raise OptionError(key, f"expected a number, got {value!r}", where)
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise OptionError(key, f"expected a number, got {value!r}", where) from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise OptionError(key, f"expected a string, got {value!r}", where)
        return str(value)
    return value


#: valid ``trainer.precision`` values (``auto`` is resolved per machine by :mod:`medcolor.training.runtime`)
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise OptionError(
            "trainer.precision", f"unknown precision {precision!r}; valid: {', '.join(sorted(PRECISIONS))}"
        )
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
    raise OptionError("trainer.channels_last", f"must be auto, true or false, got {value!r}")


def check_run_config(cfg: RunConfig) -> None:
    """Fail fast — before any data is read or any stage runs — on names, values and combinations that
    cannot work (values: :func:`medcolor.validation.check_values`; the files a run reads and writes are
    checked by :func:`medcolor.validation.check_run_files` when the run directory is prepared)."""
    from medcolor.backbones import _unknown_backbone, is_backbone
    from medcolor.colorizers import COLORIZER_STARTS, COLORIZERS
    from medcolor.data.datasets import list_datasets
    from medcolor.strategies import check_frozen_bn, check_stage_sequence, default_colorizer, get_strategy
    from medcolor.training.lr_suggest import LR_RULES
    from medcolor.validation import check_values

    if not cfg.stages:
        raise OptionError("stages", "the run has no stages; give at least one strategy (e.g. color-module,all)")
    names = [n.lower() for n in list_datasets()]
    if cfg.data.dataset.lower() not in names:
        raise OptionError("data.dataset", f"unknown dataset {cfg.data.dataset!r}; valid datasets: {', '.join(names)}")
    check_values(cfg)
    if cfg.model.colorizer is not None:
        _named("model.colorizer", COLORIZERS.get, cfg.model.colorizer)
    if cfg.model.colorizer_start not in COLORIZER_STARTS:
        raise OptionError(
            "model.colorizer_start", f"is {cfg.model.colorizer_start!r}; valid: {', '.join(COLORIZER_STARTS)}"
        )
    if not cfg.model.init_from and not is_backbone(cfg.model.backbone):
        raise OptionError("model.backbone", _unknown_backbone(cfg.model.backbone))
    if not cfg.model.init_from:
        from medcolor.backbones import data_config

        fixed = data_config(cfg.model.backbone)
        if fixed["fixed_input_size"] and int(fixed["input_size"][-1]) != cfg.data.size:
            raise OptionError(
                "data.size", f"is {cfg.data.size}, but {cfg.model.backbone} takes only {fixed['input_size'][-1]} px"
            )
    _named("model.frozen_bn", check_frozen_bn, cfg.model.frozen_bn)
    check_precision(cfg.trainer.precision)
    parse_channels_last(cfg.trainer.channels_last)
    if str(cfg.trainer.feature_cache).lower() not in {"off", "auto"}:
        raise OptionError("trainer.feature_cache", f"must be off or auto, got {cfg.trainer.feature_cache!r}")
    strategies = [_named(f"stages[{i}].strategy", get_strategy, s.strategy) for i, s in enumerate(cfg.stages)]
    for i, s in enumerate(cfg.stages):
        if s.lr_find.rule not in LR_RULES:
            raise OptionError(
                f"stages[{i}].lr_find.rule", f"unknown LR finder rule {s.lr_find.rule!r}; valid: {', '.join(LR_RULES)}"
            )
    colorizer = cfg.model.colorizer or default_colorizer(strategies[0])
    if cfg.model.colorizer_start == "gray" and not COLORIZERS.get(colorizer).learnable:
        raise OptionError("model.colorizer_start", f"'gray' needs a learnable T; {colorizer!r} has no parameters")
    try:
        check_stage_sequence(
            strategies,
            colorizer=colorizer,
            learnable=COLORIZERS.get(colorizer).learnable or bool(cfg.model.colorizer_from),
            transferred=bool(cfg.model.colorizer_from or cfg.model.init_from),
        )
    except OptionError:
        raise
    except ConfigError as exc:
        raise OptionError("stages", str(exc)) from None


def _named(key: str, lookup: Any, name: str) -> Any:
    """``lookup(name)`` of a registry, its unknown-name error naming the option ``key``."""
    try:
        return lookup(name)
    except UnknownNameError as exc:
        raise UnknownOptionValueError(key, str(exc)) from None
    except OptionError:
        raise
    except ConfigError as exc:
        raise OptionError(key, str(exc)) from None


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
    "yaml_problem",
]
