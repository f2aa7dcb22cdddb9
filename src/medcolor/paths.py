"""User-given paths: ``~`` and ``~user`` expanded once, with a clear error where that is impossible.

:meth:`pathlib.Path.expanduser` raises a bare ``RuntimeError`` for ``~name`` when no user ``name`` exists (or
``~`` when no home folder is known); :func:`user_path` turns that into a :class:`~medcolor.errors.ConfigError`
naming the path (and the option, where given), which the CLI reports as exit 2.  No torch here: the CLI's
argument handling uses it before any heavy import."""

from __future__ import annotations

import os
from pathlib import Path

from medcolor.errors import ConfigError, OptionError


def user_path(path: str | os.PathLike, option: str | None = None) -> Path:
    """``Path(path).expanduser()``, or a ConfigError (an OptionError naming ``option``) where ``~`` cannot be
    expanded."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        head = str(path).split("/", 1)[0]
        problem = (
            f"{str(path)!r}: {head!r} names no user with a home folder on this machine; "
            "write the path out in full (or ./~... for a folder really named so)"
        )
        raise (OptionError(option, problem) if option else ConfigError(problem)) from None


__all__ = ["user_path"]
