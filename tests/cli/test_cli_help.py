"""The command line's help: every option of every command explains itself, and ``--help`` is quick (no torch)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from medcolor.cli import build_parser


def _parsers(p: argparse.ArgumentParser, name: str = "medcolor") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, p)]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _parsers(sub, f"{name} {sub_name}")
    return out


PARSERS = _parsers(build_parser())


def test_every_command_is_listed() -> None:
    names = {n for n, _ in PARSERS}
    assert {"medcolor train", "medcolor predict", "medcolor stats", "medcolor study compare"} <= names
    assert len(names) >= 17


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[n for n, _ in PARSERS])
def test_every_option_and_argument_has_help(name: str, parser: argparse.ArgumentParser) -> None:
    missing = [
        "/".join(a.option_strings) or a.metavar or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()
    ]
    assert not missing, f"{name}: no help text for {', '.join(missing)}"
    parser.format_help()  # argparse can lay it out (an empty exclusive group made `train --help` fail)


def test_a_switch_that_turns_a_setting_off_says_so() -> None:
    """``--no-progress`` / ``--no-augment`` are generated from settings that are on: their help says the flag turns
    the setting off, not what the setting does."""
    train = dict(PARSERS)["medcolor train"]
    switches = {o: a.help for a in train._actions for o in a.option_strings if o.startswith("--no-")}
    assert {"--no-progress", "--no-augment"} <= set(switches)
    assert all(h.startswith("turn off (on by default): ") for h in switches.values()), switches


def test_help_does_not_import_torch_or_lightning() -> None:
    code = (
        "import sys\nfrom medcolor.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['study', 'run', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, (argv, e.code)\n"
        "print(sorted(m for m in ('torch', 'lightning', 'torchvision', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: medcolor train" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_study_executor_choices_match_the_study_package() -> None:
    from medcolor.cli.study import EXECUTORS as shown
    from medcolor.study.resources import EXECUTORS

    assert shown == EXECUTORS


def test_train_help_yaml_example_is_its_flags_example() -> None:
    import shlex
    import textwrap

    import yaml

    from medcolor.cli.parser import EPILOG_TRAIN, TRAIN_EXAMPLE_FLAGS, TRAIN_EXAMPLE_YAML, config_from_args
    from medcolor.config import RunConfig

    assert TRAIN_EXAMPLE_FLAGS in EPILOG_TRAIN and TRAIN_EXAMPLE_YAML in EPILOG_TRAIN
    argv = shlex.split(TRAIN_EXAMPLE_FLAGS.replace("\\\n", " "))
    assert argv[:2] == ["medcolor", "train"]
    flags = config_from_args(build_parser().parse_args(argv[1:]))
    from_yaml = RunConfig.from_dict(yaml.safe_load(textwrap.dedent("    " + TRAIN_EXAMPLE_YAML)))
    assert flags.to_dict() == from_yaml.to_dict()
    assert len(flags.stages) == 2 and flags.data.options == {"patient_regex": "kermany"}  # not both defaults


def test_operating_rule_flags_set_the_operating_section() -> None:
    from medcolor.cli.parser import CONFIG_FLAGS, config_from_args
    from medcolor.errors import OptionError

    assert CONFIG_FLAGS["threshold"] == "operating.threshold" and CONFIG_FLAGS["temperature"] == "operating.temperature"
    cfg = config_from_args(build_parser().parse_args(["train", "--threshold", "Sensitivity = 0.9", "--temperature"]))
    assert (cfg.operating.threshold, cfg.operating.temperature) == ("sensitivity=0.9", True)
    assert config_from_args(build_parser().parse_args(["train"])).operating.temperature is False
    with pytest.raises(OptionError, match="must be youden, sensitivity=<target>"):
        config_from_args(build_parser().parse_args(["train", "--threshold", "sensitivity=2"]))
