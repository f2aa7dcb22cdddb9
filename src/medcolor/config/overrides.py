"""The one way to change keys of a configuration dict before it is parsed: :func:`apply_overrides`
(``{"stages.*.lr": 0.01, "data.size": 112}``), used by the command-line flags and by study grids."""

from __future__ import annotations

import copy
from typing import Any

from medcolor.errors import ConfigError, OptionError

#: a stage of a configuration that names none
DEFAULT_STAGE = {"strategy": "color-module"}


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``, section by section (``options`` are replaced as a whole)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``d[a][b] = value`` for ``key`` ``a.b`` (sections created; a whole top-level section is merged)."""
    parts = [p.replace("-", "_") for p in key.split(".")]
    cur = d
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    last = parts[-1]
    if isinstance(value, dict) and isinstance(cur.get(last), dict) and len(parts) == 1:
        cur[last] = deep_merge(cur[last], value)
    else:
        cur[last] = copy.deepcopy(value)
    if last in ("epochs", "iterations"):  # a stage's length is one or the other
        cur.pop("iterations" if last == "epochs" else "epochs", None)


def expand_stages(value: Any, template: dict[str, Any]) -> list[dict[str, Any]]:
    """A stage list from a shorthand (``"color-module,all"``: one stage per name), a list of names or
    mappings, or one mapping; each stage starts from ``template``."""
    if isinstance(value, str):
        items: list[Any] = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, dict):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(f"expected strategy names ('color-module,all') or stage mappings, got {value!r}")
    out = []
    for it in items:
        if isinstance(it, str):
            if "," in it:
                raise ConfigError(f"{it!r} inside a list: write the stages as one string or as a list, not both")
            out.append({**copy.deepcopy(template), "strategy": it})
        elif isinstance(it, dict):
            base = copy.deepcopy(template)
            for a, b in (("epochs", "iterations"), ("iterations", "epochs")):
                if a in it:  # a stage's own length replaces the template's
                    base.pop(b, None)
            out.append(deep_merge(base, it))
        else:
            raise ConfigError(f"a stage is a strategy name or a mapping, got {it!r}")
    if not out:
        raise OptionError("stages", "the run has no stages; give at least one strategy (e.g. color-module,all)")
    return out


def apply_overrides(
    d: dict[str, Any], overrides: dict[str, Any], stage_defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Set dotted keys of the configuration dict ``d`` in place (and return it), before it is parsed:
    ``data.size``, ``data.options.KEY``, a whole section, ``stages`` (a shorthand ``"color-module,all"``
    or a list: each stage from ``stage_defaults``, or else from the first stage of ``d``) and
    ``stages.*.KEY`` / ``stages.KEY`` (that key of every stage; ``epochs`` replaces ``iterations`` and back)."""
    for key, value in overrides.items():
        parts = key.replace("-", "_").split(".")
        if parts == ["stages"]:
            old = d.get("stages") or [{}]
            template = stage_defaults if stage_defaults is not None else old[0]
            d["stages"] = expand_stages(value, {k: v for k, v in template.items() if k != "strategy"})
        elif parts[0] == "stages":
            if d.get("stages") is None:
                d["stages"] = [dict(DEFAULT_STAGE)]
            sub = ".".join(parts[2:] if parts[1] == "*" else parts[1:])
            for st in d["stages"]:
                set_dotted(st, sub, value)
        else:
            set_dotted(d, key, value)
    return d


def diff_configs(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out
