"""The study runner on tiny synthetic studies: end to end, SIGKILL at random moments, failures, locks, table."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from study_helpers import BASE, TINY, medcolor_cmd, subprocess_env, write_spec

from medcolor.cli import main
from medcolor.study.executors import LocalExecutor
from medcolor.study.plan import expand
from medcolor.study.results import SCHEMA_VERSION, StudyError, read_results
from medcolor.study.runner import CellLock, prepare_study_dir, run_cell, run_study, study_status
from medcolor.study.spec import load_spec

pytestmark = pytest.mark.slow

SCHEMA = [
    "schema_version",
    "study",
    "cell",
    "trainer.seed",
    "model.colorizer",
    "stages",
    "transfer",
    "transfer_name",
    "test_set",
    "label",
    "val_auc",
    "test_auc",
    "test_ci_low",
    "test_ci_high",
    "n_train",
    "iterations",
    "wall_s",
    "run_dir",
    "git_commit",
    "medcolor_version",
    "torch_version",
    "device",
    "precision",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_spec):
    """The tiny study run once, uninterrupted, by the local executor (cells one after the other)."""
    out = tmp_path_factory.mktemp("study") / "reference"
    result = run_study(tiny_spec, out, executor=LocalExecutor(workers=0, threads=1))
    return out, result


def test_local_executor_runs_the_study_end_to_end(reference, tiny_spec, capsys):
    out, result = reference
    assert result.ok and result.count("done") == 7
    df = read_results(out)
    assert list(df.columns) == SCHEMA
    assert len(df) == 7 * 4  # 3 labels + "mean" per cell (its own test split only: "internal")
    assert (df["test_set"] == "internal").all()
    assert (df["schema_version"] == SCHEMA_VERSION).all() and (df["study"] == "tiny").all()
    assert df.groupby("cell")["label"].apply(list).map(lambda x: x[-1] == "mean" and len(x) == 4).all()
    assert sorted(df.drop_duplicates("cell")["stages"]) == ["baseline"] * 3 + ["color-module"] * 3 + ["last-layer"]
    assert str(df["trainer.seed"].dtype) == "int64" and df["n_train"].eq(72).all() and df["iterations"].eq(4).all()
    moved = df[df["stages"] == "last-layer"]
    source = df[(df["stages"] == "color-module") & (df["trainer.seed"] == 0)]["cell"].iloc[0]
    assert (moved["transfer"] == source).all() and (moved["transfer_name"] == "T").all()
    assert (df.loc[df["stages"] != "last-layer", "transfer"] == "").all()
    cfg = yaml.safe_load((out / moved["run_dir"].iloc[0] / "config.yaml").read_text())
    assert cfg["model"]["colorizer_from"] == str(out.resolve() / "cells" / source / "colorizer.safetensors")
    for _, r in df.iterrows():
        assert 0 <= r.val_auc <= 1 and r.test_ci_low <= r.test_auc <= r.test_ci_high
        assert (out / r.run_dir / "summary.json").is_file() and r.wall_s > 0 and r.torch_version
    # rows agree with the run directories
    m = json.loads((out / df["run_dir"].iloc[3] / "test" / "metrics.json").read_text())
    assert df["test_auc"].iloc[3] == m["mean_auc"] and df["test_ci_low"].iloc[3] == m["ci95"]["mean_auc"][0]
    # a second run has nothing to do and leaves the table as it was
    again = run_study(tiny_spec, out, executor=LocalExecutor(workers=0, threads=1))
    assert again.ran == {} and again.ok
    pd.testing.assert_frame_equal(read_results(out), df)
    assert main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "7 cells — 7 done" in text and text.count("  done ") == 7
    assert main(["study", "run", str(tiny_spec), "-o", str(out), "--dry-run"]) == 0  # the plan with each state
    text = capsys.readouterr().out
    assert text.count("  done") == 7 and "total: 7 cells in 2 dependency level(s), 28 training iterations" in text


def test_sigkill_at_random_moments_then_rerun_gives_the_same_table(reference, tiny_spec, tmp_path):
    out = tmp_path / "killed"
    env = subprocess_env()
    inline = medcolor_cmd("study", "run", str(tiny_spec), "-o", str(out), "--workers", "0", "--threads", "1")
    workers = medcolor_cmd("study", "run", str(tiny_spec), "-o", str(out), "--workers", "2", "--threads", "1")
    rng = random.Random(20261129)
    interrupted = 0
    for cmd in [inline] * 3 + [workers]:  # in the cells, between them, in table writes; then with workers
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        p.stdout.readline()  # the plan is written, the cells start
        time.sleep(rng.uniform(0.0, 1.5) if cmd is inline else rng.uniform(1.0, 4.0))
        interrupted += p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
    assert interrupted >= 2
    time.sleep(1.0)
    # the worker processes died with the runner: no cell is left locked by an orphan
    assert all(CellLock.holder(f) is None for f in out.glob("cells/*/.lock"))
    done_before = sum(1 for _ in out.glob("cells/*/row.json"))
    r = subprocess.run(inline, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert done_before < 7 and f"{7 - done_before} to run" in r.stdout
    a, b = read_results(reference[0]), read_results(out)
    cols = [c for c in a.columns if c not in ("wall_s", "git_commit")]  # time; "+dirty" if code is edited meanwhile
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)  # bit-identical AUCs, no duplicate rows


FAILING = (
    "name: broken\n"
    + BASE
    + """\
cells:
  ok: {{stages: color-module}}
  bad: {{stages: color-module, model.init_from: {root}/missing-run}}
  after: {{stages: last-layer, transfer: fromBad}}
transfer:
  fromBad: {{from: {{cells: bad}}, use: model}}
"""
)


def test_a_failed_cell_is_recorded_the_rest_goes_on_and_the_exit_code_says_so(tmp_path, synthetic_root, capsys):
    spec = write_spec(tmp_path / "broken.yaml", FAILING, synthetic_root)
    out = tmp_path / "broken"
    assert main(["study", "run", str(spec), "-o", str(out), "--workers", "0", "--threads", "1"]) == 1
    text = capsys.readouterr().out
    assert "1 done, 1 failed, 1 skipped" in text
    states = {s.cell.group: s for s in study_status(out)}
    assert states["ok"].state == "done" and states["bad"].state == "failed" and states["after"].state == "skipped"
    assert re.search(rf"failed   {states['bad'].cell.id}: \w*Error: .*missing", text)
    assert f"skipped  {states['after'].cell.id}: its transfer source {states['bad'].cell.id} failed" in text
    failed = json.loads((out / "cells" / states["bad"].cell.id / "FAILED.json").read_text())
    assert "missing-run" in failed["error"] and "Traceback" in failed["traceback"]
    assert "missing-run" in (out / "cells" / states["bad"].cell.id / "log.txt").read_text()
    df = read_results(out)
    assert set(df["cell"]) == {states["ok"].cell.id}
    assert main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 cells — 1 done, 1 failed, 1 skipped" in text and "missing-run" in text


def test_a_study_directory_holds_one_study(reference, tmp_path, synthetic_root, capsys):
    spec = write_spec(tmp_path / "broken.yaml", FAILING, synthetic_root)
    assert main(["study", "run", str(spec), "-o", str(reference[0])]) == 2
    assert "holds the study 'tiny', not 'broken'" in capsys.readouterr().err
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "ch1.tex").write_text("x")
    assert main(["study", "run", str(spec), "-o", str(tmp_path / "thesis")]) == 2
    assert "is not empty and is not a study directory" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "thesis").iterdir()] == ["ch1.tex"]


TWO = (
    "name: two\n"
    + BASE
    + """\
grid:
  trainer.seed: [0, 1]
  stages: color-module
"""
)


def test_stale_lock_of_a_killed_process_is_not_held(tmp_path):
    path = tmp_path / ".lock"
    code = "import sys, time\nfrom medcolor.study.runner import CellLock\nassert CellLock(sys.argv[1]).acquire()\n"
    code += "print('locked', flush=True)\ntime.sleep(120)\n"
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=subprocess_env()
    )
    try:
        assert p.stdout.readline().strip() == "locked"
        assert CellLock.holder(path)["pid"] == p.pid
        assert not CellLock(path).acquire()
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    assert json.loads(path.read_text())["pid"] == p.pid  # the dead process's lock file is still there...
    assert CellLock.holder(path) is None  # ...but nobody holds it: it cannot go stale
    lock = CellLock(path)
    assert lock.acquire() and CellLock.holder(path)["pid"] == os.getpid()
    lock.release()


def test_a_locked_cell_is_left_to_its_holder(tmp_path, synthetic_root):
    spec = load_spec(write_spec(tmp_path / "two.yaml", TWO, synthetic_root))
    out = tmp_path / "two"
    plan = expand(spec)
    prepare_study_dir(spec, plan, out)
    first, second = plan.cells
    lock = CellLock(out / "cells" / first.id / ".lock")
    assert lock.acquire()  # "another runner" works on the first cell
    assert run_cell(out, first.id, capture=False) == "busy"
    results = []
    ex = LocalExecutor(workers=1, threads=1, busy_wait_s=0.2)  # the second cell runs in a worker process
    t = threading.Thread(target=lambda: results.append(run_study(spec, out, executor=ex)), daemon=True)
    t.start()
    deadline = time.time() + 300
    while not (out / "cells" / second.id / "row.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    assert (out / "cells" / second.id / "row.json").is_file()
    assert "best val mean AUC" in (out / "cells" / second.id / "log.txt").read_text()  # training's logging
    assert not (out / "cells" / first.id / "config.yaml").exists() and t.is_alive()  # waits, does not touch it
    assert [s.state for s in study_status(out, plan)] == ["running", "done"]
    lock.release()
    t.join(300)
    assert results and results[0].ok and results[0].count("done") == 2


# ----------------------------------------------------------------------------- the table's schema
def test_tables_of_other_schema_versions_are_refused_with_the_reason(reference, tmp_path, monkeypatch):
    df = read_results(reference[0])
    newer, older, foreign = tmp_path / "newer.parquet", tmp_path / "older.parquet", tmp_path / "foreign.parquet"
    df.assign(schema_version=SCHEMA_VERSION + 1).to_parquet(newer)
    df.assign(schema_version=0).to_parquet(older)
    df.drop(columns=["schema_version"]).to_parquet(foreign)
    with pytest.raises(StudyError, match=f"newer than the version {SCHEMA_VERSION} this medcolor reads: upgrade"):
        read_results(newer)
    with pytest.raises(StudyError, match=r"has no migration from it.*re-run `medcolor study run"):
        read_results(older)
    with pytest.raises(StudyError, match="not a medcolor study results table"):
        read_results(foreign)
    from medcolor.study import results

    monkeypatch.setitem(results.MIGRATIONS, 0, lambda t: t.drop(columns="test_set").assign(schema_version=1))
    assert read_results(older).equals(df)  # 0 -> 1 -> 2 (test_set "internal") -> 3 (device, precision kept)
    with pytest.raises(StudyError, match="no results table"):
        read_results(tmp_path)


def test_compare_and_report_of_a_study_directory(reference, tmp_path, capsys):
    # a bare "color-module" would be ambiguous: it also describes the transfer source of the moved cell
    assert main(["study", "compare", str(reference[0]), "baseline", "stages=color-module"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(
        "a: stages=baseline & model.colorizer=replicate\nb: stages=color-module & model.colorizer=colorU"
    )
    assert "paired t-test" in text and "| mean | 3 | " in text  # three seeds paired
    assert main(["study", "compare", str(reference[0]), "baseline", "stages=color-module", "--metric", "val_auc"]) == 0
    assert "val_auc ×100;" in capsys.readouterr().out
    assert main(["study", "compare", str(reference[0]), "baseline", "all"]) == 2
    assert "no grid field has the value 'all'" in capsys.readouterr().err
    assert main(["study", "report", str(reference[0]), "-o", str(tmp_path / "report")]) == 0
    assert f"report: {tmp_path / 'report' / 'index.html'}" in capsys.readouterr().out
    assert "Table III." in (tmp_path / "report" / "index.html").read_text()


def test_run_needs_an_output_and_sane_options(tiny_spec, capsys):
    assert main(["study", "run", str(tiny_spec)]) == 2
    assert main(["study", "run", str(tiny_spec), "-o", "x", "--workers", "-1"]) == 2
    assert main(["study", "status", "/nonexistent/study"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "-o DIR" in err[0] and "--workers" in err[1] and "not a study directory" in err[2]
    assert not Path("x").exists()


def test_a_field_added_to_the_spec_later_is_filled_in_for_the_finished_cells(reference, tmp_path, synthetic_root):
    """A spec extended with a group that varies a new field (here data.batch_size) keeps the finished cells
    (same configurations, same ids); the table gives them their own value of the new field (the base's 8),
    not an empty one (the rows they wrote when they finished have no such column)."""
    from medcolor.study.results import build_table

    out, _ = reference
    extended = TINY.replace(
        "transfer:\n", "  smaller: {{stages: baseline, model.colorizer: replicate, data.batch_size: 4}}\ntransfer:\n"
    )
    plan = expand(load_spec(write_spec(tmp_path / "tiny.yaml", extended, synthetic_root)))
    assert "data.batch_size" in plan.columns
    old = [c for c in plan.cells if (out / "cells" / c.id / "row.json").is_file()]
    assert len(old) == 7 and {c.values.get("data.batch_size") for c in old} == {8}
    table = build_table(out, plan)
    assert set(table["cell"]) == {c.id for c in old}
    assert (table["data.batch_size"] == 8).all()


def test_a_partial_cell_of_another_configuration_says_to_delete_it(tmp_path, synthetic_root, capsys):
    """A cell folder holding a partly trained run whose config differs (an older medcolor's defaults, an
    edited spec) fails with the study's advice (delete the cell folder), not train's --resume/--overwrite;
    after deleting it the cell runs."""
    import shutil

    from medcolor.study.plan import cell_run_config
    from medcolor.training.rundir import mark_run_dir

    one = "name: one\n" + BASE + "cells:\n  baseline: {{stages: baseline, model.colorizer: replicate}}\n"
    spec = write_spec(tmp_path / "one.yaml", one, synthetic_root)
    out = tmp_path / "one"
    plan = expand(load_spec(spec))
    (cell,) = plan.cells
    prepare_study_dir(load_spec(spec), plan, out)
    d = out / "cells" / cell.id
    stale = cell_run_config(cell, out)
    stale.output = str(d)
    stale.stages[0].momentum = 0.9  # as if an older default
    mark_run_dir(d, stale)
    (d / "1-baseline").mkdir()  # it got as far as its first stage
    assert main(["study", "run", str(spec), "-o", str(out), "--workers", "0", "--threads", "1"]) == 1
    text = capsys.readouterr().out
    failed = json.loads((d / "FAILED.json").read_text())["error"]
    assert failed.startswith(f"RunConflictError: cell {cell.id} holds a partly trained run of another configuration")
    assert "momentum" in failed and f"Delete {d} to run the cell from the start" in failed
    assert "--overwrite" not in failed and "RunConflictError" in text
    shutil.rmtree(d)
    assert main(["study", "run", str(spec), "-o", str(out), "--workers", "0", "--threads", "1"]) == 0
    assert read_results(out)["cell"].unique().tolist() == [cell.id]
