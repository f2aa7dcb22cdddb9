"""Property-based: random study specs (group names, aliases, values) are either read or refused with a
SpecError naming the file; never another exception, never slow."""

from __future__ import annotations

import json
import re
import time

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from study_helpers import BASE

from medcolor.errors import ConfigError
from medcolor.study.plan import expand
from medcolor.study.spec import GROUP_NAME, parse_spec

values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(["trainer.seed", "data.size", "model.colorizer", "stages", "data.subset", "bogus", "lr"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    group=st.text(min_size=0, max_size=12),
    key=keys,
    value=values,
    alias_levels=st.integers(0, 12),
)
def test_random_specs_are_read_or_refused_with_a_spec_error(tmp_path_factory, group, key, value, alias_levels):
    root = tmp_path_factory.mktemp("r")
    aliases = "".join(
        f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}" if i else "1"] * 8) + "]\n" for i in range(alias_levels)
    )
    text = (
        "name: fuzz\n"
        + BASE.format(root=root)
        + f"grid:\n  {key}: {json.dumps([value])}\ncells:\n  {json.dumps(group)}: {{stages: baseline}}\n"
    )
    text += aliases  # nested aliases under unknown keys: refused for the alias budget or the key, at once
    t0 = time.perf_counter()
    try:
        spec = parse_spec(text, "fuzz.yaml")
        plan = expand(spec, check=False)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
    else:
        assert re.fullmatch(GROUP_NAME, group)
        assert all("/" not in c.id and not c.id.startswith(".") for c in plan.cells)
    assert time.perf_counter() - t0 < 5.0


# ----------------------------------------------------------------- the command line: `study run --dry-run`
#: what a mapping may be replaced with: aliased lists (nested), a scalar, a mapping of aliases
ALIASED = {
    "list": "&a [1, [2, 3]]",
    "scalar": "&a 7",
    "deep": "[&a [1, [2, 3]], *a, [*a, [*a, *a]]]",
    "map": "{a: &a [1], b: *a, c: [*a, *a]}",
}
#: places where the spec expects a mapping (or a list of stages), as a YAML path written by `_spec_text`
SLOTS = ["base", "base.data", "base.model", "base.trainer", "stage_defaults", "grid", "cells", "cells.g", "executor"]
#: known keys of a grid, each with values around its bounds (valid ones among them), or anything at all
KNOWN_KEYS = {
    "data.size": st.integers(-5, 9000),
    "data.batch_size": st.integers(-1, 70000),
    "data.subset": st.floats(-0.5, 1.5) | st.integers(-1, 500),
    "data.val": st.floats(-0.5, 1.5),
    "data.options.image_size": st.integers(-1, 200),
    "data.options.n": st.integers(-1, 400),
    "model.colorizer": st.sampled_from(["colorU", "pixelshuffle", "replicate", "lut", "bogus", ""]),
    "model.backbone": st.sampled_from(["mobilenet_v2", "resnet18", "timm:resnet10t", "bogus", "timm:bogus"]),
    "stages": st.sampled_from(["color-module", "color-module,all", "all", "baseline", "bogus", ""]),
    "stages.lr": st.floats(-1, 10) | st.sampled_from(["find", "FIND", "x"]),
    "stages.iterations": st.integers(-1, 100),
    "trainer.seed": st.integers(-5, 2**40),
    "trainer.precision": st.sampled_from(["32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true", "x"]),
}
scalars = st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats() | st.text(max_size=10)


def _spec_text(root, group: str, key: str, value, slot: str | None, alias: str) -> str:
    lines = {
        "base": BASE.format(root=root).split("stage_defaults:")[0].rstrip("\n"),
        "stage_defaults": "stage_defaults: {lr: 0.05, iterations: 4, val_every: 2}",
        "grid": f"grid:\n  {key}: {json.dumps([value])}",
        "cells": f"cells:\n  {json.dumps(group)}: {{stages: color-module}}",
    }
    node = ALIASED[alias]
    if slot in ("base", "stage_defaults", "grid", "cells", "executor"):
        lines[slot] = f"{slot}: {node}"
    elif slot == "cells.g":
        lines["cells"] = f"cells:\n  {json.dumps(group)}: {node}"
    elif slot is not None:  # base.data / base.model / base.trainer
        section = slot.split(".")[1]
        lines["base"] = re.sub(rf"(?m)^  {section}:.*(\n    .*)*", lambda m: f"  {section}: {node}", lines["base"])
    return "name: fuzz\n" + "\n".join(lines.values()) + "\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fault=st.sampled_from(["none", "group", "value", "shape"]),
    key=st.sampled_from(sorted(KNOWN_KEYS)),
    data=st.data(),
    alias=st.sampled_from(sorted(ALIASED)),
)
def test_study_run_dry_run_plans_or_names_the_spec_never_a_traceback(tmp_path_factory, fault, key, data, alias):
    """One kind of fault at a time (or none): a random group name, any value for a known key, or an aliased
    list / scalar / mapping of aliases where the spec wants a mapping; values near the bounds of each key."""
    valid_group = st.sampled_from(["ok", "g-1", "a_b", "x9"])
    group = data.draw(
        st.text(max_size=12) | st.sampled_from(["../x", "/abs", ".h", "é"]) if fault == "group" else valid_group
    )
    anything = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=5), scalars, max_size=2)
    value = data.draw(anything if fault == "value" else KNOWN_KEYS[key], label="value")
    slot = data.draw(st.sampled_from(SLOTS), label="slot") if fault == "shape" else None
    root = tmp_path_factory.mktemp("c")
    spec = root / "fuzz.yaml"
    spec.write_text(_spec_text(root / "data", group, key, value, slot, alias))
    t0 = time.perf_counter()
    rc, out, err = _dry_run(spec)  # any other exception than the refusals fails the test: a traceback
    event(f"exit {rc}")
    assert time.perf_counter() - t0 < 10.0
    if rc == 0:
        assert "total:" in out and re.fullmatch(GROUP_NAME, group), (out, err)
    else:
        message = err.strip()
        assert rc == 2 and message.count("\n") == 0, message
        assert str(spec) in message or "fuzz.yaml" in message, message


def _dry_run(spec) -> tuple[int, str, str]:
    import contextlib
    import io

    from medcolor.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["study", "run", str(spec), "--dry-run"])
    return rc, out.getvalue(), err.getvalue()


def test_the_fuzzed_spec_without_faults_is_planned(tmp_path):
    """The generator's spec is valid when nothing is drawn wrong: the property test reaches the planner."""
    spec = tmp_path / "fuzz.yaml"
    spec.write_text(_spec_text(tmp_path / "data", "ok", "trainer.seed", 3, None, "list"))
    rc, out, err = _dry_run(spec)
    assert rc == 0 and "total: 1 cells" in out, err
    spec.write_text(_spec_text(tmp_path / "data", "ok", "trainer.seed", 3, "base.data", "deep"))
    rc, out, err = _dry_run(spec)
    assert rc == 2 and "fuzz.yaml" in err and "data" in err, err
