"""The refusal of ``medcolor train`` to write into a folder that holds another run: short and actionable."""

from __future__ import annotations

from medcolor.config import RunConfig
from medcolor.training.rundir import short_diffs


def _config(**stage: object) -> dict:
    d = {
        "data": {"dataset": "folder", "root": "data", "size": 224},
        "stages": [{"strategy": "color-module", "epochs": 2}, {"strategy": "all", "epochs": 2, **stage}],
    }
    return RunConfig.from_dict(d).to_dict()


def test_changed_stage_setting_is_named_by_its_stage_and_key() -> None:
    old, new = _config(), _config(lr=0.003)
    assert short_diffs(old, new) == [f"stages[1].lr: {old['stages'][1]['lr']!r} -> 0.003"]


def test_different_stage_lists_are_shown_cut_short() -> None:
    old = _config()
    new = RunConfig.from_dict({**old, "stages": [{"strategy": "baseline", "epochs": 1}]}).to_dict()
    (line,) = short_diffs(old, new)
    assert line.startswith("stages: [{") and " -> [{" in line
    assert len(line) < 100  # the whole lists of stage dicts are over 1,000 characters
    assert sum(len(x) for x in short_diffs(old, new)) < len(repr(old["stages"]))


def test_no_difference_no_lines() -> None:
    assert short_diffs(_config(), _config()) == []


def test_run_result_repr_is_one_short_line(tmp_path) -> None:
    from medcolor.training.rundir import RunResult, StageResult

    stage = StageResult(0, "color-module", tmp_path, 0.01, 0.91234, {}, 10, 30, 10, 1.0, 100)
    r = RunResult(
        tmp_path,
        [stage, StageResult(1, "all", tmp_path, 0.01, None, {}, None, 30, 10, 1.0, 100)],
        {"mean_auc": 0.9051, "auc": {"A": 0.9}},
        tmp_path / "model.safetensors",
        None,
    )
    assert repr(r) == f"RunResult({str(tmp_path)!r}, stages color-module -> all, test mean AUC 0.905)"
