"""What produced a study cell's results: the medcolor commit (``+dirty`` with local changes), the medcolor and torch
versions, and the device and precision each stage recorded.  ``wall.json`` keeps the commit of every attempt at a
cell (:func:`medcolor.study.jobs.open_attempt`), so a cell resumed under other code names both."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: what joins the distinct values of one field (the commits of a resumed cell, the devices of its stages)
SEP = " + "


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    import torch

    from medcolor._version import __version__

    return {"git_commit": git_commit(), "medcolor_version": __version__, "torch_version": torch.__version__}


def joined(values: Iterable[Any]) -> str:
    """Each distinct non-empty value once, in order, joined by " + " (``""`` when there is none)."""
    return SEP.join(dict.fromkeys(str(v) for v in values if v))


def short_commits(value: str) -> str:
    """A ``git_commit`` value with each commit shortened to 7 digits, its ``+dirty`` kept (``1cf3a44 + 82ed4d9``)."""
    return SEP.join(c[:7] + ("+dirty" if c.endswith("+dirty") else "") for c in value.split(SEP))


def computed_on(stages: list[dict[str, Any]]) -> dict[str, str]:
    """``device`` and ``precision`` of a run's stages (``summary.json`` ``stages[*].environment``), each distinct
    value once, joined by " + "; ``""`` where a stage did not record it."""
    envs = [s.get("environment") or {} for s in stages]
    return {k: joined(e.get(k) for e in envs) for k in ("device", "precision")}


def git_commit() -> str:
    """The commit of the medcolor source tree this process runs (``+dirty`` with local changes), or ""."""
    here = Path(__file__).resolve().parents[1]  # src/medcolor/study/provenance.py -> src/medcolor
    try:
        top = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{top}+dirty" if dirty else top


__all__ = ["SEP", "computed_on", "git_commit", "joined", "provenance", "short_commits"]
