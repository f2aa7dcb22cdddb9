"""The study directory: every file a study writes resolves under DIR (hostile group names, tampered plans,
linked cell folders), and damaged internal files give a clear error naming the file or are rebuilt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from study_helpers import BASE

from medcolor.cli import main
from medcolor.study.layout import (
    CELL_FILE,
    PLAN_FILE,
    cell_dir,
    prepare_study_dir,
    read_cell,
    read_plan,
    study_status,
)
from medcolor.study.plan import expand
from medcolor.study.results import ROW_FILE, StudyError, read_rows, write_rows
from medcolor.study.runner import run_cell
from medcolor.study.spec import SpecError, parse_spec

SMALL = "name: small\n" + BASE + "grid:\n  trainer.seed: [0, 1]\ncells:\n  {group}: {{stages: baseline}}\n"


def small_spec(root: Path, group: str = "gray"):
    return parse_spec(SMALL.format(root=root, group=json.dumps(group)), "small.yaml")


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*")]


HOSTILE = ["../../../../tmp/x/ESCAPE", "/abs", "a/b", "..", ".", ".hidden", "x" * 61, "a b", "ü", "a\\b", "~root", ""]


@pytest.mark.parametrize("group", HOSTILE)
def test_a_group_name_that_is_no_slug_is_refused_with_file_and_line(tmp_path, group):
    with pytest.raises(SpecError, match=r"small\.yaml:\d+: cells: the group name .* is not a slug"):
        small_spec(tmp_path, group)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group=st.text(min_size=1, max_size=70))
def test_every_path_a_study_writes_resolves_under_its_directory(tmp_path_factory, group):
    """Random group names: either the spec is refused, or every cell folder and file written by
    prepare_study_dir lies under DIR (and every cell folder directly under DIR/cells)."""
    root = tmp_path_factory.mktemp("s")
    try:
        spec = small_spec(root, group)
    except SpecError:
        return
    plan = expand(spec, check=False)
    out = root / "study"
    prepare_study_dir(spec, plan, out)
    cells = (out / "cells").resolve()
    for c in plan.cells:
        assert cell_dir(out, c.id).resolve().parent == cells
    assert all(p.resolve().is_relative_to(out.resolve()) for p in files_under(out))
    assert sorted(p.name for p in root.iterdir()) == ["study"]


@pytest.mark.parametrize("cell_id", ["../../escape", "/tmp/abs", "..", "a/b", ""])
def test_a_tampered_plan_naming_a_cell_outside_is_refused(tmp_path, cell_id):
    spec = small_spec(tmp_path)
    out = prepare_study_dir(spec, expand(spec, check=False), tmp_path / "study")
    d = json.loads((out / PLAN_FILE).read_text())
    d["cells"][0]["id"] = cell_id
    (out / PLAN_FILE).write_text(json.dumps(d))
    with pytest.raises(StudyError, match="is not a cell id"):
        read_plan(out)
    with pytest.raises(StudyError, match="is not a cell id"):
        cell_dir(out, cell_id)


def test_a_cell_folder_linked_elsewhere_is_refused(tmp_path):
    spec = small_spec(tmp_path)
    plan = expand(spec, check=False)
    out = prepare_study_dir(spec, plan, tmp_path / "study")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    d = out / "cells" / plan.cells[0].id
    (d / CELL_FILE).unlink()
    d.rmdir()
    d.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StudyError, match="outside"):
        prepare_study_dir(spec, plan, out)
    with pytest.raises(StudyError, match="outside"):
        run_cell(out, plan.cells[0].id, capture=False)
    assert list(elsewhere.iterdir()) == []


# ----------------------------------------------------------------------------- damaged internal files
def fake_rows(cell_id: str) -> list[dict]:
    return [{"cell": cell_id, "label": lab, "val_auc": 0.6, "test_auc": 0.7, "wall_s": 1.0} for lab in ("a", "mean")]


@pytest.fixture
def study(tmp_path):
    spec = small_spec(tmp_path)
    plan = expand(spec, check=False)
    out = prepare_study_dir(spec, plan, tmp_path / "study")
    for c in plan.cells:
        write_rows(cell_dir(out, c.id), fake_rows(c.id))
    return out, spec, plan


def status(capsys, out: Path) -> tuple[int, str, str]:
    rc = main(["study", "status", str(out)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_status_shows_each_done_cells_internal_test_auc_and_wall_time(study, capsys):
    out, _, plan = study
    first = plan.cells[0].id
    rows = fake_rows(first)
    rows[-1] |= {"test_auc": 0.8125, "wall_s": 1234.4}
    rows.append({**rows[-1], "test_set": "nih", "test_auc": 0.5, "wall_s": 9.0})  # an external set's mean
    write_rows(cell_dir(out, first), rows)
    rc, text, _ = status(capsys, out)
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith("  ")}
    assert rc == 0 and len(lines) == len(plan.cells)
    assert lines[first].split()[0] == "done" and lines[first].endswith("test mean AUC 0.8125, 1,234 s")
    assert all(lines[c.id].endswith("test mean AUC 0.7000, 1 s") for c in plan.cells[1:])


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[: len(t) // 2],  # truncated
        lambda t: "",
        lambda t: t.replace("0.7", '"n/a"'),  # a non-numeric AUC
        lambda t: "[1, 2]",
        lambda t: t.replace('"label": "a"', '"label": 3'),
    ],
)
def test_a_damaged_row_json_is_never_called_done(study, capsys, damage):
    out, _, plan = study
    f = cell_dir(out, plan.cells[0].id) / ROW_FILE
    f.write_text(damage(f.read_text()))
    with pytest.raises(StudyError, match=str(f).replace(".", r"\.")):
        read_rows(f)
    states = {s.cell.id: s for s in study_status(out)}
    assert states[plan.cells[0].id].state == "pending" and ROW_FILE in states[plan.cells[0].id].detail
    assert states[plan.cells[1].id].state == "done"
    rc, text, _ = status(capsys, out)
    assert rc == 0 and "1 done, 1 pending" in text


def test_a_damaged_plan_json_exits_2_naming_it_in_status_and_is_rebuilt_by_run(study, capsys):
    out, spec, plan = study
    p = out / PLAN_FILE
    p.write_text(p.read_text()[:100])
    rc, _, err = status(capsys, out)
    assert rc == 2 and str(p) in err and "damaged" in err and "Traceback" not in err
    prepare_study_dir(spec, plan, out)  # what `study run` does first: the plan is derived from the spec
    assert [c.id for c in read_plan(out).cells] == [c.id for c in plan.cells]


def test_a_damaged_cell_json_is_rewritten_by_run_and_named_by_a_worker(study):
    out, spec, plan = study
    f = cell_dir(out, plan.cells[0].id) / CELL_FILE
    f.write_text('{"study": "small", "cell": {')
    with pytest.raises(StudyError, match=f"{f}: the cell record is damaged"):
        read_cell(out, plan.cells[0].id)
    with pytest.raises(StudyError, match="the cell record is damaged"):
        run_cell(out, plan.cells[0].id, capture=False)
    prepare_study_dir(spec, plan, out)
    assert read_cell(out, plan.cells[0].id)[1].id == plan.cells[0].id


def test_a_damaged_row_json_is_collected_again_from_the_run(study, tmp_path):
    """row.json is derived from the run's summary.json: `study run` rebuilds it instead of failing."""
    out, _, plan = study
    c = plan.cells[0]
    d = cell_dir(out, c.id)
    summary = {
        "data": {"label_names": ["a"], "train": 10},
        "stages": [{"best_val_auc": {"a": 0.6}, "best_val_mean_auc": 0.6, "total_steps": 4}],
        "test": {"split": "test", "auc": {"a": 0.7}, "mean_auc": 0.7, "ci95": {}},
    }
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "wall.json").write_text('{"wall_s": 1.5')  # damaged too: a measurement, recorded as NaN
    (d / ROW_FILE).write_text('{"schema_version": 1, "rows": [')
    assert run_cell(out, c.id, capture=False) == "done"
    rows = read_rows(d / ROW_FILE)
    assert [r["label"] for r in rows] == ["a", "mean"] and rows[0]["test_auc"] == 0.7
    assert rows[0]["wall_s"] != rows[0]["wall_s"]  # NaN
    assert {s.state for s in study_status(out)} == {"done"}


def test_no_file_is_written_outside_when_the_study_dir_is_a_file(tmp_path):
    spec = small_spec(tmp_path)
    f = tmp_path / "study"
    f.write_text("x")
    with pytest.raises(StudyError, match="not a directory"):
        prepare_study_dir(spec, expand(spec, check=False), f)
    assert os.listdir(tmp_path) == ["study"] or sorted(os.listdir(tmp_path)) == ["study"]
