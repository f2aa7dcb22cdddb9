"""How a study runs: the ``executor:``, ``resources:`` (SLURM) and ``estimate:`` (cost) sections of a spec."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from medcolor.study.keys import did_you_mean
from medcolor.study.spec_yaml import SpecError


class Spec(Protocol):
    """What these parsers need of a :class:`~medcolor.study.spec.Spec`: ``file:line`` of a key path."""

    def at(self, *path: Any) -> str: ...


EXECUTOR_KEYS = ("name", "workers", "devices", "threads", "cluster")
EXECUTORS = ("local", "slurm", "submitit-local")
RESOURCE_KEYS = ("partition", "gpus", "time", "memory", "nodes", "cpus", "account", "qos", "constraint", "setup")
ESTIMATE_KEYS = ("train_images", "val_images", "test_images", "tflops")
#: submitit asks SLURM for SIGUSR2 this many seconds before a job's time limit (``--signal=USR2@90``): its
#: handler then checkpoints the cell and requeues the job
SIGNAL_DELAY_S = 90
#: the shortest ``resources.time`` that can work: SLURM sends the signal up to 60 s earlier than asked
#: (its event resolution), and it must come after the job has started Python, imported medcolor and
#: installed submitit's handler (about a minute on a busy node); earlier, SIGUSR2's default action kills
#: the job without a requeue.  4 min: the signal comes at least 90 s after the start.
MIN_TIME_MIN = 4


@dataclass
class Resources:
    partition: str | None = None
    gpus: int = 0
    time_min: int = 60
    memory_gb: float | None = None
    nodes: int = 1
    cpus: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)


def parse_executor(spec: Spec, d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"{spec.at('executor')}: executor: expected a mapping (name: local, workers: 2)")
    for k, v in d.items():
        if k not in EXECUTOR_KEYS:
            raise SpecError(
                f"{spec.at('executor', k)}: executor: unknown key {k!r}.{did_you_mean(str(k), EXECUTOR_KEYS)} "
                f"Valid keys: {', '.join(EXECUTOR_KEYS)}"
            )
        if k == "name" and v not in EXECUTORS:
            raise SpecError(
                f"{spec.at('executor', k)}: executor.name: {v!r} is not one of {', '.join(EXECUTORS)}."
                f"{did_you_mean(str(v), EXECUTORS)}"
            )
        if k in ("workers", "devices", "threads") and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise SpecError(f"{spec.at('executor', k)}: executor.{k}: expected a whole number >= 0, got {v!r}")
    return dict(d)


def parse_time_minutes(v: Any) -> int:
    """SLURM-style durations: 90 (minutes), "90m", "4h", "12:00:00", "1-12:00:00"."""
    if isinstance(v, bool):
        raise ValueError(v)
    if isinstance(v, int | float):
        return max(1, math.ceil(v))
    s = str(v).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|h|d)?", s)
    if m:
        n = float(m.group(1))
        return max(1, math.ceil(n * {None: 1, "m": 1, "min": 1, "h": 60, "d": 1440}[m.group(2)]))
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if m:
        days = int(m.group(1) or 0)
        parts = [int(x) for x in m.groups()[1:] if x is not None]
        h, mi, sec = ([0] * (3 - len(parts)) + parts) if m.group(1) or len(parts) == 3 else (0, *parts, 0)[:3]
        if len(parts) == 2 and not m.group(1):  # MM:SS as sbatch reads it
            h, mi, sec = 0, parts[0], parts[1]
        return max(1, math.ceil(days * 1440 + h * 60 + mi + sec / 60))
    raise ValueError(v)


def time_problem(minutes: int) -> str:
    """Why a job time limit of ``minutes`` cannot work ('' when it can)."""
    if minutes >= MIN_TIME_MIN:
        return ""
    return (
        f"{minutes} min is too short: submitit asks SLURM for SIGUSR2 {SIGNAL_DELAY_S} s before the time limit (SLURM "
        f"may send it up to 60 s earlier) to checkpoint and requeue the cell, and a job needs about a minute to "
        f"start before it can handle it. Give at least {MIN_TIME_MIN} (minutes), e.g. time: 30"
    )


def parse_memory_gb(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(v)
    if isinstance(v, int | float):
        return float(v)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", str(v).strip().lower())
    if not m:
        raise ValueError(v)
    return float(m.group(1)) * {"k": 1 / 1024**2, "m": 1 / 1024, "g": 1.0, "": 1.0, "t": 1024.0}[m.group(2)]


#: what a valid value of a ``resources:`` key looks like (in the error for a bad one)
_RESOURCE_HINTS = {
    "time": "minutes or HH:MM:SS, e.g. 90, '4h', '12:00:00', '1-00:00:00'",
    "memory": "e.g. 32G, 500M or a number of GB",
    "setup": "a list of shell lines",
}


def parse_resources(spec: Spec, d: Any) -> Resources:
    if not isinstance(d, dict):
        raise SpecError(f"{spec.at('resources')}: resources: expected a mapping (partition:, gpus:, time:, memory:)")
    r = Resources()
    for k, v in d.items():
        at = spec.at("resources", k)
        if k not in RESOURCE_KEYS:
            raise SpecError(
                f"{at}: resources: unknown key {k!r}.{did_you_mean(str(k), RESOURCE_KEYS)} "
                f"Valid keys: {', '.join(RESOURCE_KEYS)}"
            )
        try:
            _set_resource(r, k, v)
        except ValueError:
            hint = _RESOURCE_HINTS.get(k, "a whole number")
            raise SpecError(f"{at}: resources.{k}: invalid value {v!r} ({hint})") from None
        if k == "time" and time_problem(r.time_min):
            raise SpecError(f"{at}: resources.time: {time_problem(r.time_min)}")
    return r


def _set_resource(r: Resources, k: str, v: Any) -> None:
    """``r.<k>`` from the value of ``resources.<k>``; ``ValueError`` where it is not a valid one."""
    if k in ("gpus", "nodes", "cpus"):
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if k == "nodes" else 0):
            raise ValueError(v)
        setattr(r, k, v)
    elif k == "time":
        r.time_min = parse_time_minutes(v)
    elif k == "memory":
        r.memory_gb = parse_memory_gb(v)
    elif k == "setup":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(v)
        r.setup = list(v)
    else:
        setattr(r, k, str(v))


def parse_estimate(spec: Spec, d: Any) -> dict[str, Any]:
    """``estimate:`` sizes (a number, or a mapping dataset name -> number for studies over several
    datasets) and the assumed ``tflops``."""
    if not isinstance(d, dict):
        raise SpecError(f"{spec.at('estimate')}: estimate: expected a mapping (train_images:, tflops:...)")
    out: dict[str, Any] = {}

    def positive(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, int | float) and v > 0

    for k, v in d.items():
        if k not in ESTIMATE_KEYS:
            raise SpecError(
                f"{spec.at('estimate', k)}: estimate: unknown key {k!r}.{did_you_mean(str(k), ESTIMATE_KEYS)} "
                f"Valid keys: {', '.join(ESTIMATE_KEYS)}"
            )
        if isinstance(v, dict) and k != "tflops" and v and all(positive(x) for x in v.values()):
            out[k] = {str(name).lower(): float(x) for name, x in v.items()}
        elif positive(v):
            out[k] = float(v)
        else:
            raise SpecError(
                f"{spec.at('estimate', k)}: estimate.{k}: expected a positive number"
                f"{'' if k == 'tflops' else ' or a mapping of dataset name -> number'}, got {v!r}"
            )
    return out


__all__ = [
    "ESTIMATE_KEYS",
    "EXECUTORS",
    "EXECUTOR_KEYS",
    "MIN_TIME_MIN",
    "RESOURCE_KEYS",
    "Resources",
    "parse_estimate",
    "parse_executor",
    "parse_memory_gb",
    "parse_resources",
    "parse_time_minutes",
    "time_problem",
]
