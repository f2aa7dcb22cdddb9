"""Every option value checked up front, in one place, before any data is read or any folder is created.

* :func:`check_values` — the value of every key of a :class:`~medcolor.config.RunConfig` (ranges, choices,
  finite numbers), called by :func:`~medcolor.config.check_run_config`;
* :func:`check_run_files` — what the run reads and writes: input files exist, the transferred T fits
  ``model.colorizer``, the output folder can be created and written (called first by
  :func:`~medcolor.training.rundir.prepare_run_dir`, before it touches anything);
* small checks (:func:`check_number`, :func:`check_output_file`, :func:`check_output_folder`...) that the
  command line also uses for the options of ``predict``, ``colorize``, ``evaluate``, ``stats``, ``demo``.

Every failure is an :class:`~medcolor.errors.OptionError` naming the configuration key (or the flag) at
fault; the command line adds the flag of each key (``--size (data.size): must be an integer >= 1, got 0``).
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
from pathlib import Path
from typing import Any

from medcolor.config import DataConfig, RunConfig
from medcolor.errors import MedcolorError, OptionError

#: seeds are used by numpy, torch and Python's random: non-negative, 32 bits (numpy's legacy seeding)
MAX_SEED = 2**32 - 1
#: sanity bounds: values past them cannot work (memory, C integers) and would fail late, after training
MAX_SIZE, MAX_BATCH, MAX_WORKERS = 8192, 65536, 256
MAX_STEPS = 10**9
MAX_BOOTSTRAP = 100_000  # the resample indices are held at once: n_test x bootstrap integers (paper: 1000)
AUGMENT_ON = ("auto", "worker", "device")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
DETERMINISTIC = ("true", "false", "warn")
#: dataset constructor arguments that have their own option (never a ``data.options`` key)
_OWN_OPTIONS = {"root": "data.root", "csv": "data.csv", "load_size": "data.size", "cache": "data.cache_dir"}
_OWN_OPTIONS |= {"on_missing": "data.on_missing", "transform": ""}


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or math.isfinite(v)


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
        raise OptionError(key, f"must be {what}{' or none' if optional else ''}, got {value!r}{hint}")


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if str(value).lower() not in choices:
        raise OptionError(key, f"must be one of {', '.join(choices)}, got {value!r}")


def _check_fraction_or_name(key: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, str):
        if not value.strip():
            raise OptionError(key, "must be a fraction in (0, 1) or a split name, got an empty string")
        return
    check_number(key, value, above=0, below=1, hint=" (a fraction of the patients, or a split name)")


def check_data_values(d: DataConfig) -> None:
    """The values of a ``data:`` section (also for ``medcolor evaluate``)."""
    check_number("data.size", d.size, integer=True, at_least=8, at_most=MAX_SIZE)  # 8: the transforms' least
    check_number("data.load_size", d.load_size, integer=True, at_least=8, at_most=MAX_SIZE, optional=True)
    check_number("data.batch_size", d.batch_size, integer=True, at_least=1, at_most=MAX_BATCH)
    if d.num_workers != "auto":
        check_number("data.num_workers", d.num_workers, integer=True, at_least=0, at_most=MAX_WORKERS, hint=" or auto")
    check_number("data.split_seed", d.split_seed, integer=True, at_least=0, at_most=MAX_SEED)
    check_number("data.subset_draw", d.subset_draw, integer=True, at_least=0)
    s = d.subset
    if s is not None and not (_is_number(s) and (0 < s <= 1 or (s > 1 and (isinstance(s, int) or s.is_integer())))):
        raise OptionError(
            "data.subset", f"must be a fraction in (0, 1] or a whole number of images (2, 3, ...), got {s!r}"
        )
    _check_fraction_or_name("data.val", d.val, optional=False)
    _check_fraction_or_name("data.test", d.test, optional=True)
    fractions = [v for v in (d.val, d.test) if _is_number(v)]
    if sum(fractions) >= 1:
        raise OptionError(("data.val", "data.test"), f"leave no training data ({' + '.join(map(str, fractions))})")
    if d.mean is not None and d.mean != "compute":
        check_number("data.mean", d.mean, hint=" (or 'compute')")
    check_number("data.std", d.std, above=0, optional=True)
    check_choice("data.augment_on", d.augment_on, AUGMENT_ON)
    from medcolor.data.datasets.base import ON_MISSING

    check_choice("data.on_missing", d.on_missing, ON_MISSING)
    for key in ("root", "csv", "cache_dir"):
        if getattr(d, key) is not None and not str(getattr(d, key)).strip():
            raise OptionError(f"data.{key}", "is an empty path")
    check_dataset_options(d)


def check_dataset_options(d: DataConfig) -> None:
    """``data.options`` are keyword arguments the dataset class takes (unknown keys named with the valid ones)."""
    from medcolor.data.datasets import DATASETS

    if not isinstance(d.options, dict):
        raise OptionError("data.options", f"must be a mapping of KEY: VALUE, got {d.options!r}")
    try:
        cls = DATASETS.get(d.dataset)
    except MedcolorError:
        return  # the unknown name is reported by check_run_config
    valid: list[str] = []
    takes_any = True  # **kwargs of a dataset go to its base class (synthetic -> csv): follow them
    for klass in cls.__mro__:
        if not takes_any or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        valid += [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY and n not in _OWN_OPTIONS and n not in valid]
        takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for k in d.options:
        if not isinstance(k, str) or not k.strip():
            raise OptionError("data.options", f"option names must be non-empty words, got {k!r}")
        if k in _OWN_OPTIONS:
            own = _OWN_OPTIONS[k]
            raise OptionError("data.options", f"{k!r} is not a dataset option" + (f"; set {own}" if own else ""))
        if k not in valid and not takes_any:
            raise OptionError(
                "data.options", f"dataset {d.dataset!r} has no option {k!r}; valid options: {', '.join(valid)}"
            )


def check_values(cfg: RunConfig) -> None:
    """The value of every key of ``cfg`` (no names of registered things, no files: see the module doc)."""
    check_data_values(cfg.data)
    check_number("model.dropout", cfg.model.dropout, at_least=0, below=1)
    for key in ("weights", "colorizer_from", "init_from"):
        v = getattr(cfg.model, key)
        if v is not None and not str(v).strip():
            raise OptionError(f"model.{key}", "is an empty path")
    if cfg.model.init_from and cfg.model.colorizer_from:
        raise OptionError(
            ("model.init_from", "model.colorizer_from"),
            "give one: init_from takes T (and E) from a run, colorizer_from takes T from an exported file",
        )
    for i, st in enumerate(cfg.stages):
        k = f"stages[{i}]"
        if not (isinstance(st.lr, str) and st.lr.lower() == "find"):
            check_number(f"{k}.lr", st.lr, above=0, hint=" (or 'find': an LR range test)")
        check_number(f"{k}.epochs", st.epochs, above=0, at_most=MAX_STEPS, optional=True)
        check_number(f"{k}.iterations", st.iterations, integer=True, at_least=1, at_most=MAX_STEPS, optional=True)
        if st.epochs is not None and st.iterations is not None:
            raise OptionError((f"{k}.epochs", f"{k}.iterations"), "give epochs or iterations, not both")
        check_number(f"{k}.val_every", st.val_every, integer=True, at_least=1, at_most=MAX_STEPS, optional=True)
        check_number(f"{k}.weight_decay", st.weight_decay, at_least=0)
        check_number(f"{k}.momentum", st.momentum, at_least=0, below=1)
        check_number(f"{k}.pct_start", st.pct_start, above=0, below=1)
        lf = st.lr_find
        check_number(f"{k}.lr_find.min_lr", lf.min_lr, above=0)
        check_number(f"{k}.lr_find.max_lr", lf.max_lr, above=0)
        if lf.max_lr <= lf.min_lr:
            keys = (f"{k}.lr_find.min_lr", f"{k}.lr_find.max_lr")
            raise OptionError(keys, f"the LR range test needs min_lr < max_lr, got {lf.min_lr:g} and {lf.max_lr:g}")
        check_number(f"{k}.lr_find.num_training", lf.num_training, integer=True, at_least=2, at_most=MAX_STEPS)
    t = cfg.trainer
    check_number("trainer.seed", t.seed, integer=True, at_least=0, at_most=MAX_SEED)
    check_number("trainer.bootstrap", t.bootstrap, integer=True, at_least=0, at_most=MAX_BOOTSTRAP)
    check_number("trainer.num_nodes", t.num_nodes, integer=True, at_least=1)
    check_choice("trainer.accelerator", t.accelerator, ACCELERATORS)
    check_choice("trainer.deterministic", t.deterministic, DETERMINISTIC)
    dev = t.devices
    count = isinstance(dev, int) and not isinstance(dev, bool) and (dev >= 1 or dev == -1)
    if not (count or (isinstance(dev, str) and (dev == "auto" or re.fullmatch(r"\d+(,\d+)*,?", dev)))):
        raise OptionError("trainer.devices", f"must be auto, a number >= 1, -1 (all) or a list like 0,1; got {dev!r}")
    if not str(cfg.output).strip():
        raise OptionError("output", "is an empty path")


# ------------------------------------------------------------------------------------------- files
def _path_errors(check: Any) -> Any:
    """Turn what the file system says about an unusable path (name too long, a NUL byte, ``~nobody``)
    into an :class:`OptionError` for the option."""

    @functools.wraps(check)
    def wrapper(key: str, path: str | os.PathLike, **kw: Any) -> Path:
        try:
            return check(key, path, **kw)
        except (OSError, ValueError, RuntimeError) as exc:
            if isinstance(exc, OptionError):
                raise
            reason = getattr(exc, "strerror", None) or str(exc)
            raise OptionError(key, f"cannot use the path {str(path)[:80]!r}: {reason}") from None

    return wrapper


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_folder(key: str, folder: Path, target: Path) -> None:
    if not folder.is_dir():
        raise OptionError(key, f"cannot create {target}: {folder} is a file, not a folder")
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise OptionError(key, f"cannot write {target}: {folder} is on a read-only file system")
    except (AttributeError, OSError):
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OptionError(key, f"cannot write {target}: {folder} is not writable")


@_path_errors
def check_output_folder(key: str, path: str | os.PathLike, *, expand: bool = False) -> Path:
    """``path`` is a folder that exists and is writable, or one that can be created (``expand``: ``~`` is
    the home folder, as for the inputs; outputs are written where they are named)."""
    p = Path(path).expanduser() if expand else Path(path)
    if p.exists() and not p.is_dir():
        raise OptionError(key, f"{p} is a file; give a folder")
    _check_writable_folder(key, _nearest_existing(p), p)
    return p


@_path_errors
def check_output_file(key: str, path: str | os.PathLike, *, suffix: str | None = None) -> Path:
    """``path`` is a file that can be written (not a folder; its folder exists or can be created)."""
    p = Path(path)
    if p.is_dir():
        raise OptionError(key, f"{p} is a folder; give a file name" + (f" ending in {suffix}" if suffix else ""))
    if suffix and p.suffix.lower() != suffix:
        raise OptionError(key, f"{p} should end in {suffix}")
    if p.exists() and not os.access(p, os.W_OK):
        raise OptionError(key, f"cannot write {p}: it is not writable")
    _check_writable_folder(key, _nearest_existing(p.parent), p)
    return p


@_path_errors
def check_input(key: str, path: str | os.PathLike, *, folder: bool | None = False) -> Path:
    """``path`` exists, can be read, and is a folder (``folder=True``), a file (``False``) or either (``None``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise OptionError(key, f"{p} does not exist")
    if folder is not None and folder != p.is_dir():
        raise OptionError(key, f"{p} is not a {'folder' if folder else 'file'}")
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        raise OptionError(key, f"cannot read {p}: permission denied")
    return p


def check_run_files(cfg: RunConfig) -> None:
    """What the run reads and writes, checked before anything is created (see the module doc)."""
    from medcolor.data.datasets import DATASETS

    d, m = cfg.data, cfg.model
    if d.root and not DATASETS.get(d.dataset).GENERATES_FILES:
        check_input("data.root", d.root, folder=True)
    if d.csv:
        check_input("data.csv", d.csv)
    if d.cache_dir:
        check_output_folder("data.cache_dir", d.cache_dir, expand=True)
    if m.weights and str(m.weights).lower() not in {"imagenet", "none", "random"}:
        check_input("model.weights", m.weights)
    source = None
    if m.colorizer_from:
        source = ("model.colorizer_from", check_input("model.colorizer_from", m.colorizer_from))
    if m.init_from:
        p = check_input("model.init_from", m.init_from, folder=None)  # a run directory or a model file
        source = ("model.init_from", check_input("model.init_from", p / "model.safetensors" if p.is_dir() else p))
    if source is not None:
        check_transferred_colorizer(cfg, *source)
    check_output_folder("output", cfg.output)


def check_transferred_colorizer(cfg: RunConfig, key: str, path: Path) -> None:
    """A T taken from a file: the file is a medcolor file (a whole network for ``init_from``) whose T is
    the one ``model.colorizer`` names, when it names one."""
    from medcolor.io import colorizer_name

    try:
        name = colorizer_name(path, whole_model=key == "model.init_from")
    except MedcolorError as exc:
        raise OptionError(key, str(exc)) from None
    want = cfg.model.colorizer
    if want is not None and name.lower() != str(want).lower():
        raise OptionError(
            ("model.colorizer", key),
            f"T is {want!r} but {path} holds a {name!r} T; drop model.colorizer (T comes from the file) "
            f"or give a file with a {want!r} T",
        )


__all__ = [
    "check_data_values",
    "check_dataset_options",
    "check_input",
    "check_number",
    "check_output_file",
    "check_output_folder",
    "check_run_files",
    "check_transferred_colorizer",
    "check_values",
]
