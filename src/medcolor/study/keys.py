"""Run-configuration keys as a study spec uses them: dotted grid keys, stage shorthands, table labels."""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import Any

from medcolor.config import RunConfig, apply_overrides, config_fields, section_of, unknown_names

#: keys the runner sets itself
RUNNER_KEYS = ("output", "name")
#: a grid value that means "no transfer"
NO_TRANSFER = (None, "none", "")


def did_you_mean(name: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


# ----------------------------------------------------------------------------- config keys
def fields_of(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_config_key(key: str) -> str | None:
    """None if ``key`` is a valid grid key (a key of :func:`~medcolor.config.config_fields`, ``stages.KEY`` for
    ``stages.*.KEY``, or any key under a mapping such as ``data.options``), else the reason (with a hint)."""
    parts = key.split(".")
    if parts[0] == "transfer" or parts[0] in RUNNER_KEYS or parts[:2] == ["stages", "strategy"]:
        return _reserved(key, parts)
    names = [p.replace("-", "_") for p in parts]
    names[1:1] = ["*"] if names[0] == "stages" and names[1:2] not in ([], ["*"]) else []  # stages.KEY of each stage
    types = {k: tp for k, _, _, tp in config_fields(RunConfig)}
    for i in range(1, len(names) + 1):
        head = ".".join(names[:i])
        if names[i - 1] == "*" and i < len(names):
            continue
        if head not in types:
            return _unknown_option(key, names, i - 1, types)
        if typing.get_origin(types[head]) is dict:
            return None  # data.options.<anything>, test_sets.<name>...
        if i < len(names) and section_of(types[head]) is None:
            return f"unknown key {key!r}: {head.replace('.*', '')} is a value, not a section"
    return None


def _reserved(key: str, parts: list[str]) -> str | None:
    """Why a key that is not a configuration value cannot be a grid key (``transfer`` can)."""
    if parts[0] == "transfer":
        return None if len(parts) == 1 else f"'transfer' has no sub-keys (got {key!r})"
    if parts[0] in RUNNER_KEYS:
        return f"{parts[0]!r} is set by the study runner (each cell is DIR/cells/<cell id>)"
    return "set strategies with the 'stages' key, not 'stages.strategy'"


def _unknown_option(key: str, names: list[str], i: int, types: dict[str, Any]) -> str:
    """Why ``key`` is unknown: its ``i``-th part is no option of the section before it (with a did-you-mean hint)."""
    parts = key.split(".")
    parent = ".".join(names[:i])
    valid = [k.replace(".*", "") for k in types if k.rpartition(".")[0] == parent and k not in RUNNER_KEYS]
    what = parent.replace(".*", "") or "the run configuration"
    guess = ".".join(names[: i + 1]).replace(".*", "")
    wrong = parts[max(0, i - (len(names) - len(parts)))]  # the part as written ("stages.X" is "stages.*.X")
    return f"unknown key {key!r}: {what} has no option {wrong!r}.{did_you_mean(guess, [*valid, 'transfer'])}"


# ----------------------------------------------------------------------------- stages
def strategies_label(stages: Any) -> str:
    """``"color-module,all"`` for any spelling of a stage list."""
    if isinstance(stages, str):
        return ",".join(s.strip() for s in stages.split(",") if s.strip())
    if isinstance(stages, dict):
        return str(stages.get("strategy", "color-module"))
    if isinstance(stages, list):
        return ",".join(strategies_label(s) for s in stages)
    return str(stages)


def label_of(key: str, value: Any) -> Any:
    """What the results table shows for an (unnamed) grid value."""
    if key == "stages":
        return strategies_label(value)
    if key == "transfer":
        return "" if value in NO_TRANSFER else str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def apply_value(d: dict[str, Any], key: str, value: Any, stage_defaults: dict[str, Any]) -> None:
    """Set grid key ``key`` of the cell's configuration dict (``transfer`` is the runner's, not a config key)."""
    if key != "transfer":
        apply_overrides(d, {key: value}, stage_defaults)


def name_errors(cfg: RunConfig) -> list[tuple[str, tuple, str]]:
    """Unknown registry names in a configuration (:func:`~medcolor.config.unknown_names`, and the dataset):
    ``(grid key, key path, message with a did-you-mean hint)`` for each."""
    from medcolor.data.datasets import list_datasets

    unknown = unknown_names(cfg)
    out = [(k, tuple(k.split(".")), msg) for k, msg in unknown if not k.startswith("stages[")]
    names = [n.lower() for n in list_datasets()]
    if cfg.data.dataset.lower() not in names:
        hint = did_you_mean(cfg.data.dataset.lower(), names)
        msg = f"unknown dataset {cfg.data.dataset!r}.{hint} Valid datasets: {', '.join(names)}."
        out.append(("data.dataset", ("data", "dataset"), msg))
    stages = [("stages", ("stages", int(k[7 : k.index("]")])), msg) for k, msg in unknown if k.startswith("stages[")]
    return out + stages


def get_dotted(d: dict[str, Any], key: str) -> Any:
    cur: Any = d
    for p in key.replace("-", "_").split("."):
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


__all__ = [
    "NO_TRANSFER",
    "RUNNER_KEYS",
    "apply_value",
    "check_config_key",
    "did_you_mean",
    "fields_of",
    "get_dotted",
    "label_of",
    "name_errors",
    "strategies_label",
]
