"""Study specs: validation messages (file, line, key, did-you-mean), expansion, ids, transfer order, cost."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
import yaml
from study_helpers import BASE, REPO, TINY

from medcolor.cli import main
from medcolor.study.cost import estimate_run
from medcolor.study.plan import cell_run_config, expand
from medcolor.study.spec import SpecError, load_spec, parse_memory_gb, parse_spec, parse_time_minutes

ROOT = "/nonexistent/synthetic"  # specs are only parsed and expanded here: no data is read


def spec_text(body: str, name: str = "t") -> str:
    return f"name: {name}\n" + BASE.format(root=ROOT) + textwrap.dedent(body)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def fails(text: str, *patterns: str) -> str:
    with pytest.raises(SpecError) as e:
        expand(parse_spec(text, "study.yaml"))
    msg = str(e.value)
    for p in patterns:
        assert re.search(p, msg), f"{p!r} not in: {msg}"
    return msg


# ----------------------------------------------------------------------------- validation
def test_unknown_top_level_key_names_line_and_suggests():
    text = spec_text("grid:\n  trainer.seed: [0]\ngird: {}\n")
    fails(text, rf"^study\.yaml:{line_of(text, 'gird')}: unknown key 'gird'\. Did you mean 'grid'\?")


def test_unknown_grid_key_names_line_and_suggests():
    text = spec_text("grid:\n  model.colorizr: [colorU]\n")
    fails(text, rf"^study\.yaml:{line_of(text, 'colorizr')}: grid: unknown key 'model\.colorizr'", "model.colorizer")


def test_unknown_base_option_names_its_line():
    text = spec_text("grid:\n  trainer.seed: [0]\n").replace("    size: 32", "    sise: 32")
    fails(text, rf"^study\.yaml:{line_of(text, 'sise')}: base\.data: unknown option 'sise'\. Did you mean 'size'\?")


def test_bad_values_name_the_value_line():
    text = spec_text("grid:\n  trainer.seed:\n    - 0\n    - one\n")
    fails(text, rf"^study\.yaml:{line_of(text, '- one')}: trainer\.seed: value 'one': .*expected an integer")
    text = spec_text("grid:\n  model.colorizer: [colorU, pixelshufle]\n")
    fails(text, rf"^study\.yaml:{line_of(text, 'pixelshufle')}: .*unknown colorizer .*Did you mean 'pixelshuffle'\?")
    text = spec_text("grid:\n  stages: [baseline, 'color-modul,all']\n")
    fails(text, r"unknown strategy 'color-modul'. Did you mean 'color-module'\?")
    text = spec_text("grid:\n  trainer.seed: [0]\n").replace("size: 32", "size: big")
    fails(text, rf"^study\.yaml:{line_of(text, 'size: big')}: base\.data\.size: expected an integer")
    fails(spec_text("resources: {time: soon}\n"), r"resources\.time: invalid value 'soon'")
    fails(spec_text("executor: {name: cluster}\n"), r"executor\.name: 'cluster' is not one of local, slurm")
    text = spec_text("grid:\n  output: [a, b]\n")
    fails(text, r"'output' is set by the study runner")


def test_yaml_errors_and_duplicate_keys_have_lines():
    fails("name: t\nbase: {data: [\n", r"^study\.yaml:\d+: not valid YAML")
    text = spec_text("grid:\n  trainer.seed: [0]\n  trainer.seed: [1]\n")
    fails(text, rf"study\.yaml:{line_of(text, 'trainer.seed: [1]')}: key 'trainer.seed' appears twice")


def test_unknown_transfer_reference():
    text = spec_text(
        """\
        cells:
          a: {stages: color-module}
          b: {stages: last-layer, transfer: TT}
        transfer:
          T: {from: {cells: a}, use: colorizer}
        """
    )
    fails(text, rf"^study\.yaml:{line_of(text, 'transfer: TT')}: transfer: unknown transfer source 'TT'", "'T'")


def test_transfer_matching_no_cell_or_several_cells():
    text = spec_text(
        """\
        cells:
          a: {stages: color-module, trainer.seed: [0, 1]}
          b: {stages: last-layer, transfer: T}
        transfer:
          T: {from: {cells: a, trainer.seed: 5}, use: colorizer}
        """
    )
    fails(text, r"transfer 'T' .* matches no cell of the study: none has cells=a, trainer\.seed=5")
    fails(text.replace(", trainer.seed: 5}", "}"), r"transfer 'T' .* matches 2 cells")
    text = text.replace("T: {from: {cells: a, trainer.seed: 5}", "T: {from: {cells: nope}")
    fails(text, r"transfer\.T: no cell group 'nope'")


def test_transfer_cycle_is_refused():
    text = spec_text(
        """\
        cells:
          a: {stages: last-layer, transfer: fromB}
          b: {stages: last-layer, transfer: fromA}
        transfer:
          fromA: {from: {cells: a}, use: model}
          fromB: {from: {cells: b}, use: model}
        """
    )
    fails(text, r"the transfer sources form a cycle: \(cells\.a.*-> \(cells\.b.*-> \(cells\.a")
    self_loop = spec_text(
        """\
        cells:
          a: {stages: last-layer, transfer: T}
        transfer:
          T: {from: {cells: a}, use: model}
        """
    )
    fails(self_loop, r"cycle")


def test_cli_reports_a_bad_spec_in_one_line(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(spec_text("grid:\n  model.backbone: [resnet81]\n"))
    assert main(["study", "run", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"medcolor study: error: {p}:") and "Did you mean 'resnet18'" in err


# ----------------------------------------------------------------------------- expansion
def test_expansion_cells_ids_dependencies():
    plan = expand(parse_spec(TINY.format(root=ROOT), "tiny.yaml"))
    assert len(plan.cells) == 7
    assert plan.columns == ["trainer.seed", "model.colorizer"]
    again = expand(parse_spec(TINY.format(root=ROOT), "other/place.yaml"))
    assert [c.id for c in plan.cells] == [c.id for c in again.cells]  # stable ids
    assert all(re.fullmatch(r"[A-Za-z0-9.+_-]+_[0-9a-f]{8}", c.id) for c in plan.cells)
    moved = [c for c in plan.cells if c.group == "moved"]
    assert len(moved) == 1 and moved[0].level == 1
    source = plan[moved[0].depends_on[0]]
    assert source.group == "color" and source.values["trainer.seed"] == 0
    assert moved[0].transfer == {
        "name": "T",
        "source": source.id,
        "use": "colorizer",
        "stage": None,
        "path": f"cells/{source.id}/colorizer.safetensors",
    }
    assert [len(level) for level in plan.levels] == [6, 1]
    base = next(c for c in plan.cells if c.group == "baseline")
    assert base.values["model.colorizer"] == "replicate" and source.values["model.colorizer"] == "colorU"
    assert base.values["stages"] == "baseline" and base.values["transfer"] == ""
    cfg = cell_run_config(moved[0], "/studies/x")
    assert cfg.model.colorizer_from == f"/studies/x/cells/{source.id}/colorizer.safetensors"
    assert cfg.output == f"/studies/x/cells/{moved[0].id}"
    assert cfg.data.cache_dir == "/studies/x/image-cache"  # the cells decode each image once, together
    assert all(c.invalid is None for c in plan.cells)


def test_a_changed_cell_gets_a_new_id_and_others_keep_theirs():
    text = TINY.format(root=ROOT)
    a = {c.id for c in expand(parse_spec(text)).cells}
    b = {c.id for c in expand(parse_spec(text.replace("trainer.seed: [0, 1, 2]", "trainer.seed: [0, 1, 2, 3]"))).cells}
    assert a < b and len(b - a) == 2  # the extended study keeps the finished cells


def test_stage_shorthands_options_named_values_and_exclude():
    text = spec_text(
        """\
        grid:
          stages: ["color-module,all", [{strategy: color-module, iterations: 9}]]
          stages.val_every: 1
          data:
            small: {subset: 40}
            big: {subset: 80}
        exclude:
          - {stages: color-module, data: big}
          - {stages: all}
        """
    )
    plan = expand(parse_spec(text, "s.yaml"))
    assert len(plan.cells) == 3
    assert plan.columns == ["stages.val_every", "data"]
    assert {c.values["data"] for c in plan.cells} == {"small", "big"}
    assert plan.warnings == [f"s.yaml:{line_of(text, '{stages: all}')}: exclude[1] matches no cell"]
    iters = sorted(tuple(s["iterations"] for s in c.config["stages"]) for c in plan.cells)
    assert iters == [(4, 4), (4, 4), (9,)]
    with pytest.raises(SpecError, match=r"stages: the value \"color-module,all\" is given twice"):
        parse_spec(spec_text('grid:\n  stages: ["color-module,all", [color-module, all]]\n'))
    assert all(s["val_every"] == 1 and s["lr"] == 0.05 for c in plan.cells for s in c.config["stages"])
    assert {c.config["data"]["subset"] for c in plan.cells} == {40.0, 80.0}


def test_a_cell_that_cannot_run_is_refused_with_file_line_and_key(capsys, tmp_path):
    """A bad value in one group: exit 2 naming the file, the line of the group and the key (it used to be
    planned and then "recorded as failed")."""
    text = spec_text("cells:\n  bad: {stages: baseline, model.colorizer: colorU}\n  ok: {stages: color-module}\n")
    line = line_of(text, "bad: {stages")
    with pytest.raises(
        SpecError, match=rf"1 cell\(s\) of the study cannot run:\ns\.yaml:{line}: cells\.bad .*replicate"
    ):
        expand(parse_spec(text, "s.yaml"))
    assert len(expand(parse_spec(text), check=False).cells) == 2  # unchecked (as the runner re-reads it): planned
    p = tmp_path / "s.yaml"
    p.write_text(text)
    for extra in (["--dry-run"], ["-o", str(tmp_path / "out")]):
        assert main(["study", "run", str(p), *extra]) == 2
        err = capsys.readouterr().err
        assert f"s.yaml:{line}: cells.bad" in err and "stages" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_grid_of_half_a_million_cells_is_refused_at_once():
    import time

    text = spec_text("grid:\n  trainer.seed: " + json.dumps(list(range(1000))) + "\n  data.size: "
                     + json.dumps(list(range(32, 532))) + "\n")  # fmt: skip
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match=r"the grid expands to 500,000 cells, more than 10,000"):
        expand(parse_spec(text, "s.yaml"))
    assert time.perf_counter() - t0 < 10


def test_epochs_need_the_training_set_size():
    cfg = cell_run_config(expand(parse_spec(spec_text("grid:\n  stages.epochs: 2\n"))).cells[0], None)
    e = estimate_run(cfg, {})
    assert e["gpu_hours"] is None and "estimate.train_images" in e["notes"][0]
    e = estimate_run(cfg, {"train_images": 1000})  # 600 training images, batch 8: 75 per epoch
    assert e["iterations"] == [150]


def test_durations_and_memory():
    assert [parse_time_minutes(v) for v in (90, "90m", "4h", "12:00:00", "1-00:00:00", "30:00")] == [
        90,
        90,
        240,
        720,
        1440,
        30,
    ]
    assert parse_memory_gb("32G") == 32 and parse_memory_gb("512M") == 0.5 and parse_memory_gb(8) == 8


@pytest.mark.parametrize(
    "path", sorted(p for p in (REPO / "configs").rglob("*.yaml") if "base" in yaml.safe_load(p.read_text()))
)
def test_shipped_study_specs_expand_and_every_cell_can_run(path):
    plan = expand(load_spec(path))
    assert plan.cells and not plan.warnings
    assert [c.id for c in plan.cells if c.invalid] == []
    assert all(c.estimate.get("gpu_hours") is not None for c in plan.cells)
    text = path.read_text()
    if "configs/paper" in str(path):  # the cost quoted in the comment is the one --dry-run computes
        hours = sum(c.estimate["gpu_hours"] for c in plan.cells)
        assert f"{len(plan.cells)} cells" in text and (f"{hours:.1f} GPU-hours" in text or f"{hours:.1f}\n" in text)


def test_cells_run_grid_major_seed_0_of_every_arm_first_and_sources_before_their_targets():
    """The external-validity study: seed 0 of every arm (frozen, then its fine-tuned cell, which takes T and E
    from it) runs before any seed 1 cell; within one seed the plan's order, sources before targets."""
    from pathlib import Path

    from medcolor.study.plan import expand
    from medcolor.study.runner import grid_major

    root = Path(__file__).resolve().parents[2]
    spec = load_spec(root / "configs/examples/study-kermany-external.yaml")
    plan = expand(spec)
    order = grid_major(spec, plan.cells)
    seeds = [c.values["trainer.seed"] for c in order]
    assert seeds == sorted(seeds) and len(order) == len(plan.cells) == 60
    first = [c.group for c in order[:12]]
    mobilenet = ["gray", "gray-ft", "colorU", "colorU-ft", "lut", "lut-ft", "graystart", "graystart-ft"]
    assert first == [*mobilenet, "lite-gray", "lite-gray-ft", "lite-colorU", "lite-colorU-ft"]  # then the 1k arms
    assert {c.values.get("model.backbone") for c in order[8:12]} == {"timm:tf_efficientnet_lite0"}
    position = {c.id: i for i, c in enumerate(order)}
    for c in order:
        assert all(position[d] < position[c.id] for d in c.depends_on), c.id
        if c.depends_on:  # the fine-tuned cell takes T and E from its frozen cell of the same seed
            (src,) = c.depends_on
            assert src.split("_")[1] == c.id.split("_")[1] and c.transfer["use"] == "model"


def test_grid_keys_are_the_keys_of_the_one_config_walk():
    from medcolor.config import RunConfig, apply_overrides, config_fields
    from medcolor.study.keys import check_config_key

    keys = [k for k, *_ in config_fields(RunConfig) if not k.startswith(("output", "name", "test_sets."))]
    assert "stages.*.lr_find.min_lr" in keys and "operating.threshold" in keys
    assert [k for k in keys if check_config_key(k)] == []  # every key the walk yields is a grid key
    assert check_config_key("stages.lr") is None and check_config_key("data.options.anything") is None
    d = apply_overrides({"stages": [{}, {}]}, {"stages.*.lr": 0.5, "stages.momentum": 0.9})
    assert d["stages"] == [{"lr": 0.5, "momentum": 0.9}] * 2  # both spellings mean every stage
    assert "stages.momentum is a value, not a section" in check_config_key("stages.momentum.x")
    assert "stages has no option 'lrr'. Did you mean 'stages.lr'?" in check_config_key("stages.lrr")
    assert "data has no option 'sise'. Did you mean 'data.size'?" in check_config_key("data.sise")
