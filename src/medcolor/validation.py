"""What a run reads and writes, checked before any data is read or any folder is created.

The values of every key are parsed and checked when the configuration is built (:mod:`medcolor.config`);
this module checks the files:

* :func:`check_run_files` — input files exist, the transferred T fits ``model.colorizer``, the output
  folder can be created and written (called first by :func:`~medcolor.training.rundir.prepare_run_dir`,
  before it touches anything);
* :func:`check_input`, :func:`check_output_file`, :func:`check_output_folder`, which the command line
  also uses for the options of ``predict``, ``colorize``, ``evaluate``, ``stats``, ``demo``.

Every failure is an :class:`~medcolor.errors.OptionError` naming the configuration key (or the flag) at
fault; the command line adds the flag of each key (``--weights (model.weights): missing.pth does not exist``).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcolor.errors import MedcolorError, OptionError
from medcolor.paths import user_path

if TYPE_CHECKING:
    from medcolor.config import RunConfig


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
    try:  # what the permission bits do not say (root, /proc, a read-only mount): create and remove a file
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OptionError(
            key, f"cannot write {target}: no file can be created in {folder} ({exc.strerror or exc}); give another path"
        ) from None


@_path_errors
def check_output_folder(key: str, path: str | os.PathLike, *, expand: bool = False) -> Path:
    """``path`` is a folder that exists and is writable, or one that can be created (``expand``: ``~`` is
    the home folder, as for the inputs; outputs are written where they are named)."""
    p = user_path(path, key) if expand else Path(path)
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
    p = user_path(path, key)
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
    "check_input",
    "check_output_file",
    "check_output_folder",
    "check_run_files",
    "check_transferred_colorizer",
]
