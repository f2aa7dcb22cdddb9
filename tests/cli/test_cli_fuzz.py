"""Property test over ``medcolor train`` option values: any value of any option
either passes every check (``--dry-run``: checks only, creates nothing) or ends with exit code 2 and one
line on stderr that names the option — never a traceback, never a silently accepted bad value."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medcolor.cli import main

BASE = ["train", "--dataset", "synthetic", "--backbone", "resnet18", "--weights", "none", "--size", "32", "--dry-run"]

NUMERIC = [
    "--size",
    "--batch-size",
    "--num-workers",
    "--split-seed",
    "--subset",
    "--subset-draw",
    "--mean",
    "--std",
    "--val",
    "--test",
    "--lr",
    "--lr-min",
    "--lr-max",
    "--lr-steps",
    "--epochs",
    "--iterations",
    "--val-every",
    "--weight-decay",
    "--num-nodes",
    "--seed",
    "--bootstrap",
    "--devices",
]
NAMES = [
    "--dataset",
    "--backbone",
    "--colorizer",
    "--stages",
    "--precision",
    "--channels-last",
    "--accelerator",
    "--frozen-bn",
    "--augment-on",
    "--on-missing",
    "--weights",
    "--colorizer-from",
    "--init-from",
    "--option",
    "--root",
    "--csv",
    "--cache-dir",
    "--output",
]

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 1.5, 2, 1e-3, 1e-300, 2**32, 2**63, 10**400]),
).map(lambda v: repr(v) if isinstance(v, float) else str(v))
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "none", "null", "find", "auto", "true", "-", "=", "[1", "{a: 1}", "a=b=c", "0x10"]),
    st.sampled_from(["color-module,all", "baseline", "colorU", "mobilenet_v2", "bf16-mixed", "eval", "1e-2"]),
    st.sampled_from(["~nobody-here/x", "a\x00b", "x" * 300, "/", ".", "..", "/dev/null", "/proc/self"]),
)


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, err.getvalue()


def check(flag: str, value: str, output: str) -> None:
    rc, err = run([*BASE, "--output", output, f"{flag}={value}"])
    assert "Traceback" not in err, (flag, value, err)
    if rc == 0:
        return
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2 and len(lines) == 1, (flag, value, rc, err)
    assert lines[0].startswith("medcolor train: error: "), (flag, value, err)
    assert flag in lines[0], (flag, value, lines[0])


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz") / "run")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(NUMERIC), value=st.one_of(numbers, texts))
def test_numeric_options(output, flag, value):
    check(flag, value, output)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from(NAMES), value=texts)
@example(flag="--output", value="~nobody-here/x")  # found by hypothesis: '~user' of no user on this machine
@example(flag="--root", value="~nobody-here/x")
def test_name_and_path_options(output, flag, value):
    check(flag, value, output)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--subset", "1.5"),
        ("--subset", "0"),
        ("--subset", "nan"),
        ("--lr", "0"),
        ("--lr", "-1"),
        ("--lr", "inf"),
        ("--batch-size", "0"),
        ("--weight-decay", "-1"),
        ("--num-workers", "-1"),
        ("--seed", "-1"),
        ("--bootstrap", "-1"),
        ("--val-every", "0"),
        ("--size", "0"),
        ("--epochs", "0"),
        ("--std", "-1"),
        ("--mean", "abc"),
        ("--option", "labels=[A"),
        ("--option", "nope=1"),
        ("--val", "1.0"),
        ("--devices", "0"),
    ],
)
def test_known_bad_values_are_refused(output, flag, value):
    rc, err = run([*BASE, "--output", output, f"{flag}={value}"])
    assert rc == 2 and flag in err and len(err.strip().splitlines()) == 1, err


@settings(max_examples=40, deadline=None)
@given(
    subset=st.one_of(st.floats(min_value=1e-6, max_value=1.0), st.integers(min_value=2, max_value=10**6)),
    lr=st.floats(min_value=1e-8, max_value=10.0),
    batch=st.integers(min_value=1, max_value=4096),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_valid_values_pass(subset, lr, batch, seed):
    """The values the checks must accept (run through the same checks directly: no CLI parsing)."""
    from medcolor.config import RunConfig, check_run_config

    cfg = RunConfig.from_dict(
        {
            "data": {"dataset": "synthetic", "subset": subset, "batch_size": batch, "size": 32},
            "model": {"weights": "none"},
            "stages": [{"strategy": "color-module", "lr": lr}],
            "trainer": {"seed": seed},
        }
    )
    assert math.isfinite(cfg.stages[0].lr)
    check_run_config(cfg)
