"""``study run --only PATTERN``: a part of a study's grid first (e.g. the arms a decision rests on), the cells they
transfer from included, the rest left pending for a later run."""

from __future__ import annotations

import pytest
from study_helpers import TINY, write_spec

from medcolor.cli import main
from medcolor.study.executors import LocalExecutor
from medcolor.study.plan import expand
from medcolor.study.results import StudyError, read_results
from medcolor.study.runner import run_study, select_cells, summary_lines
from medcolor.study.spec import load_spec


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, synthetic_root):
    return write_spec(tmp_path_factory.mktemp("only") / "tiny.yaml", TINY, synthetic_root)


def _ids(plan, group, seeds=(0, 1, 2)) -> set[str]:
    return {c.id for c in plan.cells if c.group == group and c.values["trainer.seed"] in seeds}


def test_patterns_select_ids_and_groups_with_the_cells_they_transfer_from(tiny) -> None:
    plan = expand(load_spec(tiny))
    assert select_cells(plan, ["moved"]) == _ids(plan, "moved") | _ids(plan, "color", (0,))
    assert select_cells(plan, ["base*"]) == _ids(plan, "baseline")
    one = next(iter(_ids(plan, "color", (2,))))
    assert select_cells(plan, [one, "baseline"]) == {one} | _ids(plan, "baseline")
    assert select_cells(plan, f"{one}, baseline") == {one} | _ids(plan, "baseline")  # a string: comma-separated
    with pytest.raises(StudyError, match=r"--only 'lut\*' matches no cell id or group of tiny; its groups: baseline, "):
        select_cells(plan, ["lut*"])
    for nothing in ([], [""], " , "):  # an empty selection is refused, never read as "every cell"
        with pytest.raises(StudyError, match="--only gives no pattern"):
            select_cells(plan, nothing)


def test_dry_run_shows_the_selected_cells_and_a_bad_pattern_is_named(tiny, capsys) -> None:
    assert main(["study", "run", str(tiny), "--dry-run", "--only", "moved"]) == 0
    out = capsys.readouterr().out
    assert "total: 2 cells in 2 dependency level(s), 8 training iterations" in out
    assert main(["study", "run", str(tiny), "--dry-run", "--only", "nope,moved"]) == 2
    assert "--only 'nope' matches no cell id or group" in capsys.readouterr().err
    assert main(["study", "run", str(tiny), "--dry-run", "--only", ","]) == 2
    assert "--only gives no pattern" in capsys.readouterr().err


@pytest.mark.slow
def test_only_runs_the_selection_and_leaves_the_rest_pending(tiny, tmp_path) -> None:
    plan = expand(load_spec(tiny))
    out = tmp_path / "study"
    result = run_study(tiny, out, executor=LocalExecutor(workers=0, threads=1), only=["moved"])
    want = _ids(plan, "moved") | _ids(plan, "color", (0,))
    assert set(result.ran) == want and result.ok and result.selected == want
    assert set(read_results(out)["cell"]) == want
    assert {s.cell.id for s in result.states if s.state == "pending"} == {c.id for c in plan.cells} - want
    assert "  5 cell(s) not selected by --only: run the same command without it to run them" in summary_lines(result)
    rest = run_study(tiny, out, executor=LocalExecutor(workers=0, threads=1))
    assert set(rest.ran) == {c.id for c in plan.cells} - want and rest.ok and rest.selected is None
