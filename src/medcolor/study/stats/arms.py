"""Arms of a comparison: ``"field=value"`` (``&``-joined), a bare value or a mapping, resolved against
the grid fields of a study, and the cells they select."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medcolor.errors import ConfigError
from medcolor.study.stats.cells import (
    TRANSFER_FIELD,
    ArmNotFoundError,
    StudyCells,
    normalize_query,
    value_sort_key,
)


def resolve_field(name: str, fields: Sequence[str]) -> str:
    """A grid field by its dotted key, or by a unique last part (``seed`` -> ``trainer.seed``)."""
    if name in fields:
        return name
    hits = [f for f in fields if f.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ConfigError(f"{name!r} is ambiguous: it may be {', '.join(hits)}; write the whole key")
    raise ConfigError(f"{name!r} is not a grid field of this study; its grid fields are: {', '.join(fields) or 'none'}")


def values_of(cells: StudyCells, f: str) -> list[str]:
    return sorted(set(cells.fields[f]), key=value_sort_key)


def parse_arm(spec: str | Mapping[str, Any], cells: StudyCells) -> dict[str, str]:
    """``"field=value"``, ``"f1=v1&f2=v2"``, a bare value or a mapping -> ``{grid field: normalized value}``."""
    out: dict[str, str] = {}
    for k, v in _arm_items(spec):
        k = _field_of_value(v, cells) if k is None else resolve_field(k, cells.grid)
        if k in out:
            raise ConfigError(f"the arm {spec!r} names {k} twice")
        value = cells.transfer_ids.get(str(v).strip(), None) if k == TRANSFER_FIELD else None
        out[k] = value if value is not None else normalize_query(v)
    return out


def _arm_items(spec: str | Mapping[str, Any]) -> list[tuple[str | None, Any]]:
    """The (field or None for a bare value, value) pairs an arm is written with."""
    if isinstance(spec, Mapping):
        return [(str(k), v) for k, v in spec.items()]
    text = str(spec).strip()
    if not text:
        raise ConfigError("an empty arm; write field=value (e.g. stages=color-module)")
    items: list[tuple[str | None, Any]] = []
    for part in text.split("&"):
        part = part.strip()
        if "=" in part:
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
        else:
            items.append((None, part))
    return items


def _field_of_value(v: Any, cells: StudyCells) -> str:
    """The one grid field that has the bare value ``v`` (refused when none or several have it)."""
    grid = cells.grid
    value = normalize_query(v)
    hits = [f for f in grid if value in set(cells.fields[f]) or (f == TRANSFER_FIELD and v in cells.transfer_ids)]
    if not hits:
        listing = "; ".join(f"{f}: {', '.join(values_of(cells, f))}" for f in grid)
        raise ArmNotFoundError(f"no grid field has the value {v!r}; the study has {listing}")
    if len(hits) > 1:
        raise ConfigError(
            f"{v!r} is a value of several grid fields ({', '.join(hits)}); write "
            + " or ".join(f"{f}={v}" for f in hits)
        )
    return hits[0]


def describe_arm(sel: Mapping[str, str]) -> str:
    return " & ".join(f"{k}={v}" for k, v in sel.items())


def select_cells(cells: StudyCells, sel: Mapping[str, str], spec: Any, name: str) -> pd.DataFrame:
    mask = np.ones(len(cells.fields), dtype=bool)
    for f, v in sel.items():
        mask &= (cells.fields[f] == v).to_numpy()
    rows = cells.fields[mask]
    if rows.empty:
        parts = []
        for f, v in sel.items():
            have = values_of(cells, f)
            state = "" if v in have else f" ({v!r} never)"
            parts.append(f"{f} has {', '.join(have)}{state}")
        msg = f"arm {name} ({spec if isinstance(spec, str) else describe_arm(sel)}) selects no cell: it was never run. "
        msg += "; ".join(parts)
        if all(v in values_of(cells, f) for f, v in sel.items()) and len(sel) > 1:
            existing = sorted(
                {describe_arm(dict(zip(sel, r, strict=True))) for r in cells.fields[list(sel)].itertuples(index=False)}
            )
            msg += f"; each value exists but not together. Combinations run: {' | '.join(existing)}"
        raise ArmNotFoundError(msg)
    return rows


def kv_text(fields: Sequence[str], values: Sequence[str]) -> str:
    return ", ".join(f"{f}={v}" for f, v in zip(fields, values, strict=True))


__all__ = [
    "describe_arm",
    "kv_text",
    "parse_arm",
    "resolve_field",
    "select_cells",
    "values_of",
]
