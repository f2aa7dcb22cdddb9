"""Study specs: one YAML file describes a grid of runs (cells) around a base run configuration.

.. code-block:: yaml

    name: kermany-small                  # the study's name (letters, digits, . _ -)
    base:                                # a run configuration, as for `medcolor train --config`
      data: {dataset: folder, root: ../shared/data/kermany-pneumonia-224, ...}
      model: {backbone: mobilenet_v2, weights: ../shared/weights/mobilenet_v2-imagenet-features.pth}
    stage_defaults: {lr: find, iterations: 40, val_every: 10}   # options of stages named by strategy
    grid:                                # crossed: every combination is a cell
      stages: [baseline, "color-module,all"]   # a list = alternatives; "a,b" = one run of two stages
      trainer.seed: [0, 1, 2]
    cells:                               # optional named groups, each crossed with `grid`
      colorized: {model.colorizer: [pixelshuffle, colorU], stages: "color-module,all"}
      transferred: {stages: last-layer, transfer: T}
    exclude: [{model.colorizer: colorU, trainer.seed: 2}]
    transfer:                            # a cell takes T (and E) from another cell of the study
      T: {from: {cells: colorized, model.colorizer: pixelshuffle}, use: colorizer, stage: color-module}
    executor: {name: local, workers: 2}
    resources: {partition: gpu, gpus: 1, time: "12:00:00", memory: 32G, nodes: 1}
    estimate: {train_images: 4172, val_images: 522, test_images: 522, tflops: 20}
    test_sets: {official: {dataset: folder, root: ../shared/data/kermany-official-test}}  # every cell's

Top-level ``test_sets`` join ``base.test_sets`` (a name in both is an error): part of each cell's configuration and
id, so adding or changing them runs the cells again; a spec without them keeps its ids.

Grid keys are dotted run-configuration keys (``model.colorizer``, ``data.subset``, ``data.subset_draw``,
``trainer.seed``...), a whole section (``data``), ``stages`` (strategy names, ``"a,b"`` shorthands or lists
of stage mappings), ``stages.<option>`` (that option in every stage of the cell) and ``transfer``.
A key's value is a list (alternatives), a mapping (named alternatives: the table shows the name) or a
single value.  A transfer source is the one cell that has the values named in ``from`` and the target's
values for every other ``grid`` key (``match`` lists those keys explicitly); ``use: colorizer`` sets the
target's ``model.colorizer_from``, ``use: model`` its ``model.init_from``; ``stage`` (a number or a
strategy) takes that stage's network instead of the final one.  Errors name the file, line and key.

Reading the YAML with its line numbers is :mod:`~medcolor.study.spec_yaml`; the ``executor:``,
``resources:`` and ``estimate:`` sections are :mod:`~medcolor.study.resources`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import typing
from pathlib import Path
from typing import Any

from medcolor.config import RunConfig, StageConfig, TestSetConfig, expand_stages
from medcolor.config.datasets import check_dataset_options
from medcolor.errors import ConfigError
from medcolor.study.keys import (
    NO_TRANSFER,
    RUNNER_KEYS,
    apply_value,
    check_config_key,
    did_you_mean,
    fields_of,
    label_of,
    name_errors,
)
from medcolor.study.resources import (
    EXECUTORS,
    Resources,
    parse_estimate,
    parse_executor,
    parse_memory_gb,
    parse_resources,
    parse_time_minutes,
)
from medcolor.study.spec_objects import Axis, Spec, TransferSpec, Value
from medcolor.study.spec_yaml import SpecError, read_spec_yaml

TOP_KEYS = ("name", "description", "base", "stage_defaults", "grid", "cells", "exclude", "transfer", "executor")
TOP_KEYS += ("resources", "estimate", "test_sets")
TRANSFER_KEYS = ("from", "use", "stage", "match")
TRANSFER_USES = ("colorizer", "model")


# ----------------------------------------------------------------------------- parsing
#: a group name: it becomes the start of its cells' folder names (DIR/cells/<group>_..._<hash>)
GROUP_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}"


def load_spec(path: str | os.PathLike) -> Spec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"study spec {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a UTF-8 text file") from None
    return parse_spec(text, str(p))


def parse_spec(text: str, where: str = "<spec>") -> Spec:
    """A study spec from its YAML ``text`` (``where``: the file, named in errors): each section parsed and
    checked against the base run configuration, in the order later sections need them."""
    data, lines = read_spec_yaml(text, where)
    spec = Spec(name="", base={}, path=where, text=text, lines=lines)
    _check_keys(spec, data, TOP_KEYS, ())
    spec.name = _parse_name(spec, data.get("name"))
    spec.description = data.get("description")
    base = data.get("base")
    if not isinstance(base, dict):
        raise SpecError(f"{spec.at('base')}: base: expected a run configuration mapping (data:, model:, stages:...)")
    spec.stage_defaults = _parse_stage_defaults(spec, data.get("stage_defaults") or {})
    spec.base = _parse_base(spec, base)
    _add_test_sets(spec, data.get("test_sets"))
    spec.transfers = _parse_transfers(spec, data.get("transfer") or {})
    spec.grid = _parse_axes(spec, data.get("grid") or {}, ("grid",))
    spec.groups = _parse_groups(spec, data.get("cells") or {})
    spec.exclude = _parse_exclude(spec, data.get("exclude") or [])
    spec.executor = parse_executor(spec, data.get("executor") or {})
    spec.resources = parse_resources(spec, data.get("resources") or {})
    spec.estimate = parse_estimate(spec, data.get("estimate") or {})
    _check_selector_keys(spec)
    return spec


def _check_keys(spec: Spec, d: dict[str, Any], valid: tuple[str, ...], path: tuple, label: str = "") -> None:
    """Every key of the mapping ``d`` at ``path`` is one of ``valid``; else an error naming the file and line,
    the key, the nearest valid one and all of them (``label``: the mapping's name in the message)."""
    for k in d:
        if k not in valid:
            raise SpecError(
                f"{spec.at(*path, k)}: {label}unknown key {k!r}.{did_you_mean(str(k), valid)} "
                f"Valid keys: {', '.join(valid)}"
            )


def _parse_name(spec: Spec, name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SpecError(
            f"{spec.at('name')}: name: give the study a name of letters, digits, '.', '_', '-' (got {name!r})"
        )
    return name


def _parse_groups(spec: Spec, groups: Any) -> dict[str, list[Axis]]:
    """``cells:``: named groups of grid keys, each a slug (it starts its cells' folder names)."""
    if not isinstance(groups, dict):
        raise SpecError(f"{spec.at('cells')}: cells: expected a mapping of group name -> grid keys")
    out: dict[str, list[Axis]] = {}
    for g, axes in groups.items():
        if not isinstance(g, str) or not re.fullmatch(GROUP_NAME, g):
            raise SpecError(
                f"{spec.at('cells', g)}: cells: the group name {g!r} is not a slug: use letters, digits, "
                "'_', '.', '-' (starting with a letter or digit); it becomes part of each cell's folder name"
            )
        if not isinstance(axes, dict):
            raise SpecError(f"{spec.at('cells', g)}: cells.{g}: expected a mapping of grid keys")
        out[str(g)] = _parse_axes(spec, axes, ("cells", g))
    return out


def _config_error_at(spec: Spec, path: tuple, exc: ConfigError, prefix: str = "") -> SpecError:
    msg = re.sub(r"^config\.?", "", str(exc))
    # point at the deepest key the message names (config.data.size -> base.data.size)
    m = re.match(r"^([A-Za-z_][\w.\[\]]*):", msg)
    sub: tuple = ()
    if m:
        sub = tuple(int(x) if x.isdigit() else x for x in re.split(r"[.\[\]]+", m.group(1)) if x)
    return SpecError(f"{spec.at(*path, *sub)}: {prefix}{msg}")


def _check_known_keys(spec: Spec, d: Any, cls: type, path: tuple, label: str) -> None:
    if not isinstance(d, dict):
        return
    fields = fields_of(cls)
    for k, v in d.items():
        name = str(k).replace("-", "_")
        if name not in fields:
            raise SpecError(
                f"{spec.at(*path, k)}: {label}: unknown option {k!r}.{did_you_mean(name, fields)} "
                f"Valid options: {', '.join(fields)}"
            )
        tp = fields[name]
        if dataclasses.is_dataclass(tp):
            _check_known_keys(spec, v, tp, (*path, k), f"{label}.{k}")
        elif typing.get_origin(tp) is list and isinstance(v, list):
            (item,) = typing.get_args(tp)
            if dataclasses.is_dataclass(item):
                for i, x in enumerate(v):
                    _check_known_keys(spec, x, item, (*path, k, i), f"{label}.{k}[{i}]")


def _parse_stage_defaults(spec: Spec, d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"{spec.at('stage_defaults')}: stage_defaults: expected a mapping of stage options")
    if "strategy" in d:
        raise SpecError(f"{spec.at('stage_defaults', 'strategy')}: stage_defaults: the strategy comes from 'stages'")
    _check_known_keys(spec, d, StageConfig, ("stage_defaults",), "stage_defaults")
    try:
        RunConfig.from_dict({"stages": [{**d, "strategy": "color-module"}]}, where="x")
    except ConfigError as exc:
        msg = re.sub(r"^x\.stages\[0\]\.?", "", str(exc))
        raise SpecError(f"{spec.at('stage_defaults')}: stage_defaults.{msg}") from None
    return dict(d)


def _parse_base(spec: Spec, base: dict[str, Any]) -> dict[str, Any]:
    base = copy.deepcopy(base)
    for k in RUNNER_KEYS:
        base.pop(k, None)
    stages = base.get("stages")
    if isinstance(stages, str | dict) or (isinstance(stages, list) and any(isinstance(s, str) for s in stages)):
        try:
            base["stages"] = expand_stages(stages, spec.stage_defaults)
        except ConfigError as exc:
            raise SpecError(f"{spec.at('base', 'stages')}: base.stages: {exc}") from None
    _check_known_keys(spec, {k: v for k, v in base.items()}, RunConfig, ("base",), "base")
    try:
        cfg = RunConfig.from_dict(base)
    except ConfigError as exc:
        raise _config_error_at(spec, ("base",), exc, "base.") from None
    _check_names(spec, cfg, ("base",), "base")
    return base


def _add_test_sets(spec: Spec, d: Any) -> None:
    """Top-level ``test_sets:`` (as a run configuration's), checked (file, line and key named), join
    ``base.test_sets``: part of every cell's configuration, hence of its id."""
    if d is None:
        return
    if not isinstance(d, dict) or not d:
        raise SpecError(f"{spec.at('test_sets')}: test_sets: expected a mapping of test set name -> {{dataset:, ...}}")
    for name, ts in d.items():
        _check_known_keys(spec, ts, TestSetConfig, ("test_sets", name), f"test_sets.{name}")
    try:
        for name, ts in RunConfig.from_dict({"test_sets": copy.deepcopy(d)}).test_sets.items():
            check_dataset_options(ts, f"test_sets.{name}")
    except ConfigError as exc:
        raise _config_error_at(spec, (), exc) from None
    own = spec.base.get("test_sets") or {}
    if both := sorted(set(own) & set(d)):
        raise SpecError(
            f"{spec.at('test_sets', both[0])}: test_sets: {', '.join(map(repr, both))} is also defined under "
            f"base.test_sets ({spec.at('base', 'test_sets')}); give each test set once"
        )
    spec.base["test_sets"] = {**own, **copy.deepcopy(d)}


def _check_names(spec: Spec, cfg: RunConfig, path: tuple, label: str) -> None:
    for _key, sub, msg in name_errors(cfg):
        raise SpecError(f"{spec.at(*path, *sub)}: {label}.{'.'.join(str(x) for x in sub)}: {msg}")


def _as_values(spec: Spec, key: str, raw: Any, path: tuple) -> list[Value]:
    line = spec.lines.get(path)
    if isinstance(raw, list):
        vals = [Value(label_of(key, v), v, spec.lines.get((*path, i), line)) for i, v in enumerate(raw)]
    elif isinstance(raw, dict):
        if key == "stages":
            raise SpecError(
                f"{spec.at(*path)}: stages: give the alternatives as a list (the table shows their strategies); "
                "vary stage options with stages.<option> keys"
            )
        vals = [Value(str(n), v, spec.lines.get((*path, n), line)) for n, v in raw.items()]
    else:
        vals = [Value(label_of(key, raw), raw, line)]
    if not vals:
        raise SpecError(f"{spec.at(*path)}: {key}: no values")
    labels = [json.dumps(v.label, sort_keys=True, default=str) for v in vals]
    dup = next((lab for lab in labels if labels.count(lab) > 1), None)
    if dup is not None:
        raise SpecError(f"{spec.at(*path)}: {key}: the value {dup} is given twice")
    return vals


def _parse_axes(spec: Spec, d: Any, path: tuple) -> list[Axis]:
    where = ".".join(str(p) for p in path)
    if not isinstance(d, dict):
        raise SpecError(f"{spec.at(*path)}: {where}: expected a mapping of config keys to values")
    axes = []
    for key, raw in d.items():
        key = str(key)
        reason = check_config_key(key)
        if reason:
            raise SpecError(f"{spec.at(*path, key)}: {where}: {reason}")
        vals = _as_values(spec, key, raw, (*path, key))
        for v in vals:
            _check_value(spec, key, v, (*path, key))
        axes.append(Axis(key, vals, spec.lines.get((*path, key))))
    return axes


def _check_value(spec: Spec, key: str, v: Value, path: tuple) -> None:
    """One grid value on top of the base: types and registry names."""
    where = f"{spec.path}:{v.line}" if v.line else spec.at(*path)
    if key == "transfer":
        if v.value not in NO_TRANSFER and str(v.value) not in spec.transfers:
            names = list(spec.transfers)
            raise SpecError(
                f"{where}: transfer: unknown transfer source {v.value!r}.{did_you_mean(str(v.value), names)} "
                f"Defined under 'transfer:': {', '.join(names) or 'none'}"
            )
        return
    d = copy.deepcopy(spec.base)
    try:
        apply_value(d, key, v.value, spec.stage_defaults)
        cfg = RunConfig.from_dict(d)
    except ConfigError as exc:
        msg = re.sub(r"^config\.?", "", str(exc))
        raise SpecError(f"{where}: {key}: value {v.value!r}: {msg}") from None
    for k, _sub, msg in name_errors(cfg):
        if k == key or k.startswith(key + ".") or key.startswith(k):
            raise SpecError(f"{where}: {key}: value {v.value!r}: {msg}")


def _parse_transfers(spec: Spec, d: Any) -> dict[str, TransferSpec]:
    if not isinstance(d, dict):
        raise SpecError(f"{spec.at('transfer')}: transfer: expected a mapping of name -> {{from:, use:}}")
    return {str(name): _parse_transfer(spec, name, t) for name, t in d.items()}


def _parse_transfer(spec: Spec, name: Any, t: Any) -> TransferSpec:
    """One ``transfer:`` entry: the source cell's grid values (``from``), what the target takes (``use``), from
    which stage (``stage``) and the grid keys it must share with its source (``match``)."""
    path = ("transfer", name)
    if not isinstance(t, dict):
        raise SpecError(f"{spec.at(*path)}: transfer.{name}: expected a mapping with from:, use: (and stage:)")
    _check_keys(spec, t, TRANSFER_KEYS, path, f"transfer.{name}: ")
    sel = t.get("from")
    if not isinstance(sel, dict) or not sel:
        raise SpecError(
            f"{spec.at(*path, 'from')}: transfer.{name}.from: give the source cell's grid values, "
            "e.g. {cells: source, stages: color-module}"
        )
    use = t.get("use", "colorizer")
    if use not in TRANSFER_USES:
        raise SpecError(
            f"{spec.at(*path, 'use')}: transfer.{name}.use: {use!r} is not one of {', '.join(TRANSFER_USES)} "
            "(colorizer: T only -> model.colorizer_from; model: T and E -> model.init_from)"
        )
    stage = t.get("stage")
    if stage is not None and not (isinstance(stage, int) and stage >= 1) and not isinstance(stage, str):
        raise SpecError(f"{spec.at(*path, 'stage')}: transfer.{name}.stage: a stage number (1, 2...) or strategy")
    match = t.get("match")
    if match is not None and not (isinstance(match, list) and all(isinstance(m, str) for m in match)):
        raise SpecError(f"{spec.at(*path, 'match')}: transfer.{name}.match: a list of grid keys")
    selector = {str(k): _as_list(k, v) for k, v in sel.items()}
    return TransferSpec(str(name), selector, use, stage, match, spec.lines.get(path))


def _as_list(key: Any, v: Any) -> list[Any]:
    """Selector values: one value or a list of alternatives, as the table shows them."""
    return [label_of(str(key), x) for x in (v if isinstance(v, list) else [v])]


def _parse_exclude(spec: Spec, d: Any) -> list[tuple[dict[str, list[Any]], int | None]]:
    if not isinstance(d, list):
        raise SpecError(f"{spec.at('exclude')}: exclude: expected a list of mappings (grid key: value or [values])")
    out = []
    for i, e in enumerate(d):
        if not isinstance(e, dict) or not e:
            raise SpecError(f"{spec.at('exclude', i)}: exclude[{i}]: expected a mapping of grid keys to values")
        out.append(({str(k): _as_list(k, v) for k, v in e.items()}, spec.lines.get(("exclude", i))))
    return out


def grid_keys(spec: Spec) -> list[str]:
    """Every grid key of the spec (top-level grid first, then the groups'), in order."""
    keys = [a.key for a in spec.grid]
    for axes in spec.groups.values():
        keys += [a.key for a in axes if a.key not in keys]
    return keys


def _check_selector_keys(spec: Spec) -> None:
    valid = [*grid_keys(spec), "cells"]
    for sel, line in spec.exclude:
        for k in sel:
            if k not in valid:
                at = f"{spec.path}:{line}" if line else spec.path
                raise SpecError(
                    f"{at}: exclude: {k!r} is not a grid key.{did_you_mean(k, valid)} Grid keys: {', '.join(valid)}"
                )
    for t in spec.transfers.values():
        for k in [*t.select, *(t.match or [])]:
            if k not in valid:
                raise SpecError(
                    f"{spec.at('transfer', t.name, 'from')}: transfer.{t.name}: {k!r} is not a grid key."
                    f"{did_you_mean(k, valid)} Grid keys: {', '.join(valid)}"
                )
        if "cells" in t.select:
            for g in t.select["cells"]:
                if g not in spec.groups:
                    raise SpecError(
                        f"{spec.at('transfer', t.name, 'from')}: transfer.{t.name}: no cell group {g!r}."
                        f"{did_you_mean(str(g), spec.groups)} Groups: {', '.join(spec.groups) or 'none'}"
                    )


__all__ = [
    "EXECUTORS",
    "Axis",
    "Resources",
    "Spec",
    "SpecError",
    "TransferSpec",
    "Value",
    "grid_keys",
    "load_spec",
    "parse_memory_gb",
    "parse_spec",
    "parse_time_minutes",
]
