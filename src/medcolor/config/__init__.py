"""Run configuration: what to train on, which T/E/C, which stages, how — typed, parsed and checked once.

A run is described by a :class:`RunConfig`, written as YAML (``medcolor train --config run.yaml``), built
from a dict (:meth:`RunConfig.from_dict`), from command-line flags (generated from the fields below: their
``#:`` comments are the ``--help`` text) or in Python.  Whichever way it is built, every value is parsed
into its type and checked when the object is created (``__post_init__``), so nothing downstream decodes a
value again: ``lr`` is a float or :data:`LR_FIND` (``find``, any case), ``subset`` a :class:`Fraction`
(``0 < x <= 1``: ``1`` and ``1.0`` both mean the whole training set) or a :class:`Count` (a whole number of
images >= 2), ``num_workers`` an int or :data:`AUTO`, a stage's length one :class:`StageLength`.  An
error is an :class:`~medcolor.errors.OptionError` naming the key (``stages[1].lr``) and the file.
:func:`check_run_config` adds what needs the registries (dataset, T, E, strategy names and their
combination).  :func:`apply_overrides` is the one way to change keys of a configuration dict
(``{"stages.*.lr": 0.01, "data.size": 112}``): the command-line flags and the study grids both use it.

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
    operating: {threshold: youden, temperature: false}   # or sensitivity=0.9 / specificity=0.95
    test_sets:                        # external sets, evaluated after training (RUN/test_sets/<name>/)
      nih:
        dataset: chestxray14
        root: ../shared/data/nih-chestxray14-1000/images
        csv: ../shared/data/labels/nih/Data_Entry_2017_v2020.csv.gz
        on_missing: present
        labels: {PNEUMONIA: Pneumonia}  # the run's label -> the set's
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from medcolor.config.datasets import check_dataset_options
from medcolor.config.overrides import apply_overrides, diff_configs, expand_stages
from medcolor.config.testsets import OperatingConfig, TestSetConfig, check_test_set_names
from medcolor.config.values import (
    _FALSE,
    _TRUE,
    AUTO,
    LR_FIND,
    MAX_BATCH,
    MAX_SIZE,
    MAX_STEPS,
    MAX_WORKERS,
    Auto,
    Count,
    Fraction,
    LRFind,
    Section,
    StageLength,
    _build,
    _is_number,
    check_number,
    config_fields,
    field_docs,
    opt,
    parse_channels_last,
    section_of,
)
from medcolor.errors import ConfigError, OptionError, UnknownOptionValueError
from medcolor.yamlio import load_yaml, yaml_problem

#: seeds are used by numpy, torch and Python's random: non-negative, 32 bits (numpy's legacy seeding)
MAX_SEED = 2**32 - 1
MAX_BOOTSTRAP = 100_000  # the resample indices are held at once: n_test x bootstrap integers
LRRule = Literal["valley", "minimum", "steepest"]
#: how the LR range test's curve gives the max lr (medcolor.training.lr_suggest implements each)
LR_RULES: tuple[str, ...] = typing.get_args(LRRule)
#: valid ``trainer.precision`` values (``auto`` is resolved per machine by :mod:`medcolor.training.runtime`): the
#: ones medcolor trains; Lightning's ``bf16-true`` / ``64-true`` / ``16-true`` would cast weights the network keeps
#: in float32, so they are not offered
Precision = Literal["auto", "32-true", "32", "bf16-mixed", "16-mixed"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


def check_precision(precision: str) -> str:
    if str(precision).lower() not in PRECISIONS:
        raise OptionError("trainer.precision", f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return str(precision).lower()


_SPLIT_HINT = " (a fraction of the patients, or a split name)"
_SPLIT_EMPTY = "must be a fraction in (0, 1) or a split name, got an empty string"


@dataclass
class DataConfig(Section):
    _key: ClassVar[str] = "data"
    #: dataset registry name (chexpert, chestxray14, mura, csv, folder, synthetic)
    dataset: str = "synthetic"
    #: the dataset's image folder
    root: str | None = opt(path=True)
    #: the label file (default: the dataset's official file in root)
    csv: str | None = opt(path=True)
    #: a dataset option, e.g. policy=ones, patient_regex=kermany, labels=[Edema] (flag: KEY=VALUE, repeatable)
    options: dict[str, Any] = opt(dict, flag="--option")
    #: official split of the dataset used for training (None: the dataset's default)
    train_split: str | None = None
    #: validation: a fraction of the training patients (0.1) or an official split name (valid)
    val: float | str = opt(0.1, above=0, below=1, hint=_SPLIT_HINT, empty=_SPLIT_EMPTY)
    #: test: a fraction of the patients, an official split name, or none (evaluate on val)
    test: float | str | None = opt(0.1, above=0, below=1, hint=_SPLIT_HINT, empty=_SPLIT_EMPTY)
    #: seed of the patient split and of the subset draw
    split_seed: int = opt(0, at_least=0, at_most=MAX_SEED)
    #: training subset, label-proportional (paper Fig. 5): a fraction in (0, 1] (1 and 1.0: all) or a count >= 2
    subset: Fraction | Count | None = opt(expect="a fraction in (0, 1] or a whole number of images (2, 3, ...)")
    #: which independent draw of the subset (0, 1, 2: the paper's three datasets per size)
    subset_draw: int = opt(0, at_least=0)
    #: network input size in pixels (the paper: 320)
    size: int = opt(320, at_least=8, at_most=MAX_SIZE)
    #: images are decoded and reduced so their short side is this (default: size)
    load_size: int | None = opt(None, at_least=8, at_most=MAX_SIZE)
    #: decode images once into this memory-mapped cache (None: decode every epoch)
    cache_dir: str | None = opt(path=True)
    #: normalisation mean (default: the paper's CheXpert value) or 'compute' (from the training set)
    mean: float | Literal["compute"] | None = opt(hint=" (or 'compute')")
    #: normalisation std (default: the paper's CheXpert value)
    std: float | None = opt(above=0)
    #: images per batch
    batch_size: int = opt(16, at_least=1, at_most=MAX_BATCH)
    #: DataLoader worker processes, or auto (2 on the CPU, where the model uses the cores; beside GPUs up
    #: to 8 per GPU within the machine's cores: medcolor.utils.resolve_num_workers)
    num_workers: int | Auto = opt(AUTO, at_least=0, at_most=MAX_WORKERS, hint=" or auto")
    #: the paper's augmentation (random square crop, rotation +-10 deg, zoom 0-10 %, p=0.75)
    augment: bool = True
    #: where rotation/zoom runs: worker (per sample), device (batched on the accelerator), auto
    augment_on: Literal["auto", "worker", "device"] = opt("auto", strict=True)
    #: rows whose image is missing: error; skip (listed in data.json); present (the folder holds only part of
    #: the dataset, e.g. nih-chestxray14-1000)
    on_missing: Literal["error", "skip", "present"] = opt("error", strict=True)

    def _check(self, key: str, where: str | None) -> None:
        fractions = [v for v in (self.val, self.test) if _is_number(v)]
        if sum(fractions) >= 1:
            keys = (f"{key}.val", f"{key}.test")
            raise OptionError(keys, f"leave no training data ({' + '.join(map(str, fractions))})", where)


@dataclass
class ModelConfig(Section):
    _key: ClassVar[str] = "model"
    #: T: deconv | pixelshuffle | colorU | replicate (ablations: lut, replicate-imagenet); default:
    #: replicate for baseline stages, else pixelshuffle
    colorizer: str | None = None
    #: E: any torchvision classifier (resnet18, densenet121, mobilenet_v2...)
    backbone: str = "resnet18"
    #: E's weights: imagenet (download/cache), none, or a local state-dict file
    weights: str | None = opt("imagenet", path=True)
    #: start T from an exported colorizer (.safetensors, medcolor export-colorizer)
    colorizer_from: str | None = opt(path=True)
    #: a learnable T starts at random (the paper) or at the gray copy (a zero-initialised residual)
    colorizer_start: Literal["random", "gray"] = opt("random", strict=True)
    #: start T and E from an earlier run (its directory or model.safetensors); C is new
    init_from: str | None = opt(path=True)
    #: BatchNorm in frozen parts: fastai (trainable, as the paper) | stats | eval
    frozen_bn: Literal["fastai", "stats", "eval"] = opt("fastai", noun="frozen_bn mode", strict=True)
    #: dropout before C
    dropout: float = opt(0.0, at_least=0, below=1)

    def _check(self, key: str, where: str | None) -> None:
        if self.init_from and self.colorizer_from:
            raise OptionError(
                (f"{key}.init_from", f"{key}.colorizer_from"),
                "give one: init_from takes T (and E) from a run, colorizer_from takes T from an exported file",
                where,
            )


@dataclass
class LRFindConfig(Section):
    _key: ClassVar[str] = "stages.*.lr_find"
    #: LR finder: lowest learning rate tried
    min_lr: float = opt(1e-6, above=0, flag="--lr-min")
    #: LR finder: highest learning rate tried
    max_lr: float = opt(1.0, above=0, flag="--lr-max")
    #: LR finder: number of steps
    num_training: int = opt(100, at_least=2, at_most=MAX_STEPS, flag="--lr-steps")
    #: LR finder: how the max lr is read off the curve (steepest: the steepest descent of the smoothed loss;
    #: minimum: lowest loss / 10; valley: the middle of the longest descent).  Study: docs/reproduction-112px.md
    rule: LRRule = opt("steepest", noun="LR finder rule", flag="--lr-rule", strict=True)

    def _check(self, key: str, where: str | None) -> None:
        if self.max_lr <= self.min_lr:
            keys = (f"{key}.min_lr", f"{key}.max_lr")
            msg = f"the LR range test needs min_lr < max_lr, got {self.min_lr:g} and {self.max_lr:g}"
            raise OptionError(keys, msg, where)


@dataclass
class StageConfig(Section):
    _key: ClassVar[str] = "stages.*"
    #: comma-separated strategies, e.g. color-module,all or baseline (one stage each)
    strategy: str = opt("color-module", flag="--stages")
    #: one-cycle maximum learning rate, or 'find' (an LR range test before the stage).  Default 0.01
    #: (fastai's for one-cycle SGD fine-tuning; the LR-rule study: docs/reproduction-112px.md)
    lr: float | LRFind = opt(0.01, above=0, hint=" (or 'find': an LR range test)")
    #: stage length in epochs over the training set (or give iterations; default: 1 epoch)
    epochs: float | None = opt(None, above=0, at_most=MAX_STEPS)
    #: stage length in iterations
    iterations: int | None = opt(None, at_least=1, at_most=MAX_STEPS)
    #: validate + checkpoint every N iterations (the paper: 4800; default: once per epoch)
    val_every: int | None = opt(None, at_least=1, at_most=MAX_STEPS)
    #: re-initialise C at the start of the stage (default: the strategy's choice, i.e. yes)
    reset_head: bool | None = None
    #: SGD momentum, the upper bound of the one-cycle momentum cycle (fastai: 0.95 -> 0.85 -> 0.95)
    momentum: float = opt(0.95, at_least=0, below=1)
    #: SGD weight decay
    weight_decay: float = opt(1e-4, at_least=0)
    #: fraction of the cycle spent increasing the learning rate (fastai: 0.25)
    pct_start: float = opt(0.25, above=0, below=1)
    lr_find: LRFindConfig = opt(LRFindConfig)

    def _check(self, key: str, where: str | None) -> None:
        if self.epochs is not None and self.iterations is not None:
            raise OptionError((f"{key}.epochs", f"{key}.iterations"), "give epochs or iterations, not both", where)

    @property
    def length(self) -> StageLength:
        return StageLength(self.epochs, self.iterations)


@dataclass
class TrainerConfig(Section):
    _key: ClassVar[str] = "trainer"
    #: the run's seed (every random draw of training derives from it)
    seed: int = opt(0, at_least=0, at_most=MAX_SEED)
    #: auto | 32-true | bf16-mixed | 16-mixed (auto: bf16-mixed where supported)
    precision: Precision = opt("auto", noun="precision")
    #: channels_last memory format: auto | true | false
    channels_last: str | bool = opt("auto", choices=("auto", *_TRUE, *_FALSE))
    #: auto | cpu | gpu
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "auto"
    #: number of devices (GPUs), -1 (all) or a list like 0,1; several -> DDP
    devices: int | str = "auto"
    #: number of machines
    num_nodes: int = opt(1, at_least=1)
    #: Lightning's distributed strategy (auto picks ddp for several devices)
    strategy: str = opt("auto", flag="--distributed-strategy")
    #: show progress bars / lines
    progress: bool = True
    #: torch deterministic algorithms: true | false | warn
    deterministic: str | bool = opt("warn", choices=("true", "false", "warn"))
    #: bootstrap resamples for the test set's 95 % confidence intervals (0: none)
    bootstrap: int = opt(1000, at_least=0, at_most=MAX_BOOTSTRAP)
    #: frozen-E feature cache for stages where nothing before C trains: off | auto (used where exact)
    feature_cache: Literal["off", "auto"] = "off"
    #: experiment log of each stage: csv (always written) | tensorboard | mlflow (each also writes the CSV)
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"

    def _check(self, key: str, where: str | None) -> None:
        dev = self.devices
        count = isinstance(dev, int) and not isinstance(dev, bool) and (dev >= 1 or dev == -1)
        if not (count or (isinstance(dev, str) and (dev == "auto" or re.fullmatch(r"\d+(,\d+)*,?", dev)))):
            msg = f"must be auto, a number >= 1, -1 (all) or a list like 0,1; got {dev!r}"
            raise OptionError(f"{key}.devices", msg, where)


@dataclass
class RunConfig(Section):
    data: DataConfig = opt(DataConfig)
    model: ModelConfig = opt(ModelConfig)
    stages: list[StageConfig] = opt(lambda: [StageConfig("color-module")])
    trainer: TrainerConfig = opt(TrainerConfig)
    #: run directory
    output: str = opt("runs/run", path=True)
    #: a free-text name for reports
    name: str | None = None
    #: external test sets by name (YAML mapping name -> TestSetConfig): the best network is evaluated on each
    #: after training (``RUN/test_sets/<name>/``; summary.json ``test_sets``)
    test_sets: dict[str, TestSetConfig] = opt(dict)
    operating: OperatingConfig = opt(OperatingConfig)  # threshold rule, temperature scaling (operating_points.json)

    def _check(self, key: str, where: str | None) -> None:
        check_test_set_names(self.test_sets, where)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | None = "config") -> RunConfig:
        return _build(cls, d, where)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_yaml(path), where=str(path))


# ------------------------------------------------------------------------------------------ files
def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} {'is not a file' if p.exists() else 'does not exist'}")
    try:
        d = load_yaml(p.read_text(encoding="utf-8"), f"config file {p}") or {}  # aliases bounded
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"config file {p} must hold a mapping (data:, model:, stages:, ...), not {type(d).__name__}")
    return d


def read_data_config(path: str | os.PathLike) -> DataConfig:
    """The ``data:`` section of a YAML run configuration (or a file holding only that section)."""
    d = read_yaml(path)
    return RunConfig.from_dict({"data": d.get("data", d)}, where=str(path)).data


# ------------------------------------------------------------------------------------------ names
def check_run_config(cfg: RunConfig) -> None:
    """Fail fast — before any data is read or any stage runs: every value again (fields may have been
    assigned since the config was built), then the names of registered things and their combination.
    (The files a run reads and writes: :func:`medcolor.validation.check_run_files`.)"""
    from medcolor.colorizers import COLORIZERS
    from medcolor.strategies import check_stage_sequence, default_colorizer, get_strategy

    if not cfg.stages:
        raise OptionError("stages", "the run has no stages; give at least one strategy (e.g. color-module,all)")
    check_dataset_options(cfg.data)
    for name, ts in cfg.test_sets.items():
        check_dataset_options(ts, f"test_sets.{name}")
    cfg.validate()
    for key, problem in unknown_names(cfg)[:1]:
        raise UnknownOptionValueError(key, problem)
    if not cfg.model.init_from:
        _check_input_size(cfg)
    strategies = [get_strategy(s.strategy) for s in cfg.stages]
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


def unknown_names(cfg: RunConfig) -> list[tuple[str, str]]:
    """``(key, problem)`` for each name no registry holds, in this order: ``model.colorizer``, ``model.backbone``
    (unless T and E come from ``init_from``), ``stages[i].strategy``; each problem names the valid ones."""
    from medcolor.backbones import _unknown_backbone, is_backbone
    from medcolor.colorizers import COLORIZERS
    from medcolor.strategies import STRATEGIES

    out: list[tuple[str, str]] = []
    if cfg.model.colorizer is not None:
        _lookup(out, "model.colorizer", COLORIZERS, cfg.model.colorizer)
    if not cfg.model.init_from and not is_backbone(cfg.model.backbone):
        out.append(("model.backbone", _unknown_backbone(cfg.model.backbone)))
    for i, stage in enumerate(cfg.stages):
        _lookup(out, f"stages[{i}].strategy", STRATEGIES, stage.strategy)
    return out


def _lookup(out: list[tuple[str, str]], key: str, registry: Any, name: str) -> None:
    try:
        registry.get(name)
    except ConfigError as exc:
        out.append((key, str(exc)))


def _check_input_size(cfg: RunConfig) -> None:
    """``model.backbone`` takes inputs of ``data.size`` (some take one size only)."""
    from medcolor.backbones import data_config

    fixed = data_config(cfg.model.backbone)
    if fixed["fixed_input_size"] and int(fixed["input_size"][-1]) != cfg.data.size:
        raise OptionError(
            "data.size", f"is {cfg.data.size}, but {cfg.model.backbone} takes only {fixed['input_size'][-1]} px"
        )


__all__ = [
    "AUTO",
    "LR_FIND",
    "LR_RULES",
    "MAX_BOOTSTRAP",
    "MAX_SEED",
    "PRECISIONS",
    "Auto",
    "Count",
    "DataConfig",
    "Fraction",
    "LRFind",
    "LRFindConfig",
    "ModelConfig",
    "OperatingConfig",
    "RunConfig",
    "Section",
    "StageConfig",
    "StageLength",
    "TestSetConfig",
    "TrainerConfig",
    "apply_overrides",
    "check_dataset_options",
    "check_number",
    "check_precision",
    "check_run_config",
    "check_test_set_names",
    "config_fields",
    "diff_configs",
    "expand_stages",
    "field_docs",
    "parse_channels_last",
    "read_data_config",
    "read_yaml",
    "section_of",
    "unknown_names",
]
