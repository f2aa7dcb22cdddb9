"""Expanding a study spec into cells: the grid's combinations, exclusions, transfer dependencies, stable ids.

A cell's id is ``<slug>_<hash>``: the slug is readable (group name and grid values, e.g.
``colorized_s1_pixelshuffle_color-module+all``), the hash is the first 8 hex digits of the SHA-256 of its
run configuration as written in the spec (base + grid values, before defaults are filled in) and of its
transfer source's id.  The same spec therefore always gives the same ids, whatever the study directory or
the order of the grid, and a cell whose configuration changes gets a new id (and a new run directory).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcolor.config import RunConfig
from medcolor.errors import ConfigError
from medcolor.study.keys import apply_value, get_dotted, strategies_label
from medcolor.study.spec import Spec, SpecError, TransferSpec, Value, grid_keys


@dataclass
class Cell:
    """One run of the study."""

    id: str
    group: str | None
    #: what the results table shows for every grid key (plus ``stages`` and ``transfer``)
    values: dict[str, Any]
    #: the run configuration (``output`` and transfer paths are filled in when it runs)
    config: dict[str, Any]
    #: ``{name, source, use, stage, path}`` when T (and E) come from another cell
    transfer: dict[str, Any] | None = None
    depends_on: list[str] = field(default_factory=list)
    level: int = 0
    #: why the run cannot start (check_run_config), if it cannot
    invalid: str | None = None
    estimate: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass
class Plan:
    study: str
    cells: list[Cell]
    #: the grid keys that become table columns (besides stages and transfer)
    columns: list[str]
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {c.id: c for c in self.cells}

    def __getitem__(self, cell_id: str) -> Cell:
        return self._by_id[cell_id]

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self._by_id

    @property
    def levels(self) -> list[list[Cell]]:
        """Cells by dependency level: level 0 needs nothing, level k a cell of level k - 1."""
        n = max((c.level for c in self.cells), default=-1) + 1
        return [[c for c in self.cells if c.level == i] for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "columns": self.columns,
            "warnings": self.warnings,
            "cells": [c.to_dict() for c in self.cells],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(d["study"], [Cell.from_dict(c) for c in d["cells"]], list(d["columns"]), list(d.get("warnings", [])))


# ----------------------------------------------------------------------------- helpers
def _slug_part(key: str, label: Any) -> str:
    short = {"trainer.seed": "s", "data.subset_draw": "d", "data.subset": "n", "data.split_seed": "split"}
    if label in ("", None):
        return ""
    if key == "stages":
        text = str(label).replace(",", "+")
    elif isinstance(label, float):
        text = f"{short.get(key, '')}{label:g}"
    else:
        text = f"{short.get(key, '')}{label}"
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")


def config_hash(d: dict[str, Any]) -> str:
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return a == b


def _matches(labels: dict[str, Any], group: str | None, sel: dict[str, list[Any]]) -> bool:
    for k, allowed in sel.items():
        v = group if k == "cells" else labels.get(k)
        if not any(_same(v, a) for a in allowed):
            return False
    return True


def _describe(e: dict[str, Any]) -> str:
    vals = ", ".join(f"{k}={v.label}" for k, v in e["vals"].items())
    return f"({'cells.' + e['group'] + ': ' if e['group'] else ''}{vals})"


# ----------------------------------------------------------------------------- expansion
def expand(spec: Spec, *, check: bool = True) -> Plan:
    """All cells of the study: ids, grid values, configurations, dependencies, levels and (with
    ``check``) whether each can run plus its cost estimate."""
    keys = grid_keys(spec)
    kept, warnings = _apply_excludes(spec, _grid_entries(spec, keys))
    cells = _make_cells(spec, kept, keys)
    plan = Plan(spec.name, cells, [k for k in keys if k not in ("stages", "transfer")])
    plan.warnings = warnings
    _finish_cells(spec, plan.cells, check=check)
    return plan


def _grid_entries(spec: Spec, keys: list[str]) -> list[dict[str, Any]]:
    """One entry per combination of grid values, group by group (a group's own axes replace the grid's)."""
    groups = list(spec.groups.items()) if spec.groups else [(None, [])]
    _check_grid_size(spec, groups)
    entries: list[dict[str, Any]] = []
    for g, axes in groups:
        own = {a.key for a in axes}
        all_axes = [a for a in spec.grid if a.key not in own] + axes
        for combo in itertools.product(*[a.values for a in all_axes]):
            vals: dict[str, Value] = {a.key: v for a, v in zip(all_axes, combo, strict=True)}
            entries.append(_entry(spec, g, vals, keys))
    return entries


def _apply_excludes(spec: Spec, entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries no ``exclude`` selector matches, and a warning per selector that matches none."""
    kept, used = [], [False] * len(spec.exclude)
    for e in entries:
        hit = [i for i, (sel, _) in enumerate(spec.exclude) if _matches(e["labels"], e["group"], sel)]
        for i in hit:
            used[i] = True
        if not hit:
            kept.append(e)
    warnings = [
        f"{spec.path}:{line}: exclude[{i}] matches no cell"
        for i, ((_, line), u) in enumerate(zip(spec.exclude, used, strict=True))
        if not u
    ]
    if not kept:
        raise SpecError(f"{spec.path}: the grid has no cells left after 'exclude'")
    return kept, warnings


def _make_cells(spec: Spec, kept: list[dict[str, Any]], keys: list[str]) -> list[Cell]:
    """The cells of the kept entries, sources of transfers before their users; two cells with the same
    run configuration are refused."""
    deps = _resolve_transfers(spec, kept)
    cells: list[Cell | None] = [None] * len(kept)
    seen: dict[str, int] = {}
    for i in _topological(spec, kept, deps):
        e = kept[i]
        src = cells[deps[i]] if i in deps else None
        tinfo, hashed = _transfer_info(spec, e, src)
        h = config_hash(hashed)
        if h in seen:
            raise SpecError(
                f"{spec.path}: two cells have the same run configuration: {_describe(e)} and "
                f"{_describe(kept[seen[h]])}; remove one (exclude:) or make them differ"
            )
        seen[h] = i
        cells[i] = Cell(
            id=f"{_cell_slug(e, keys)}_{h}",
            group=e["group"],
            values={**e["labels"], "stages": e["stages"], "transfer": e["transfer"] or ""},
            config=e["config"],
            transfer=tinfo,
            depends_on=[src.id] if src else [],
            level=src.level + 1 if src else 0,
        )
    return [c for c in cells if c is not None]


def _transfer_info(spec: Spec, e: dict[str, Any], src: Cell | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """What a cell records of its transfer (None without one) and what its id hashes."""
    hashed: dict[str, Any] = {"config": e["config"]}
    if not e["transfer"]:
        return None, hashed
    t = spec.transfers[e["transfer"]]
    assert src is not None
    tinfo = {"name": t.name, "source": src.id, "use": t.use, "stage": t.stage, "path": _transfer_path(spec, t, src)}
    hashed["transfer"] = {"use": t.use, "path": tinfo["path"]}
    return tinfo, hashed


def _cell_slug(e: dict[str, Any], keys: list[str]) -> str:
    parts = [e["group"] or ""] + [_slug_part(k, e["labels"][k]) for k in keys if k in e["vals"]]
    return "_".join(p for p in parts if p)[:60].strip("_-.") or "cell"


def _finish_cells(spec: Spec, cells: list[Cell], *, check: bool) -> None:
    """Each cell's full run configuration and (with ``check``) whether it can run and its cost; cells
    that cannot run are refused together."""
    for c in cells:
        cfg = cell_run_config(c, None)
        c.config = cfg.to_dict()
        c.config.pop("output", None)
        c.config.pop("name", None)
        if check:
            c.invalid = _check_cell(cfg)
            if c.invalid is None:
                from medcolor.study.cost import estimate_run

                c.estimate = estimate_run(cfg, spec.estimate)
    if check and any(c.invalid for c in cells):
        raise _invalid_cells_error(spec, [c for c in cells if c.invalid])


def _invalid_cells_error(spec: Spec, bad: list[Cell]) -> SpecError:
    """A spec with cells that cannot run is refused before anything runs, naming the file and line of
    the group (or grid key) that gives the bad value, and the cell's values."""
    lines = []
    for c in bad[:3]:
        key = re.match(r"^([A-Za-z_][\w.\[\]]*):", c.invalid or "")
        option = key.group(1).split("[")[0] if key else ""
        where = spec.at("cells", c.group, option) if c.group else spec.at("grid", option)
        if where == spec.path:
            where = spec.at("base")
        vals = ", ".join(f"{k}={v}" for k, v in c.values.items() if v not in ("", None))
        lines.append(f"{where}: {'cells.' + c.group + ' ' if c.group else ''}({vals}): {c.invalid}")
    more = f" (and {len(bad) - 3} more cells)" if len(bad) > 3 else ""
    return SpecError(f"{len(bad)} cell(s) of the study cannot run{more}:\n" + "\n".join(lines))


#: the most cells one study may expand to (before ``exclude``): a bigger grid is almost surely a mistake
#: (500,000 cells take minutes to plan), and a real one is split into several studies
MAX_CELLS = 10_000


def _check_grid_size(spec: Spec, groups: list[tuple[str | None, list[Any]]]) -> None:
    total = 0
    for _, axes in groups:
        own = {a.key for a in axes}
        total += math.prod(len(a.values) for a in [a for a in spec.grid if a.key not in own] + axes)
    if total > MAX_CELLS:
        raise SpecError(
            f"{spec.at('grid')}: the grid expands to {total:,} cells, more than {MAX_CELLS:,}; check the grid "
            "values (a range written out by mistake?) or split the study into several specs"
        )


def _entry(spec: Spec, group: str | None, vals: dict[str, Value], keys: list[str]) -> dict[str, Any]:
    """One combination: its raw configuration (what the id hashes) and its table labels."""
    d = copy.deepcopy(spec.base)
    # stages first, then options of every stage, then the rest (in spec order)
    for k, v in sorted(vals.items(), key=lambda kv: (kv[0] != "stages", kv[0].startswith("stages."))):
        apply_value(d, k, v.value, spec.stage_defaults)
    d.setdefault("trainer", {})["progress"] = False
    try:
        resolved = RunConfig.from_dict(d).to_dict()
    except ConfigError as exc:
        where = f"{'cells.' + group + ' ' if group else ''}({', '.join(f'{k}={v.label}' for k, v in vals.items())})"
        raise SpecError(f"{spec.path}: the cell {where} has an invalid configuration: {exc}") from None
    labels: dict[str, Any] = {}
    for k in keys:
        if k in vals:
            labels[k] = vals[k].label
        elif k == "transfer":
            labels[k] = ""
        else:  # a key this cell's group does not set: the value it runs with, when it is a plain value
            v = get_dotted(resolved, k) if not k.startswith("stages") else None
            labels[k] = v if not isinstance(v, dict | list) else None
    transfer = labels.get("transfer") or None
    return {
        "group": group,
        "vals": vals,
        "labels": labels,
        "config": d,
        "transfer": transfer,
        "stages": strategies_label(resolved["stages"]),
    }


def _transfer_path(spec: Spec, t: TransferSpec, src: Cell) -> str:
    """The file (or run directory) the target loads, relative to the study directory."""
    base = f"cells/{src.id}"
    if t.stage is None:
        return f"{base}/colorizer.safetensors" if t.use == "colorizer" else base
    strategies = [s.get("strategy", "color-module") for s in src.config["stages"]]
    at = spec.at("transfer", t.name, "stage")
    if isinstance(t.stage, int):
        idx = t.stage
        if idx > len(strategies):
            raise SpecError(
                f"{at}: transfer.{t.name}.stage: the source cell {src.id} has {len(strategies)} stage(s) "
                f"({', '.join(strategies)}), no stage {idx}"
            )
    else:
        if t.stage not in strategies:
            raise SpecError(
                f"{at}: transfer.{t.name}.stage: the source cell {src.id} has no {t.stage!r} stage "
                f"(its stages: {', '.join(strategies)})"
            )
        idx = strategies.index(t.stage) + 1
    return f"{base}/{idx}-{strategies[idx - 1]}/model.safetensors"


def _resolve_transfers(spec: Spec, entries: list[dict[str, Any]]) -> dict[int, int]:
    """For each cell with a transfer: the index of its source (the one cell with the ``from`` values and
    the target's values of the other ``grid`` keys, or of the ``match`` keys)."""
    deps: dict[int, int] = {}
    top = [a.key for a in spec.grid if a.key != "transfer"]
    for i, e in enumerate(entries):
        if e["transfer"]:
            deps[i] = _transfer_source(spec, entries, e, top)
    return deps


def _transfer_source(spec: Spec, entries: list[dict[str, Any]], e: dict[str, Any], top: list[str]) -> int:
    """The index of the one source cell of entry ``e``'s transfer; an error when none or several match."""
    t = spec.transfers[e["transfer"]]
    match = t.match if t.match is not None else [k for k in top if k not in t.select]
    sel = dict(t.select)
    for k in match:
        sel.setdefault(k, [e["labels"].get(k)])
    found = [j for j, o in enumerate(entries) if _matches(o["labels"], o["group"], sel)]
    at = spec.at("transfer", t.name)
    if not found:
        wanted = ", ".join(f"{k}={'|'.join(str(x) for x in v)}" for k, v in sel.items())
        raise SpecError(
            f"{at}: transfer {t.name!r} (used by the cell {_describe(e)}) matches no cell of the study: "
            f"none has {wanted}"
        )
    if len(found) > 1:
        some = "; ".join(_describe(entries[j]) for j in found[:3])
        raise SpecError(
            f"{at}: transfer {t.name!r} (used by the cell {_describe(e)}) matches {len(found)} cells ({some}"
            f"{'; ...' if len(found) > 3 else ''}): name more grid values under 'from:' or the keys to match "
            "under 'match:'"
        )
    return found[0]


def _topological(spec: Spec, entries: list[dict[str, Any]], deps: dict[int, int]) -> list[int]:
    """Cell indices with every transfer source before its targets; a cycle is an error."""
    order: list[int] = []
    state = [0] * len(entries)  # 0 new, 1 on the current chain, 2 placed
    for start in range(len(entries)):
        chain = []
        i: int | None = start
        while i is not None and state[i] == 0:
            state[i] = 1
            chain.append(i)
            i = deps.get(i)
        if i is not None and state[i] == 1:
            cycle = [*chain[chain.index(i) :], i]
            text = " -> ".join(f"{_describe(entries[j])} [transfer {entries[j]['transfer']}]" for j in cycle)
            raise SpecError(f"{spec.at('transfer')}: the transfer sources form a cycle: {text}")
        for j in reversed(chain):
            state[j] = 2
            order.append(j)
    return order


#: the image cache a study's cells share when their spec sets no ``data.cache_dir``
STUDY_CACHE_DIR = "image-cache"


def cell_run_config(cell: Cell, study_dir: str | os.PathLike | None) -> RunConfig:
    """The run configuration of a cell; transfer paths and ``output`` resolved against ``study_dir``."""
    d = copy.deepcopy(cell.config)
    d.pop("output", None)
    if cell.transfer:
        rel = cell.transfer["path"]
        path = str(Path(study_dir).resolve() / rel) if study_dir is not None else rel
        key = "colorizer_from" if cell.transfer["use"] == "colorizer" else "init_from"
        d.setdefault("model", {})[key] = path
    cfg = RunConfig.from_dict(d)
    if study_dir is not None:
        cfg.output = str(Path(study_dir).resolve() / "cells" / cell.id)
        if cfg.data.root and not cfg.data.cache_dir:  # decoded once for all cells (bit-identical to decoding)
            cfg.data.cache_dir = str(Path(study_dir).resolve() / STUDY_CACHE_DIR)
    cfg.name = cell.id
    return cfg


def _check_cell(cfg: RunConfig) -> str | None:
    try:
        from medcolor.training import check_run_config
    except ImportError:  # pragma: no cover - moved by the training package
        from medcolor.config import check_run_config  # type: ignore[attr-defined,no-redef]
    try:
        check_run_config(cfg)
    except ConfigError as exc:
        return str(exc)
    return None


__all__ = ["MAX_CELLS", "STUDY_CACHE_DIR", "Cell", "Plan", "cell_run_config", "config_hash", "expand"]
