"""Typed configuration values, parsed once when a configuration is built (YAML, dict, flags or Python), the
one override engine, the generated flags, and the places downstream that use the typed values."""

from __future__ import annotations

import pytest
import yaml

from medcolor.config import (
    AUTO,
    LR_FIND,
    Count,
    DataConfig,
    Fraction,
    LRFind,
    RunConfig,
    StageConfig,
    apply_overrides,
)
from medcolor.errors import OptionError


def _run(**sections) -> RunConfig:
    return RunConfig.from_dict({"model": {"weights": "none"}, **sections})


@pytest.mark.parametrize("word", ["find", "Find", "FIND", " find "])
def test_lr_find_in_any_case_is_one_value_everywhere(word, tmp_path):
    from medcolor.study.cost import estimate_run
    from medcolor.training.plan import resolve_stage
    from medcolor.training.runtime import resolve_runtime

    cfg = _run(data={"size": 32, "subset": 50}, stages=[{"strategy": "color-module", "lr": word, "iterations": 5}])
    lr = cfg.stages[0].lr
    assert lr is LR_FIND and isinstance(lr, LRFind) and cfg.to_dict()["stages"][0]["lr"] == "find"
    assert StageConfig(lr=word).lr is LR_FIND  # built in Python: the same
    plan = resolve_stage(
        0, cfg.stages[0], cfg, runtime=resolve_runtime(cfg), n_train=50, world_size=1, directory=tmp_path
    )
    assert plan.needs_lr_find
    # the cost estimate counts the range test's steps for every spelling
    fixed = _run(data={"size": 32, "subset": 50}, stages=[{"strategy": "color-module", "lr": 0.1, "iterations": 5}])
    with_find, without = estimate_run(cfg), estimate_run(fixed)
    assert with_find["iterations"] == without["iterations"] == [plan.schedule.total_steps]
    steps, iterations = cfg.stages[0].lr_find.num_training, plan.schedule.total_steps
    assert with_find["tflop"] == pytest.approx(without["tflop"] * (1 + steps / iterations), rel=1e-6)


@pytest.mark.parametrize(
    ("value", "kind", "number"),
    [(1, Fraction, 1.0), (1.0, Fraction, 1.0), (0.25, Fraction, 0.25), ("0.5", Fraction, 0.5), (2, Count, 2)],
)
def test_subset_is_a_fraction_up_to_one_and_a_count_above(value, kind, number):
    d = DataConfig(subset=value)
    assert type(d.subset) is kind and d.subset == number
    assert RunConfig.from_dict({"data": {"subset": value}}).data.subset == d.subset
    plain = d.to_dict()["subset"]
    assert type(plain) is (float if kind is Fraction else int)
    assert yaml.safe_load(yaml.safe_dump(d.to_dict()))["subset"] == plain  # YAML round trip
    assert type(DataConfig(subset=plain).subset) is kind


def test_subset_counts_and_fractions_draw_and_size_as_training_does():
    assert Count(1000).draw_kwargs() == {"count": 1000} and DataConfig(subset=1000.0).subset == Count(1000)
    assert Fraction(0.1).draw_kwargs() == {"fraction": 0.1}
    assert Count(1000).of(400) == 400 and Fraction(0.5).of(400) == 200


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.5, float("nan"), float("inf"), True, "abc", [1]])
def test_a_bad_subset_names_the_key(bad):
    with pytest.raises(OptionError, match=r"data\.subset: must be a fraction in \(0, 1\] or a whole number") as e:
        RunConfig.from_dict({"data": {"subset": bad}}, where="run.yaml")
    assert e.value.keys == ("data.subset",) and e.value.source == "run.yaml"


def test_num_workers_is_an_int_or_auto():
    assert DataConfig(num_workers="AUTO").num_workers is AUTO
    assert DataConfig(num_workers="3").num_workers == 3
    assert DataConfig().to_dict()["num_workers"] == "auto"
    with pytest.raises(OptionError, match=r"data\.num_workers: must be a number >= 0"):
        DataConfig(num_workers="many")


def test_a_stage_length_is_one_value():
    assert StageConfig(epochs=2).length.total(10) == 20
    assert StageConfig(iterations=7).length.total(10) == 7
    assert StageConfig().length.total(10) == 10  # one epoch
    with pytest.raises(OptionError, match="give epochs or iterations, not both") as e:
        RunConfig.from_dict({"stages": [{"epochs": 1}, {"epochs": 1, "iterations": 3}]})
    assert e.value.keys == ("stages[1].epochs", "stages[1].iterations")


def test_values_are_checked_when_built_and_again_after_assignment():
    from medcolor.config import check_run_config

    with pytest.raises(OptionError, match=r"^data\.size: must be an integer >= 8"):
        DataConfig(size=4)
    with pytest.raises(OptionError, match=r"trainer\.accelerator: must be one of auto, cpu"):
        RunConfig.from_dict({"trainer": {"accelerator": "tpu"}})
    assert RunConfig.from_dict({"trainer": {"accelerator": "CPU"}}).trainer.accelerator == "cpu"
    cfg = _run(data={"size": 32})
    cfg.data.subset = 0.5
    check_run_config(cfg)
    assert type(cfg.data.subset) is Fraction  # the check parsed the assigned value
    cfg.stages[0].lr_find.rule = "Fastest"
    with pytest.raises(OptionError, match=r"stages\[0\]\.lr_find\.rule: unknown LR finder rule 'Fastest'"):
        check_run_config(cfg)


def test_to_dict_round_trip_is_stable():
    cfg = _run(
        data={"subset": 1000, "num_workers": "auto", "test": "none", "val": "valid"},
        stages=[{"strategy": "color-module", "lr": "Find", "epochs": 2}, {"strategy": "all", "lr": 0.01}],
    )
    d = cfg.to_dict()
    again = RunConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg and again.to_dict() == d
    assert d["data"]["subset"] == 1000 and d["stages"][0]["lr"] == "find" and d["data"]["test"] is None


def test_one_override_engine():
    d = {"stages": [{"strategy": "all", "epochs": 2, "lr_find": {"rule": "minimum"}}], "data": {"options": {"a": 1}}}
    apply_overrides(
        d,
        {
            "stages": "color-module,all",
            "stages.*.lr": 0.02,
            "stages.iterations": 5,
            "data.options.b": 2,
            "data.size": 64,
        },
    )
    assert [s["strategy"] for s in d["stages"]] == ["color-module", "all"]
    assert all(s["lr"] == 0.02 and s["iterations"] == 5 and "epochs" not in s for s in d["stages"])
    assert all(s["lr_find"] == {"rule": "minimum"} for s in d["stages"])  # the first stage's settings are kept
    assert d["data"] == {"options": {"a": 1, "b": 2}, "size": 64}
    # a study's stage defaults are the template of the stages it names
    apply_overrides(d, {"stages": ["baseline"]}, stage_defaults={"iterations": 3})
    assert d["stages"] == [{"iterations": 3, "strategy": "baseline"}]
    with pytest.raises(OptionError, match="the run has no stages"):
        apply_overrides(d, {"stages": " , "})


def test_every_config_field_has_a_flag_with_help():
    from medcolor.cli.parser import CONFIG_FLAGS, FLAGS, build_parser, config_from_args

    assert all(f.kwargs.get("help") for f in FLAGS), [f.dest for f in FLAGS if not f.kwargs.get("help")]
    assert CONFIG_FLAGS["lr_min"] == "stages.*.lr_find.min_lr" and CONFIG_FLAGS["option"] == "data.options"
    a = build_parser().parse_args(["train", "--lr", "FIND", "--subset", "1", "--momentum", "0.9", "--load-size", "64"])
    cfg = config_from_args(a)
    assert cfg.stages[0].lr is LR_FIND and type(cfg.data.subset) is Fraction and cfg.data.subset == 1.0
    assert cfg.stages[0].momentum == 0.9 and cfg.data.load_size == 64


def test_cost_uses_the_training_plan():
    from medcolor.study.cost import estimate_run
    from medcolor.training.plan import plan_stage

    stages = [{"strategy": "baseline", "epochs": 1.5, "val_every": 7}, {"strategy": "all", "iterations": 10}]
    cfg = _run(data={"size": 32, "subset": 300, "val": 0.1, "test": 0.1, "batch_size": 16}, stages=stages)
    est = estimate_run(cfg, {"train_images": 1000})
    assert est["train_images"] == 300
    assert est["iterations"] == [plan_stage(s, 300, 16, 1).total_steps for s in cfg.stages]


def test_dataset_common_options_travel_as_one_object(tmp_path):
    import typing

    from medcolor.data.datasets import ON_MISSING, DatasetOptions, SyntheticXrays, dataset_options

    a = SyntheticXrays(tmp_path / "s", n=20, image_size=16, load_size=16, on_missing="skip")
    b = SyntheticXrays(tmp_path / "s", n=20, image_size=16, options=DatasetOptions(load_size=16, on_missing="skip"))
    assert (a.load_size, a.on_missing, a.split, a.label_names) == (b.load_size, b.on_missing, b.split, b.label_names)
    assert (a.labels == b.labels).all()
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        SyntheticXrays(tmp_path / "s", n=20, image_size=16, bogus=1)
    names = dataset_options(SyntheticXrays)
    assert {"n", "label_columns", "split", "labels", "on_duplicate"} <= set(names)
    assert typing.get_args(typing.get_type_hints(DataConfig)["on_missing"]) == tuple(ON_MISSING)
