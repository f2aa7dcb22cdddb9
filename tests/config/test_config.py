from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medcolor.cli import build_parser, config_from_args
from medcolor.config import RunConfig, StageConfig, diff_configs
from medcolor.errors import ConfigError


def test_yaml_round_trip(tmp_path):
    cfg = RunConfig()
    cfg.stages = [
        StageConfig("color-module", lr="find", epochs=2),
        StageConfig("all", lr=0.01, iterations=50),
    ]
    cfg.data.options = {"policy": {"Edema": "ones"}}
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    again = RunConfig.from_yaml(path)
    assert again == cfg
    assert diff_configs(cfg.to_dict(), again.to_dict()) == []


def test_unknown_keys_and_bad_types_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.data: unknown option 'sise'; valid options: dataset, root"):
        RunConfig.from_dict({"data": {"sise": 3}})
    with pytest.raises(ConfigError, match=r"config\.data\.batch_size: expected an integer, got 'many'"):
        RunConfig.from_dict({"data": {"batch_size": "many"}})
    with pytest.raises(ConfigError, match=r"config\.stages\[1\]\.epochs: invalid value 'two'"):
        RunConfig.from_dict({"stages": [{"strategy": "color-module"}, {"strategy": "all", "epochs": "two"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.from_yaml(tmp_path / "missing.yaml")


def test_lr_accepts_numbers_and_find():
    cfg = RunConfig.from_dict({"stages": [{"strategy": "all", "lr": "0.05"}, {"strategy": "all", "lr": "find"}]})
    assert cfg.stages[0].lr == 0.05 and cfg.stages[1].lr == "find"


def test_flags_override_the_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "data: {dataset: folder, root: /data, size: 320, options: {patient_regex: kermany}}\n"
        "model: {backbone: densenet121}\n"
        "stages: [{strategy: color-module, lr: find, epochs: 3}, {strategy: all, epochs: 3}]\n"
        "output: runs/a\n"
    )
    a = build_parser().parse_args(
        [
            "train",
            "--config",
            str(path),
            "--size",
            "64",
            "--iterations",
            "10",
            "--lr",
            "0.1",
            "--option",
            "positive_class=PNEUMONIA",
            "--val",
            "valid",
            "--test",
            "none",
            "--seed",
            "3",
        ]
    )
    cfg = config_from_args(a)
    assert cfg.data.size == 64 and cfg.data.root == "/data"
    assert cfg.data.options == {"patient_regex": "kermany", "positive_class": "PNEUMONIA"}
    assert cfg.data.val == "valid" and cfg.data.test is None
    assert cfg.model.backbone == "densenet121"
    assert [s.strategy for s in cfg.stages] == ["color-module", "all"]
    assert all(s.iterations == 10 and s.epochs is None and s.lr == 0.1 for s in cfg.stages)
    assert cfg.trainer.seed == 3 and cfg.output == "runs/a"


def test_stages_flag_replaces_the_list():
    a = build_parser().parse_args(["train", "--stages", "baseline,baseline-all", "--epochs", "1", "--lr-steps", "20"])
    cfg = config_from_args(a)
    assert [s.strategy for s in cfg.stages] == ["baseline", "baseline-all"]
    assert all(s.lr_find.num_training == 20 for s in cfg.stages)


def test_lr_rule_flag_and_check():
    from medcolor.training import check_run_config

    assert RunConfig().stages[0].lr_find.rule == "steepest"  # the default (the LR-rule study)
    a = build_parser().parse_args(["train", "--stages", "color-module,all", "--lr-rule", "steepest"])
    cfg = config_from_args(a)
    assert [s.lr_find.rule for s in cfg.stages] == ["steepest", "steepest"]
    check_run_config(cfg)
    cfg.stages[1].lr_find.rule = "fastest"
    with pytest.raises(ConfigError, match=r"stages\[1\].lr_find.rule: unknown LR finder rule 'fastest'"):
        check_run_config(cfg)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--lr-rule", "fastest"])


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in SHIPPED if "base" not in yaml.safe_load(p.read_text())])  # not studies
def test_shipped_configs_parse_and_pass_the_checks(path: Path) -> None:
    from medcolor.training import check_run_config

    cfg = RunConfig.from_yaml(path)
    assert cfg.stages and cfg.output
    check_run_config(cfg)


@pytest.mark.parametrize("path", [p for p in SHIPPED if "base" in yaml.safe_load(p.read_text())])  # studies
def test_shipped_study_specs_expand_without_invalid_cells(path: Path) -> None:
    from medcolor.study.plan import expand
    from medcolor.study.spec import load_spec

    plan = expand(load_spec(path))
    assert plan.cells and not [c.id for c in plan.cells if c.invalid]
    assert len({c.id for c in plan.cells}) == len(plan.cells)


def test_colorizer_start_and_ablation_colorizers_from_flags():
    from medcolor.config import check_run_config
    from medcolor.training.pipeline import colorizer_kwargs

    a = build_parser().parse_args(
        ["train", "--colorizer", "lut", "--colorizer-start", "gray", "--stages", "color-module"]
    )
    cfg = config_from_args(a)
    assert cfg.model.colorizer == "lut" and cfg.model.colorizer_start == "gray"
    check_run_config(cfg)
    assert colorizer_kwargs("lut", "gray", 0.5, 0.3) == {"start": "gray"}
    assert colorizer_kwargs("colorU", "random", 0.5, 0.3) == {}
    # the ImageNet-normalised baseline gets the run's own gray normalisation to undo
    assert colorizer_kwargs("replicate-imagenet", "random", 0.41, 0.27) == {"data_mean": 0.41, "data_std": 0.27}
    cfg.model.colorizer, cfg.stages = "replicate-imagenet", [StageConfig("baseline")]
    with pytest.raises(
        ConfigError, match=r"model.colorizer_start: 'gray' needs a learnable T; 'replicate-imagenet' has no parameters"
    ):
        check_run_config(cfg)
    cfg.model.colorizer_start = "random"
    check_run_config(cfg)  # a parameter-free T is a baseline T
