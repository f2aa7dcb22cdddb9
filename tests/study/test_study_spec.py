"""Study specs: validation messages (file, line, key, did-you-mean), expansion, ids, transfer order, cost."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from study_helpers import BASE, REPO, TINY

from medcolor.cli import main
from medcolor.study.cost import estimate_run, forward_gflops
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


def test_a_cell_that_cannot_run_is_marked_not_refused(capsys, tmp_path):
    text = spec_text("cells:\n  bad: {stages: baseline, model.colorizer: colorU}\n  ok: {stages: color-module}\n")
    plan = expand(parse_spec(text))
    bad = next(c for c in plan.cells if c.group == "bad")
    assert "replicate" in bad.invalid and next(c for c in plan.cells if c.group == "ok").invalid is None
    p = tmp_path / "s.yaml"
    p.write_text(text)
    assert main(["study", "run", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "cannot run (will be recorded as failed)" in out and "total: 2 cells in 1 dependency level(s)" in out


# ----------------------------------------------------------------------------- cost
def test_cost_model_counts_flops_per_strategy():
    text = spec_text(
        """\
        cells:
          b: {stages: baseline, model.colorizer: replicate}
          c: {stages: color-module}
        estimate: {train_images: 1000, tflops: 10}
        """
    )
    plan = expand(parse_spec(text))
    f_t, f_e = forward_gflops("colorizer", "colorU", 32), forward_gflops("backbone", "mobilenet_v2", 32)
    assert forward_gflops("colorizer", "replicate", 32) == 0 and f_t > 0 and f_e > 0
    by = {c.values["stages"]: c.estimate for c in plan.cells}
    n_val, n_test = 200, 200  # val: 0.2 and test: 0.2 of 1000
    chunks = 2  # 4 iterations, validated every 2
    # baseline: T is the gray copy and E is frozen: one forward pass per training image
    expected = 4 * 8 * f_e + chunks * n_val * f_e + n_test * f_e
    assert by["baseline"]["tflop"] == pytest.approx(expected / 1e3)
    # color-module trains T through the frozen E: T fwd + weight grads, E fwd + input grads
    expected = 4 * 8 * (2 * f_t + 2 * f_e) + chunks * n_val * (f_t + f_e) + n_test * (f_t + f_e)
    assert by["color-module"]["tflop"] == pytest.approx(expected / 1e3)
    assert by["color-module"]["gpu_hours"] == pytest.approx(expected * 1e9 / 10e12 / 3600)
    assert by["baseline"]["iterations"] == [4] and by["baseline"]["train_images"] == 600


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
