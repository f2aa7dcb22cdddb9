"""Study results per test set (schema version 2): rows per cell x test set x label read from a run directory,
a version-1 table migrated ("internal"), top-level ``test_sets:`` of a spec, and ``compare(test_set=...)``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_stats import two_arms

from medcolor.cli import main
from medcolor.errors import DataError
from medcolor.study.plan import Cell, expand
from medcolor.study.provenance import git_commit
from medcolor.study.results import (
    INTERNAL,
    SCHEMA_VERSION,
    StudyError,
    cell_rows,
    for_test_set,
    read_results,
    read_rows,
    table_test_sets,
    write_rows,
)
from medcolor.study.spec import SpecError, parse_spec
from medcolor.study.stats import compare

V1_COLUMNS = ["schema_version", "study", "cell", "trainer.seed", "stages", "transfer", "transfer_name", "label",
              "val_auc", "test_auc", "test_ci_low", "test_ci_high", "n_train", "iterations", "wall_s", "run_dir",
              "git_commit", "medcolor_version", "torch_version"]  # fmt: skip


def v1_table() -> pd.DataFrame:
    rows = []
    for seed in range(2):
        for label, auc in [("PNEUMONIA", 0.9 + seed / 100), ("mean", 0.9 + seed / 100)]:
            rows.append([1, "s", f"c{seed}", seed, "baseline", "", "", label, 0.95, auc, auc - 0.02, auc + 0.02,
                         100, 10, 1.5, f"cells/c{seed}", "abc", "0.1.0", "2.5"])  # fmt: skip
    return pd.DataFrame(rows, columns=V1_COLUMNS)


def test_a_version_1_table_and_row_file_read_as_the_internal_test_set(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 3
    v1 = v1_table()
    v1.to_parquet(tmp_path / "results.parquet")
    df = read_results(tmp_path)
    assert (df["schema_version"] == 3).all() and (df["test_set"] == INTERNAL).all()
    # test_set before label, nothing else moved; version 3's device and precision at the end, unknown
    assert list(df.columns) == [*V1_COLUMNS[:7], "test_set", *V1_COLUMNS[7:], "device", "precision"]
    assert (df["device"] == "").all() and (df["precision"] == "").all()
    assert df.drop(columns=["test_set", "schema_version", "device", "precision"]).equals(
        v1.drop(columns="schema_version")
    )
    assert table_test_sets(df) == [INTERNAL] and for_test_set(df).equals(df.drop(columns="test_set"))
    v1.iloc[:0].to_parquet(tmp_path / "empty.parquet")  # no rows: the missing column says version 1
    assert list(read_results(tmp_path / "empty.parquet").columns) == list(df.columns)
    (tmp_path / "row.json").write_text(json.dumps({"schema_version": 1, "rows": v1.iloc[:2].to_dict("records")}))
    rows = read_rows(tmp_path / "row.json")
    assert [r["test_set"] for r in rows] == [INTERNAL, INTERNAL] and rows[0]["schema_version"] == 3
    with pytest.raises(StudyError, match=r"no test set 'nih'; its test sets: internal"):
        for_test_set(df, "nih")


def summary(run: Path) -> dict:
    """A finished run's summary.json: its own test split and one external set ("covid", written by
    medcolor.testsets) that has PNEUMONIA but not EFFUSION (left out: no AUC)."""
    return {
        "data": {"label_names": ["PNEUMONIA", "EFFUSION"], "train": 120},
        "stages": [{"total_steps": 0, "environment": {"device": "Intel Xeon", "precision": "bf16-mixed"}},
                   {"total_steps": 4, "best_val_auc": {"PNEUMONIA": 0.91, "EFFUSION": 0.71},
                    "best_val_mean_auc": 0.81, "environment": {"device": "AMD EPYC", "precision": "bf16-mixed"}}],
        "test": {"split": "test", "auc": {"PNEUMONIA": 0.93, "EFFUSION": 0.73}, "mean_auc": 0.83,
                 "ci95": {"PNEUMONIA": [0.9, 0.96], "EFFUSION": [0.7, 0.76], "mean_auc": [0.8, 0.86]}},
        "test_sets": {"covid": {"auc": {"PNEUMONIA": 0.61, "EFFUSION": None}, "mean_auc": 0.61,
                                "ci95": {"PNEUMONIA": [0.5, 0.7], "EFFUSION": None, "mean_auc": [0.5, 0.7]},
                                "left_out": {"EFFUSION": "not in set"}}},
    }  # fmt: skip


def test_cell_rows_one_row_per_test_set_and_label(tmp_path: Path) -> None:
    run = tmp_path / "cells" / "c0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary(run)))
    # a set evaluated later (medcolor evaluate --test-set) is only in RUN/test_sets/<name>/metrics.json
    (run / "test_sets" / "nih").mkdir(parents=True)
    (run / "test_sets" / "nih" / "metrics.json").write_text(
        json.dumps({"auc": {"PNEUMONIA": 0.55}, "mean_auc": 0.55, "ci95": {"PNEUMONIA": [0.4, 0.7]}})
    )
    cell = Cell(id="c0", group=None, values={"trainer.seed": 0, "stages": "baseline", "transfer": ""}, config={})
    rows = cell_rows(cell, run, study="s", columns=["trainer.seed"], wall_s=2.0)
    got = {(r["test_set"], r["label"]): r for r in rows}
    assert list(dict.fromkeys(r["test_set"] for r in rows)) == [INTERNAL, "covid", "nih"]
    assert len(rows) == 3 * 3  # 2 labels + mean per set
    assert got["internal", "mean"]["test_auc"] == 0.83 and got["covid", "PNEUMONIA"]["test_ci_low"] == 0.5
    assert math.isnan(got["covid", "EFFUSION"]["test_auc"]) and got["covid", "mean"]["test_auc"] == 0.61
    assert math.isnan(got["nih", "EFFUSION"]["test_auc"]) and got["nih", "PNEUMONIA"]["test_ci_high"] == 0.7
    assert {r["val_auc"] for r in rows if r["label"] == "mean"} == {0.81}  # validation is the run's, per set
    assert all(r["schema_version"] == 3 and r["n_train"] == 120 and r["iterations"] == 4 for r in rows)
    assert {(r["device"], r["precision"]) for r in rows} == {("Intel Xeon + AMD EPYC", "bf16-mixed")}
    write_rows(run, rows)
    assert pd.DataFrame(read_rows(run / "row.json")).equals(pd.DataFrame(rows))
    (run / "test_sets" / "nih" / "metrics.json").write_text("{trunc")
    with pytest.raises(StudyError, match=r"nih/metrics.json: the test set's metrics are damaged"):
        cell_rows(cell, run, study="s", columns=["trainer.seed"], wall_s=2.0)


def test_cell_rows_name_the_commit_of_each_attempt(tmp_path: Path) -> None:
    """A cell resumed under other code names both commits, in order, each once; without attempts' commits, the
    commit of the process that writes the rows."""
    run = tmp_path / "cells" / "c0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary(run)))
    cell = Cell(id="c0", group=None, values={"trainer.seed": 0, "stages": "baseline", "transfer": ""}, config={})
    kw = {"study": "s", "columns": ["trainer.seed"], "wall_s": 2.0}
    rows = cell_rows(cell, run, commits=["aaa", "", "aaa", "bbb+dirty"], **kw)
    assert {r["git_commit"] for r in rows} == {"aaa + bbb+dirty"}
    assert {r["git_commit"] for r in cell_rows(cell, run, **kw)} == {git_commit()}
    assert {r["git_commit"] for r in cell_rows(cell, run, commits=["", ""], **kw)} == {git_commit()}


SPEC = """\
name: ext
base:
  data: {dataset: synthetic, size: 32}
  model: {backbone: resnet18, weights: none}
  stages: [{strategy: baseline, iterations: 2}]
grid:
  trainer.seed: [0, 1]
"""
TEST_SETS = """\
test_sets:
  other:
    dataset: synthetic
    labels: {Opacity: Opacity}
"""


def test_spec_test_sets_apply_to_every_cell_and_change_its_id_only_when_given() -> None:
    plain = expand(parse_spec(SPEC, "s.yaml"), check=False)
    with_sets = expand(parse_spec(SPEC + TEST_SETS, "s.yaml"), check=False)
    assert all(c.config["test_sets"] == {} for c in plain.cells)
    assert all(c.config["test_sets"]["other"]["labels"] == {"Opacity": "Opacity"} for c in with_sets.cells)
    assert [c.id.split("_")[0] for c in with_sets.cells] == [c.id.split("_")[0] for c in plain.cells]
    assert not {c.id for c in with_sets.cells} & {c.id for c in plain.cells}  # another configuration: other ids
    # the same sets written under base: the same cells (one configuration, one id)
    under_base = SPEC.replace("grid:", "  " + TEST_SETS.replace("\n  ", "\n    ") + "grid:")
    assert [c.id for c in expand(parse_spec(under_base, "s.yaml"), check=False).cells] == [
        c.id for c in with_sets.cells
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("dataset: synthetic\n    labels", "dataset: nosuch\n    labels"),
            r"s\.yaml:10: test_sets\.other\.dataset: unknown",
        ),
        (("labels: {Opacity", "labls: {Opacity"), r"s\.yaml:11: test_sets\.other: unknown option 'labls'.*'labels'"),
        (("  other:", "  internal:"), r"s\.yaml:8: test_sets: the test set name 'internal'"),
        (("  other:\n", "  other: 3\n  x:\n"), r"s\.yaml:9: test_sets\.other: expected a mapping"),
        ((TEST_SETS, "test_sets: [other]\n"), r"s\.yaml:8: test_sets: expected a mapping of test set name"),
    ],
)
def test_spec_test_sets_errors_name_file_line_and_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec((SPEC + TEST_SETS).replace(*change), "s.yaml")


def test_spec_test_set_given_twice_is_refused() -> None:
    twice = SPEC.replace("grid:", "  test_sets: {other: {dataset: synthetic}}\ngrid:") + TEST_SETS
    with pytest.raises(
        SpecError, match=r"s\.yaml:10: test_sets: 'other' is also defined under base\.test_sets \(s\.yaml:6\)"
    ):
        parse_spec(twice, "s.yaml")


def two_sets() -> pd.DataFrame:
    """Two arms x 3 seeds on the internal set and an external one where arm b loses 0.05 more than arm a."""
    internal = two_arms([0.80, 0.82, 0.84], [0.86, 0.87, 0.90]).assign(test_set=INTERNAL, schema_version=2)
    external = internal.assign(test_set="official")
    b = external["stages"] == "color-module"
    external.loc[:, "test_auc"] = external["test_auc"] - 0.10 - 0.05 * b
    return pd.concat([internal, external], ignore_index=True)


def test_compare_per_test_set() -> None:
    t = two_sets()
    inside = compare(t, "baseline", "color-module")  # default: internal
    outside = compare(t, "baseline", "color-module", test_set="official")
    x_in, x_out = (r.set_index("label").loc["X"] for r in (inside, outside))
    assert x_in["diff"] == pytest.approx(np.mean([0.06, 0.05, 0.06]))
    assert x_out["diff"] == pytest.approx(x_in["diff"] - 0.05) and x_out["mean_a"] == pytest.approx(0.72)
    with pytest.raises(StudyError, match=r"no test set 'nih'; its test sets: internal, official"):
        compare(t, "baseline", "color-module", test_set="nih")
    from medcolor.study.stats import study_cells

    with pytest.raises(DataError, match=r"several test sets \(internal, official\).*test_set=NAME"):
        study_cells(t)


def test_cli_compare_test_set_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_sets().assign(transfer="", transfer_name="").to_parquet(tmp_path / "results.parquet")
    assert main(["study", "compare", str(tmp_path), "baseline", "color-module", "--test-set", "official"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test set: official\n") and "| X | 3 | 72.0 ± 2.0 |" in out
    assert main(["study", "compare", str(tmp_path), "baseline", "color-module", "--test-set", "all"]) == 0
    text = capsys.readouterr().out
    order = ["test set: internal\n", "| X | 3 | 82.0 ± 2.0 |", "test set: official\n", "| X | 3 | 72.0 ± 2.0 |"]
    assert text.startswith(order[0]) and [text.index(x) for x in order] == sorted(text.index(x) for x in order)
    assert main(["study", "compare", str(tmp_path), "baseline", "color-module", "--test-set", "nih"]) == 2
    assert "no test set 'nih'; its test sets: internal, official" in capsys.readouterr().err
