"""Every YAML medcolor reads has its alias expansion bounded (a 1 KB alias bomb is refused in milliseconds,
naming the file) and its shape checked (a section that must be a mapping says so)."""

from __future__ import annotations

import time

import pytest

from medcolor.cli import main
from medcolor.errors import ConfigError
from medcolor.yamlio import MAX_NODES, expanded_size, load_yaml, load_yaml_mapping


def bomb(levels: int, width: int = 10) -> str:
    """``levels`` nested aliases of ``width`` each: ``width ** levels`` values in about 50 bytes a level."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_the_expanded_size_counts_aliases():
    import yaml

    assert expanded_size(yaml.compose("a: &a [1, 2]\nb: *a\n")) == 1 + 2 * 1 + 2 * (1 + 2)
    assert expanded_size(yaml.compose(bomb(9)), limit=10**12) > 10**9


@pytest.mark.parametrize("levels", [6, 9, 30])
def test_an_alias_bomb_is_refused_at_once_naming_the_file(levels):
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^b\.yaml: the YAML document stands for more than 100,000 values"):
        load_yaml(bomb(levels), "b.yaml")
    assert time.perf_counter() - t0 < 1.0


def test_ordinary_aliases_still_work():
    assert load_yaml("x: &s {lr: 0.1}\ny: *s\n", "ok.yaml") == {"x": {"lr": 0.1}, "y": {"lr": 0.1}}
    assert expanded_size(__import__("yaml").compose(bomb(4))) < MAX_NODES
    with pytest.raises(ConfigError, match=r"r\.yaml"):
        load_yaml("a: &a [*a]\n", "r.yaml")  # a recursive alias


def test_shapes_are_checked():
    assert load_yaml_mapping("", "e.yaml") == {}
    with pytest.raises(ConfigError, match=r"l\.yaml must hold a mapping, not list"):
        load_yaml_mapping("- 1\n- 2\n", "l.yaml")
    with pytest.raises(ConfigError, match=r"^s\.yaml:3: not valid YAML"):
        load_yaml("a: 1\nb: [\n", "s.yaml")


@pytest.mark.parametrize("command", [["train", "--dry-run", "--config"], ["study", "run", "--dry-run"]])
def test_the_cli_refuses_an_alias_bomb_in_a_config_or_spec(tmp_path, capsys, command):
    p = tmp_path / "bomb.yaml"
    p.write_text("name: t\n" + bomb(8))
    assert main([*command, str(p)]) == 2
    err = capsys.readouterr().err
    assert "bomb.yaml" in err and "aliases" in err and "Traceback" not in err


def test_reading_a_bombed_config_or_spec_stops_at_once(tmp_path):
    from medcolor.config import RunConfig
    from medcolor.study.spec import load_spec

    p = tmp_path / "bomb.yaml"
    p.write_text("name: t\n" + bomb(10))
    for read in (RunConfig.from_yaml, load_spec):
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="aliases"):
            read(p)
        assert time.perf_counter() - t0 < 1.0


def test_a_config_section_aliased_to_a_list_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("data: &l [1, 2]\nmodel: {backbone: resnet18}\n")
    assert main(["train", "--dry-run", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert "data" in err and "expected a mapping" in err and "Traceback" not in err
