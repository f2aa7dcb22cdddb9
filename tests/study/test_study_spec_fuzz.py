"""Property-based: random study specs (group names, aliases, values) are either read or refused with a
SpecError naming the file; never another exception, never slow."""

from __future__ import annotations

import json
import re
import time

from hypothesis import HealthCheck, given, settings
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
