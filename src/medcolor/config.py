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
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from medcolor.errors import ConfigError, OptionError, UnknownNameError, UnknownOptionValueError

#: seeds are used by numpy, torch and Python's random: non-negative, 32 bits (numpy's legacy seeding)
MAX_SEED = 2**32 - 1
#: sanity bounds: values past them cannot work (memory, C integers) and would fail late, after training
MAX_SIZE, MAX_BATCH, MAX_WORKERS, MAX_STEPS = 8192, 65536, 256, 10**9
MAX_BOOTSTRAP = 100_000  # the resample indices are held at once: n_test x bootstrap integers
LRRule = Literal["valley", "minimum", "steepest"]
#: how the LR range test's curve gives the max lr (medcolor.training.lr_suggest implements each)
LR_RULES: tuple[str, ...] = typing.get_args(LRRule)
Precision = Literal["auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"]
#: valid ``trainer.precision`` values (``auto`` is resolved per machine by :mod:`medcolor.training.runtime`)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


# ------------------------------------------------------------------------------------------ typed values
class LRFind(str):
    """``lr: find`` (any case): the LR range test sets the stage's maximum learning rate."""

    def __new__(cls) -> LRFind:
        return super().__new__(cls, "find")

    @classmethod
    def parse(cls, v: Any, key: str, where: str | None) -> LRFind:
        if isinstance(v, str) and v.strip().lower() == "find":
            return LR_FIND
        raise _Unconverted(key, f"expected 'find', got {v!r}", where)


class Auto(str):
    """``auto``: the value is decided where the run starts (e.g. ``num_workers`` by the machine)."""

    def __new__(cls) -> Auto:
        return super().__new__(cls, "auto")

    @classmethod
    def parse(cls, v: Any, key: str, where: str | None) -> Auto:
        if isinstance(v, str) and v.strip().lower() == "auto":
            return AUTO
        raise _Unconverted(key, f"expected auto, got {v!r}", where)


LR_FIND, AUTO = LRFind(), Auto()


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


class Fraction(float):
    """A training subset as a fraction of the training set, ``0 < x <= 1`` (``1``: all of it)."""

    @classmethod
    def parse(cls, v: Any, key: str, where: str | None) -> Fraction:
        f = _number(v)
        if f is None or not 0 < f <= 1:
            raise _Unconverted(key, f"expected a fraction in (0, 1], got {v!r}", where)
        return cls(f)

    def of(self, n: float) -> float:
        """The subset's size in a training set of ``n`` images."""
        return self * n

    def draw_kwargs(self) -> dict[str, Any]:
        """The keyword of :func:`medcolor.data.splits.label_subset` that draws it."""
        return {"fraction": float(self)}


class Count(int):
    """A training subset as a number of images (2, 3, ...)."""

    @classmethod
    def parse(cls, v: Any, key: str, where: str | None) -> Count:
        f = _number(v)
        if f is None or f <= 1 or not f.is_integer():
            raise _Unconverted(key, f"expected a whole number of images >= 2, got {v!r}", where)
        return cls(int(v) if isinstance(v, int) else int(f))

    def of(self, n: float) -> float:
        return min(int(self), n)

    def draw_kwargs(self) -> dict[str, Any]:
        return {"count": int(self)}


@dataclass(frozen=True)
class StageLength:
    """How long a stage trains: ``epochs`` over the training set or a number of ``iterations``."""

    epochs: float | None = None
    iterations: int | None = None

    def total(self, iterations_per_epoch: int) -> int:
        if self.iterations is not None:
            return int(self.iterations)
        return math.ceil((1.0 if self.epochs is None else self.epochs) * iterations_per_epoch)


# ------------------------------------------------------------------------------------------ checks
def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and (isinstance(v, int) or math.isfinite(v))


def check_number(
    key: str | tuple[str, ...],
    value: Any,
    *,
    integer: bool = False,
    at_least: float | None = None,
    above: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    optional: bool = False,
    hint: str = "",
    source: str | None = None,
) -> None:
    """``value`` is a finite number (an integer with ``integer``) within the bounds given (``None`` when
    ``optional``); otherwise an :class:`OptionError` for ``key`` that says what it must be."""
    if value is None and optional:
        return
    limits = ((">=", at_least), (">", above), ("<", below), ("<=", at_most))
    bounds = [f"{op} {int(b) if float(b).is_integer() else f'{b:g}'}" for op, b in limits if b is not None]
    ok = _is_number(value) and (not integer or isinstance(value, int) or float(value).is_integer())
    if ok:
        ok = (
            (at_least is None or value >= at_least)
            and (above is None or value > above)
            and (below is None or value < below)
            and (at_most is None or value <= at_most)
        )
    if not ok:
        what = ("an integer" if integer else "a number") + (" " + " and ".join(bounds) if bounds else "")
        raise OptionError(key, f"must be {what}{' or none' if optional else ''}, got {value!r}{hint}", source)


def check_precision(precision: str) -> str:
    if str(precision).lower() not in PRECISIONS:
        raise OptionError("trainer.precision", f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return str(precision).lower()


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


_NUMBER_CHECKS = ("at_least", "above", "below", "at_most", "hint")


def opt(default: Any = None, **meta: Any) -> Any:
    """A field with its checks: ``at_least``/``above``/``below``/``at_most`` (numbers), ``hint`` (added to
    the message), ``expect`` (what a bad value must be), ``path`` (a non-empty path), ``noun`` (in the
    unknown-choice message), ``flag`` (the command-line flag), ``strict`` (the flag refuses other choices)."""
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------------ sections
_BUILDING: contextvars.ContextVar[tuple[type, str, str | None] | None] = contextvars.ContextVar(
    "medcolor_config_building", default=None
)


class _Section:
    """A config section: its fields are parsed into their types and checked when it is created
    (and again by :meth:`validate`, e.g. after a field was assigned)."""

    _key: ClassVar[str] = ""

    def __post_init__(self) -> None:
        ctx = _BUILDING.get()
        key, where = (ctx[1], ctx[2]) if ctx is not None and ctx[0] is type(self) else (self._key, None)
        self.validate(key, where)

    def validate(self, key: str | None = None, where: str | None = None) -> None:
        key = self._key if key is None else key
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            k = f"{key}.{f.name}" if key else f.name
            object.__setattr__(self, f.name, _coerce(hints[f.name], getattr(self, f.name), where, k, f.metadata))
        self._check(key, where)

    def _check(self, key: str, where: str | None) -> None:
        """Checks across fields."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


_SPLIT_HINT = " (a fraction of the patients, or a split name)"
_SPLIT_EMPTY = "must be a fraction in (0, 1) or a split name, got an empty string"


@dataclass
class DataConfig(_Section):
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
class ModelConfig(_Section):
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
class LRFindConfig(_Section):
    _key: ClassVar[str] = "stages.*.lr_find"
    #: LR finder: lowest learning rate tried
    min_lr: float = opt(1e-6, above=0, flag="--lr-min")
    #: LR finder: highest learning rate tried
    max_lr: float = opt(1.0, above=0, flag="--lr-max")
    #: LR finder: number of steps
    num_training: int = opt(100, at_least=2, at_most=MAX_STEPS, flag="--lr-steps")
    #: LR finder: how the max lr is read off the curve (steepest: the steepest descent of the smoothed loss;
    #: minimum: lowest loss / 10; valley: the middle of the longest descent).  Study: docs/reproduction.md
    rule: LRRule = opt("steepest", noun="LR finder rule", flag="--lr-rule", strict=True)

    def _check(self, key: str, where: str | None) -> None:
        if self.max_lr <= self.min_lr:
            keys = (f"{key}.min_lr", f"{key}.max_lr")
            msg = f"the LR range test needs min_lr < max_lr, got {self.min_lr:g} and {self.max_lr:g}"
            raise OptionError(keys, msg, where)


@dataclass
class StageConfig(_Section):
    _key: ClassVar[str] = "stages.*"
    #: comma-separated strategies, e.g. color-module,all or baseline (one stage each)
    strategy: str = opt("color-module", flag="--stages")
    #: one-cycle maximum learning rate, or 'find' (an LR range test before the stage).  Default 0.01
    #: (fastai's for one-cycle SGD fine-tuning; the LR-rule study: docs/reproduction.md)
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
class TrainerConfig(_Section):
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

    def _check(self, key: str, where: str | None) -> None:
        dev = self.devices
        count = isinstance(dev, int) and not isinstance(dev, bool) and (dev >= 1 or dev == -1)
        if not (count or (isinstance(dev, str) and (dev == "auto" or re.fullmatch(r"\d+(,\d+)*,?", dev)))):
            msg = f"must be auto, a number >= 1, -1 (all) or a list like 0,1; got {dev!r}"
            raise OptionError(f"{key}.devices", msg, where)


@dataclass
class RunConfig(_Section):
    data: DataConfig = opt(DataConfig)
    model: ModelConfig = opt(ModelConfig)
    stages: list[StageConfig] = opt(lambda: [StageConfig("color-module")])
    trainer: TrainerConfig = opt(TrainerConfig)
    #: run directory
    output: str = opt("runs/run", path=True)
    #: a free-text name for reports
    name: str | None = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | None = "config") -> RunConfig:
        return _build(cls, d, where)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_yaml(path), where=str(path))


def _plain(v: Any) -> Any:
    """A config value as YAML/JSON data (the typed values as the words and numbers they were read from)."""
    if isinstance(v, _Section):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}  # type: ignore[arg-type]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (LRFind, Auto)):
        return str(v)
    if isinstance(v, bool):
        return v
    if isinstance(v, Count):
        return int(v)
    if isinstance(v, Fraction):
        return float(v)
    return copy.deepcopy(v)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, d: Any, where: str | None, key: str | None = None) -> Any:
    key = getattr(cls, "_key", "") if key is None else key
    if isinstance(d, cls):
        d.validate(key, where)  # type: ignore[attr-defined]
        return d
    if not isinstance(d, dict):
        raise OptionError(key, f"expected a mapping of {cls.__name__} options, got {d!r}", where)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, value in d.items():
        name = str(k).replace("-", "_")
        if name not in names:
            raise OptionError(key, f"unknown option {k!r}; valid options: {', '.join(names)}", where)
        kwargs[name] = value
    token = _BUILDING.set((cls, key, where))
    try:
        return cls(**kwargs)
    finally:
        _BUILDING.reset(token)


def _coerce(tp: Any, value: Any, where: str | None, key: str, meta: Any = None) -> Any:
    meta = meta or {}
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, key)  # type: ignore[arg-type]
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise OptionError(key, f"expected a list, got {value!r}", where)
        return [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise OptionError(key, f"expected a mapping, got {value!r}", where)
        return dict(value)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        noun = meta.get("noun")
        msg = f"unknown {noun} {value!r}; valid: " if noun else "must be one of "
        raise _Unconverted(key, msg + ", ".join(choices) + ("" if noun else f", got {value!r}"), where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in {"none", "null"})):
            return None
        errors = []
        for a in args:
            if a is not type(None):
                try:
                    return _coerce(a, value, where, key, meta)
                except _Unconverted as exc:
                    errors.append(exc.problem)
        if "expect" in meta:
            raise OptionError(key, f"must be {meta['expect']}, got {value!r}", where)
        if len(errors) > 1 and any(k in meta for k in _NUMBER_CHECKS):  # a number or a word: what it must be
            check_number(key, value, **_bounds(meta), source=where)
        raise OptionError(key, f"invalid value {value!r} ({'; '.join(errors)})", where)
    return _finish(_scalar(tp, value, where, key), value, where, key, meta)


class _Unconverted(OptionError):
    """A value that is not of the type tried (the next type of a union is tried)."""


def _finish(v: Any, value: Any, where: str | None, key: str, meta: Any) -> Any:
    """The checks of a converted value: bounds of numbers, non-empty paths, choices of words."""
    if isinstance(v, (int, float)) and not isinstance(v, (bool, Count, Fraction)):
        check_number(key, v, integer=isinstance(v, int), **_bounds(meta), source=where)
    if isinstance(v, str) and not v.strip() and (meta.get("path") or "empty" in meta):
        raise OptionError(key, meta.get("empty", "is an empty path"), where)
    if isinstance(v, (str, bool)) and "choices" in meta and str(v).lower() not in meta["choices"]:
        raise OptionError(key, f"must be one of {', '.join(meta['choices'])}, got {value!r}", where)
    return v


def _bounds(meta: Any) -> dict[str, Any]:
    return {k: meta[k] for k in _NUMBER_CHECKS if k in meta}


def _scalar(tp: Any, value: Any, where: str | None, key: str) -> Any:
    if hasattr(tp, "parse"):
        return tp.parse(value, key, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise _Unconverted(key, f"expected true/false, got {value!r}", where)
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
            raise _Unconverted(key, f"expected an integer, got {value!r}", where) from None
    if tp is float:
        if isinstance(value, bool):
            raise _Unconverted(key, f"expected a number, got {value!r}", where)
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise _Unconverted(key, f"expected a number, got {value!r}", where) from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise _Unconverted(key, f"expected a string, got {value!r}", where)
        return str(value)
    return value


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each field of a config dataclass, on one line."""
    docs, pending = {}, []
    for line in inspect.getsource(cls).splitlines():
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
        elif (m := re.match(r"(\w+)\s*:", s)) and pending:
            docs[m.group(1)] = " ".join(pending)
            pending = []
        else:
            pending = []
    return docs


# ------------------------------------------------------------------------------------------ files
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


# ------------------------------------------------------------------------------------------ overrides
#: a stage of a configuration that names none
DEFAULT_STAGE = {"strategy": "color-module"}


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``, section by section (``options`` are replaced as a whole)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``d[a][b] = value`` for ``key`` ``a.b`` (sections created; a whole top-level section is merged)."""
    parts = [p.replace("-", "_") for p in key.split(".")]
    cur = d
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    last = parts[-1]
    if isinstance(value, dict) and isinstance(cur.get(last), dict) and len(parts) == 1:
        cur[last] = deep_merge(cur[last], value)
    else:
        cur[last] = copy.deepcopy(value)
    if last in ("epochs", "iterations"):  # a stage's length is one or the other
        cur.pop("iterations" if last == "epochs" else "epochs", None)


def expand_stages(value: Any, template: dict[str, Any]) -> list[dict[str, Any]]:
    """A stage list from a shorthand (``"color-module,all"``: one stage per name), a list of names or
    mappings, or one mapping; each stage starts from ``template``."""
    if isinstance(value, str):
        items: list[Any] = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, dict):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(f"expected strategy names ('color-module,all') or stage mappings, got {value!r}")
    out = []
    for it in items:
        if isinstance(it, str):
            if "," in it:
                raise ConfigError(f"{it!r} inside a list: write the stages as one string or as a list, not both")
            out.append({**copy.deepcopy(template), "strategy": it})
        elif isinstance(it, dict):
            base = copy.deepcopy(template)
            for a, b in (("epochs", "iterations"), ("iterations", "epochs")):
                if a in it:  # a stage's own length replaces the template's
                    base.pop(b, None)
            out.append(deep_merge(base, it))
        else:
            raise ConfigError(f"a stage is a strategy name or a mapping, got {it!r}")
    if not out:
        raise OptionError("stages", "the run has no stages; give at least one strategy (e.g. color-module,all)")
    return out


def apply_overrides(
    d: dict[str, Any], overrides: dict[str, Any], stage_defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Set dotted keys of the configuration dict ``d`` in place (and return it), before it is parsed:
    ``data.size``, ``data.options.KEY``, a whole section, ``stages`` (a shorthand ``"color-module,all"``
    or a list: each stage from ``stage_defaults``, or else from the first stage of ``d``) and
    ``stages.*.KEY`` / ``stages.KEY`` (that key of every stage; ``epochs`` replaces ``iterations`` and back)."""
    for key, value in overrides.items():
        parts = key.replace("-", "_").split(".")
        if parts == ["stages"]:
            old = d.get("stages") or [{}]
            template = stage_defaults if stage_defaults is not None else old[0]
            d["stages"] = expand_stages(value, {k: v for k, v in template.items() if k != "strategy"})
        elif parts[0] == "stages":
            if d.get("stages") is None:
                d["stages"] = [dict(DEFAULT_STAGE)]
            sub = ".".join(parts[2:] if parts[1] == "*" else parts[1:])
            for st in d["stages"]:
                set_dotted(st, sub, value)
        else:
            set_dotted(d, key, value)
    return d


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


# ------------------------------------------------------------------------------------------ names
#: dataset constructor arguments that have their own option (never a ``data.options`` key)
_OWN_OPTIONS = {"root": "data.root", "csv": "data.csv", "load_size": "data.size", "cache": "data.cache_dir"}
_OWN_OPTIONS |= {"on_missing": "data.on_missing", "transform": "", "options": ""}


def check_dataset_options(d: DataConfig) -> None:
    """``data.options`` are keyword arguments the dataset class takes (unknown keys named with the valid ones)."""
    from medcolor.data.datasets import DATASETS, dataset_options

    try:
        cls = DATASETS.get(d.dataset)
    except UnknownNameError:
        names = ", ".join(DATASETS.names())
        raise OptionError("data.dataset", f"unknown dataset {d.dataset!r}; valid datasets: {names}") from None
    valid = dataset_options(cls)
    for k in d.options:
        if not isinstance(k, str) or not k.strip():
            raise OptionError("data.options", f"option names must be non-empty words, got {k!r}")
        if k in _OWN_OPTIONS:
            own = _OWN_OPTIONS[k]
            raise OptionError("data.options", f"{k!r} is not a dataset option" + (f"; set {own}" if own else ""))
        if k not in valid:
            raise OptionError(
                "data.options", f"dataset {d.dataset!r} has no option {k!r}; valid options: {', '.join(valid)}"
            )


def check_run_config(cfg: RunConfig) -> None:
    """Fail fast — before any data is read or any stage runs: every value again (fields may have been
    assigned since the config was built), then the names of registered things and their combination.
    (The files a run reads and writes: :func:`medcolor.validation.check_run_files`.)"""
    from medcolor.backbones import _unknown_backbone, list_backbones
    from medcolor.colorizers import COLORIZERS
    from medcolor.strategies import check_stage_sequence, default_colorizer, get_strategy

    if not cfg.stages:
        raise OptionError("stages", "the run has no stages; give at least one strategy (e.g. color-module,all)")
    check_dataset_options(cfg.data)
    cfg.validate()
    if cfg.model.colorizer is not None:
        _named("model.colorizer", COLORIZERS.get, cfg.model.colorizer)
    if not cfg.model.init_from and cfg.model.backbone not in list_backbones():
        raise OptionError("model.backbone", _unknown_backbone(cfg.model.backbone))
    strategies = [_named(f"stages[{i}].strategy", get_strategy, s.strategy) for i, s in enumerate(cfg.stages)]
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
    "RunConfig",
    "StageConfig",
    "StageLength",
    "TrainerConfig",
    "apply_overrides",
    "check_dataset_options",
    "check_number",
    "check_precision",
    "check_run_config",
    "deep_merge",
    "diff_configs",
    "expand_stages",
    "field_docs",
    "parse_channels_last",
    "read_data_config",
    "read_yaml",
    "set_dotted",
    "yaml_problem",
]
