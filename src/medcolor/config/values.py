"""Typed configuration values and the one parser that builds every config section.

:class:`LRFind` (``find``), :class:`Auto` (``auto``), :class:`Fraction` and :class:`Count` (a training
subset) and :class:`StageLength` are what a value becomes when a configuration is built; :func:`opt`
declares a field with its checks (bounds, a non-empty path, choices, its flag); :class:`Section` parses
and checks every field of a dataclass from its type (``int``, ``float``, ``bool``, ``str``, ``Literal``,
unions, nested sections and lists of them) when it is created and on :meth:`Section.validate`.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import inspect
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn

from medcolor.errors import OptionError
from medcolor.normalization import MAX_IMAGE_SIZE

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


# ------------------------------------------------------------------------------------------ typed values
#: sanity bounds: values past them cannot work (memory, C integers) and would fail late, after training
MAX_SIZE, MAX_BATCH, MAX_WORKERS, MAX_STEPS = MAX_IMAGE_SIZE, 65536, 256, 10**9


class _Word(str):
    """A word (any case) that stands for a value decided later; one instance per class."""

    word: ClassVar[str] = ""
    shown: ClassVar[str] = ""

    def __new__(cls, *_: Any) -> _Word:
        if "_one" not in cls.__dict__:
            cls._one = super().__new__(cls, cls.word)  # type: ignore[attr-defined]
        return cls._one  # type: ignore[attr-defined]

    @classmethod
    def parse(cls, v: Any, key: str, where: str | None) -> _Word:
        if isinstance(v, str) and v.strip().lower() == cls.word:
            return cls()
        raise _Unconverted(key, f"expected {cls.shown}, got {v!r}", where)


class LRFind(_Word):
    """``lr: find`` (any case): the LR range test sets the stage's maximum learning rate."""

    word, shown = "find", "'find'"


class Auto(_Word):
    """``auto``: the value is decided where the run starts (e.g. ``num_workers`` by the machine)."""

    word, shown = "auto", "auto"


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


_LIMIT_OPS: dict[str, Callable[[Any, Any], bool]] = {">=": operator.ge, ">": operator.gt, "<": operator.lt}
_LIMIT_OPS["<="] = operator.le


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
    limits = [(op, b) for op, b in ((">=", at_least), (">", above), ("<", below), ("<=", at_most)) if b is not None]
    if _within(value, integer, limits):
        return
    bounds = [f"{op} {int(b) if float(b).is_integer() else f'{b:g}'}" for op, b in limits]
    what = ("an integer" if integer else "a number") + (" " + " and ".join(bounds) if bounds else "")
    raise OptionError(key, f"must be {what}{' or none' if optional else ''}, got {value!r}{hint}", source)


def _within(value: Any, integer: bool, limits: list[tuple[str, float]]) -> bool:
    """``value`` is a finite number (a whole one with ``integer``) within every limit."""
    whole = not integer or isinstance(value, int) or (_is_number(value) and float(value).is_integer())
    return _is_number(value) and whole and all(_LIMIT_OPS[op](value, b) for op, b in limits)


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


class Section:
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


def _plain(v: Any) -> Any:
    """A config value as YAML/JSON data (the typed values as the words and numbers they were read from)."""
    if isinstance(v, Section):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}  # type: ignore[arg-type]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (_Word, Count, Fraction)):  # as the plain word or number it was read from
        return next(t for t in (str, float, int) if isinstance(v, t))(v)
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
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, key)  # type: ignore[arg-type]
    by_origin = _BY_ORIGIN.get(typing.get_origin(tp))
    if by_origin is not None:
        return by_origin(tp, value, where, key, meta)
    return _finish(_scalar(tp, value, where, key), value, where, key, meta)


def _coerce_list(tp: Any, value: Any, where: str | None, key: str, meta: Any) -> Any:
    (item,) = typing.get_args(tp)
    if not isinstance(value, list):
        raise OptionError(key, f"expected a list, got {value!r}", where)
    return [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]


def _coerce_dict(tp: Any, value: Any, where: str | None, key: str, meta: Any) -> Any:
    if not isinstance(value, dict):
        raise OptionError(key, f"expected a mapping, got {value!r}", where)
    args = typing.get_args(tp)
    if len(args) == 2 and dataclasses.is_dataclass(args[1]):  # named sections (test_sets: {nih: {...}})
        return {str(k): _build(args[1], v, where, f"{key}.{k}") for k, v in value.items()}  # type: ignore[arg-type]
    return dict(value)


def _coerce_literal(tp: Any, value: Any, where: str | None, key: str, meta: Any) -> Any:
    choices = typing.get_args(tp)
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    noun = meta.get("noun")
    msg = f"unknown {noun} {value!r}; valid: " if noun else "must be one of "
    raise _Unconverted(key, msg + ", ".join(choices) + ("" if noun else f", got {value!r}"), where)


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in {"none", "null"})


def _coerce_union(tp: Any, value: Any, where: str | None, key: str, meta: Any) -> Any:
    args = typing.get_args(tp)
    if type(None) in args and _is_none(value):
        return None
    errors = []
    for a in args:
        if a is not type(None):
            try:
                return _coerce(a, value, where, key, meta)
            except _Unconverted as exc:
                errors.append(exc.problem)
    _raise_union_error(value, where, key, meta, errors)


def _raise_union_error(value: Any, where: str | None, key: str, meta: Any, errors: list[str]) -> NoReturn:
    """No type of a union took ``value``: what it must be (``expect``, the bounds of a number) or why not."""
    if "expect" in meta:
        raise OptionError(key, f"must be {meta['expect']}, got {value!r}", where)
    if len(errors) > 1 and any(k in meta for k in _NUMBER_CHECKS):  # a number or a word: what it must be
        check_number(key, value, **_bounds(meta), source=where)
    raise OptionError(key, f"invalid value {value!r} ({'; '.join(errors)})", where)


_BY_ORIGIN: dict[Any, Callable[[Any, Any, str | None, str, Any], Any]] = {
    list: _coerce_list,
    dict: _coerce_dict,
    Literal: _coerce_literal,
    typing.Union: _coerce_union,
    types.UnionType: _coerce_union,
}


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
    if tp not in _SCALARS:
        return value
    what, convert = _SCALARS[tp]
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError):
        raise _Unconverted(key, f"expected {what}, got {value!r}", where) from None


def _bool(value: Any) -> bool:
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    if not isinstance(value, bool):
        raise ValueError
    return value


def _int(value: Any) -> int:
    """``value`` as a whole number; ``ValueError`` (or ``TypeError``/``OverflowError``) where it is none."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    f = float(_not_bool(value))
    if not f.is_integer():
        raise ValueError
    return int(value) if isinstance(value, int) else int(f)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError
    return value


def _str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError
    return str(value)


#: how a scalar field's value is converted, by its type (other types keep the value as it is): what it must be
_SCALARS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    bool: ("true/false", _bool),
    int: ("an integer", _int),
    float: ("a number", lambda v: float(_not_bool(v))),
    str: ("a string", _str),
}


def section_of(tp: Any) -> type | None:
    """The config section a field holds: its dataclass type, or the item type of a list or mapping of them."""
    return next((t for t in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(t)), None)  # type: ignore[misc]


def config_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, type, dataclasses.Field, Any]]:
    """Every field of the config dataclass ``cls`` and of its sections, each section before its own fields: the
    dotted key (``data``, ``data.size``, ``stages.*.lr``: ``*`` for each item of a list or mapping of sections),
    the class that declares it, the field and its type."""
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key, tp = prefix + f.name, _hints(cls)[f.name]
        yield key, cls, f, tp
        section = section_of(tp)
        if section is not None:
            yield from config_fields(section, f"{key}.{'' if section is tp else '*.'}")


@functools.cache
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
