"""The ``-o/--output`` of every command, checked once, before any work: the user's path and the option are
named in the message (never a temporary file written next to it), the path is not an input of the command,
not inside a medcolor run, not empty, and a file can really be created where it points (``/proc``, a
read-only mount, a folder where a file is wanted, a file where a folder is wanted)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from medcolor.errors import OptionError
from medcolor.paths import user_path

#: how the option appears in every message
OUTPUT_FLAG = "-o/--output"


def check_output(
    path: str | Path,
    kind: Literal["file", "folder"],
    *,
    inputs: Iterable[str | Path] = (),
    apart: bool = False,
    suffix: str | None = None,
    flag: str = OUTPUT_FLAG,
) -> Path:
    """``path`` (``~`` expanded) once checked as the output ``kind`` of a command; ``apart``: also refuse an
    input of the command (``inputs``) and any place inside a medcolor run directory."""
    from medcolor.validation import check_output_file, check_output_folder

    if not str(path).strip():
        raise OptionError(flag, "is empty; give a path (use . for the current folder)")
    p = user_path(path, flag)
    if apart:
        _check_apart(flag, p, inputs)
    if kind == "file":
        return check_output_file(flag, p, suffix=suffix)
    return check_output_folder(flag, p)


def _check_apart(flag: str, p: Path, inputs: Iterable[str | Path]) -> None:
    """Writing ``p`` would replace no input image and no file of a run (its network, its config)."""
    from medcolor.training.rundir import is_run_dir

    try:
        resolved = p.resolve()
    except (OSError, RuntimeError) as exc:
        raise OptionError(flag, f"cannot use the path {str(p)[:80]!r}: {exc}") from None
    for i in inputs:
        if user_path(i).resolve() == resolved:
            raise OptionError(flag, f"{p} is also an input of this command; writing it would replace it")
    run = next((d for d in (resolved, *resolved.parents) if d.is_dir() and is_run_dir(d)), None)
    if run is not None:
        raise OptionError(flag, f"{p} is inside the medcolor run {run}; writing there would change the run")


__all__ = ["OUTPUT_FLAG", "check_output"]
