"""``--overwrite`` never removes anything that is not a medcolor run's own output, and a
run that stopped before its first stage does not block the corrected command."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from medcolor.cli import main
from medcolor.config import RunConfig
from medcolor.errors import ConfigError
from medcolor.training.rundir import RUN_MARKER, is_run_dir, prepare_run_dir, remove_run

#: what a run writes, listed here independently of medcolor.training.rundir.RUN_LAYOUT (the oracle)
RUN_FILES = [
    "config.yaml",
    ".medcolor-run",
    "data.json",
    "skipped_rows.csv",
    "summary.json",
    "model.safetensors",
    "model.json",
    "colorizer.safetensors",
    "colorizer.json",
    "1-color-module/lr_find.json",
    "1-color-module/lr_find.png",
    "1-color-module/history.json",
    "1-color-module/result.json",
    "1-color-module/model.safetensors",
    "1-color-module/model.json",
    "1-color-module/checkpoints/last.ckpt",
    "1-color-module/checkpoints/best.ckpt",
    "2-all/checkpoints/best-v1.ckpt",
    "2-all/.history.json.a1b2.tmp",
    "test/metrics.json",
    "test/predictions.csv",
    "val/metrics.json",
    "evaluate-valid/predictions.csv",
    "evaluate-valid/operating_points.json",
    "evaluate-valid/roc.png",
    "synthetic-data/labels.csv",
    "synthetic-data/synthetic.json",
    "synthetic-data/images/00001.png",
]
TRAIN = ["train", "--dataset", "synthetic", "--option", "n=48", "--option", "image_size=32", "--size", "32"]
TRAIN += ["--backbone", "resnet18", "--weights", "none", "--colorizer", "colorU", "--iterations", "1"]
TRAIN += ["--lr", "0.01", "--num-workers", "0", "--bootstrap", "0", "--no-progress", "--batch-size", "8"]


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def make(root: Path, names: list[str]) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        if n.endswith(RUN_MARKER):
            p.write_text('{"format": "medcolor-run"}')
        else:
            p.write_text("medcolor wrote this")


def cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_the_thesis_repro(tmp_path, capsys):
    v = tmp_path / "v"
    (v / "thesis").mkdir(parents=True)
    (v / "config.yaml").write_text("x\n")
    (v / "thesis" / "ch1.tex").write_text("y\n")
    before = snapshot(v)
    rc, err = cli(capsys, *TRAIN, "--output", str(v), "--overwrite", "--size", "0")
    assert rc == 2 and "--size (data.size)" in err  # validation first: nothing touched
    assert snapshot(v) == before
    rc, err = cli(capsys, *TRAIN, "--output", str(v), "--overwrite")  # valid options: still refused
    assert rc == 2 and "is not a medcolor run directory" in err
    assert snapshot(v) == before


@pytest.mark.parametrize(
    "extra",
    [
        ["thesis/ch1.tex"],
        ["notes.txt"],
        ["1-color-module/analysis.ipynb"],
        ["1-color-module/checkpoints/notes.txt"],
        ["test/figure.pdf"],
        ["synthetic-data/images/mine.jpg"],
        ["results/metrics.json"],
        [".git/HEAD"],
    ],
)
def test_a_run_holding_anything_else_is_refused_and_kept_whole(tmp_path, extra):
    make(tmp_path, RUN_FILES + extra)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="holds files a medcolor run does not write") as info:
        remove_run(tmp_path)
    assert extra[0].split("/")[0] in str(info.value) or extra[0] in str(info.value)
    assert snapshot(tmp_path) == before


def test_a_linked_folder_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    make(outside, ["precious.txt", "model.json"])
    run = tmp_path / "run"
    make(run, RUN_FILES)
    (run / "3-all").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="3-all"):
        remove_run(run)
    assert sorted(p.name for p in outside.iterdir()) == ["model.json", "precious.txt"]


def test_folders_that_are_not_runs_are_refused(tmp_path):
    hand_written = tmp_path / "project"
    hand_written.mkdir()
    (hand_written / "config.yaml").write_text(RunConfig().to_yaml())  # a user's config, no run beside it
    assert not is_run_dir(hand_written)
    with pytest.raises(ConfigError, match="not a medcolor run directory"):
        remove_run(hand_written)
    unmarked = tmp_path / "unmarked"  # config.yaml + every output of a run, but no marker: not medcolor's
    make(unmarked, [n for n in RUN_FILES if n != RUN_MARKER])
    (unmarked / "config.yaml").write_text(RunConfig().to_yaml())
    assert not is_run_dir(unmarked)
    before = snapshot(unmarked)
    with pytest.raises(ConfigError, match="not a medcolor run directory"):
        remove_run(unmarked)
    assert snapshot(unmarked) == before


@pytest.mark.parametrize(
    "files",
    [
        {"config.yaml": "{}\n", "data.json": '{"my": "data"}', "2024-notes/result.json": '{"my": "results"}'},
        {"config.yaml": "data: {dataset: synthetic}\n", "model.safetensors": "46.8 MB of a user's weights"},
        {"config.yaml": "{}\n", "summary.json": "{}", "1-color-module/history.json": "[]"},
    ],
)
def test_overwrite_and_its_dry_run_refuse_an_unmarked_folder_that_looks_like_a_run(tmp_path, capsys, files):
    """The issue-21 repro: a folder that looks like a run but was not marked by medcolor is never deleted,
    and `--dry-run --overwrite` says so instead of staying silent."""
    proj = tmp_path / "proj"
    for name, text in files.items():
        (proj / name).parent.mkdir(parents=True, exist_ok=True)
        (proj / name).write_text(text)
    before = snapshot(proj)
    for extra in (["--dry-run"], []):
        rc, err = cli(capsys, *TRAIN, "--output", str(proj), "--overwrite", *extra)
        assert rc == 2 and "is not a medcolor run directory" in err and str(proj) in err
        assert snapshot(proj) == before


def test_dry_run_says_what_overwrite_would_delete(tmp_path, capsys):
    out = tmp_path / "run"
    make(out, RUN_FILES)
    before = snapshot(out)
    rc, err = cli(capsys, *TRAIN, "--output", str(out), "--overwrite", "--dry-run")
    n_files = len(RUN_FILES)
    assert rc == 0 and f"overwrite: {n_files} files of the earlier run would be deleted" in err
    assert snapshot(out) == before  # a dry run deletes nothing
    (out / "mine.txt").write_text("keep")
    rc, err = cli(capsys, *TRAIN, "--output", str(out), "--overwrite", "--dry-run")
    assert rc == 2 and "mine.txt" in err and "refusing to delete anything" in err


def test_resume_of_an_empty_or_missing_folder_is_refused(tmp_path, capsys):
    for out in (tmp_path / "missing", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        for extra in (["--dry-run"], []):
            rc, err = cli(capsys, *TRAIN, "--output", str(out), "--resume", *extra)
            assert rc == 2 and "holds no run to resume" in err
    assert not (tmp_path / "missing").exists() and list((tmp_path / "empty").iterdir()) == []


_STAGE = ("lr_find.json", "lr_find.png", "history.json", "result.json", "model.safetensors", "model.json", ".*.tmp")
#: the oracle, written independently of RUN_LAYOUT: every path a run writes, one pattern per path segment
WRITTEN_BY_A_RUN = [
    *("config.yaml", ".medcolor-run", "data.json", "skipped_rows.csv", "summary.json", "model.safetensors"),
    *("model.json", "colorizer.safetensors", "colorizer.json", ".*.tmp"),
    *(f"[0-9]*-*/{n}" for n in _STAGE),
    *("[0-9]*-*/checkpoints/*.ckpt", "[0-9]*-*/checkpoints/.*.tmp"),
    *(f"{d}/{n}" for d in ("test", "val", "evaluate-*") for n in ("metrics.json", "predictions.csv", ".*.tmp")),
    *("evaluate-*/operating_points.json", "evaluate-*/*.png"),  # medcolor evaluate's operating points
    *("synthetic-data/labels.csv", "synthetic-data/synthetic.json", "synthetic-data/.*.tmp"),
    *("synthetic-data/images/*.png", "synthetic-data/images/.*.tmp"),
]
NAMES = ["a", "b.txt", "1-color-module", "checkpoints", "test", "images", "x.ckpt", "model.json", "metrics.json"]
NAMES += ["synthetic-data", "lr_find.png", ".x.tmp", "y.png"]


def written_by_a_run(rel: str) -> bool:
    parts = rel.split("/")
    for pattern in WRITTEN_BY_A_RUN:
        q = pattern.split("/")
        if len(q) == len(parts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, q, strict=True)):
            return True
    return False


def test_the_oracle_knows_every_file_of_a_run():
    assert all(written_by_a_run(n) for n in RUN_FILES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    known=st.lists(st.sampled_from(RUN_FILES), unique=True),
    extra=st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join), max_size=3),
)
def test_overwrite_removes_only_a_runs_own_files(tmp_path_factory, known, extra):
    """Random trees: a run's files plus paths made of names a run uses, often in places it never writes
    them.  Either every path is one a run writes and all are removed, or nothing is touched."""
    paths = {*known, *extra, RUN_MARKER}
    assume(not any(q.startswith(p + "/") for p in paths for q in paths))  # a name is a file or a folder
    root = tmp_path_factory.mktemp("run")
    make(root, sorted(paths))
    before = snapshot(root)
    if all(written_by_a_run(p) for p in paths):
        remove_run(root)
        assert list(root.iterdir()) == []
    else:
        with pytest.raises(ConfigError, match="holds files a medcolor run does not write"):
            remove_run(root)
        assert snapshot(root) == before


def test_a_real_run_is_overwritten_but_not_a_file_put_into_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, *TRAIN, "--output", str(out))[0] == 0
    assert (out / RUN_MARKER).is_file() and (out / "1-color-module" / "checkpoints").is_dir()
    (out / "1-color-module" / "my-notes.md").write_text("keep me")
    rc, err = cli(capsys, *TRAIN, "--output", str(out), "--overwrite", "--seed", "1")
    assert rc == 2 and "1-color-module/my-notes.md" in err
    assert (out / "1-color-module" / "my-notes.md").read_text() == "keep me"
    assert (out / "summary.json").is_file()  # the run is still whole
    (out / "1-color-module" / "my-notes.md").unlink()
    remove_run(out)  # every file the real run wrote is one RUN_LAYOUT knows
    assert list(out.iterdir()) == []


def test_a_run_that_stopped_before_its_first_stage_is_replaced(tmp_path):
    out = tmp_path / "run"
    first = RunConfig(output=str(out))
    first.model.weights = "none"
    prepare_run_dir(first)  # then, say, the data turned out to be bad
    second = RunConfig.from_dict({**first.to_dict(), "trainer": {"seed": 5}})
    second.model.weights = "none"
    directory, cfg = prepare_run_dir(second)  # a corrected command: not "another run"
    assert cfg.trainer.seed == 5 and RunConfig.from_yaml(directory / "config.yaml").trainer.seed == 5
    (out / "1-color-module").mkdir()  # once a stage started, it is another run
    third = RunConfig.from_dict({**first.to_dict(), "trainer": {"seed": 6}})
    with pytest.raises(ConfigError, match="holds another run"):
        prepare_run_dir(third)


def test_an_unstarted_run_beside_a_study_runners_files_is_replaced_and_they_stay(tmp_path):
    """A study cell killed before its first stage: its folder holds the runner's log, lock and cell record
    besides the run's config.  The next `study run` (perhaps with another medcolor default) replaces the
    run's own files and leaves the runner's (it failed with "holds files a medcolor run does not write")."""
    out = tmp_path / "cell"
    first = RunConfig(output=str(out))
    first.model.weights = "none"
    prepare_run_dir(first)
    (out / "data.json").write_text("{}")
    runner_files = {"cell.json": "{}", "log.txt": "=== cell\n", ".lock": ""}
    for name, text in runner_files.items():
        (out / name).write_text(text)
    second = RunConfig.from_dict({**first.to_dict(), "trainer": {"seed": 5}})
    second.model.weights = "none"
    directory, cfg = prepare_run_dir(second)
    assert cfg.trainer.seed == 5 and RunConfig.from_yaml(directory / "config.yaml").trainer.seed == 5
    assert not (out / "data.json").exists()  # the unstarted run's own file went
    assert {n: (out / n).read_text() for n in runner_files} == runner_files


def test_a_tilde_output_is_one_folder_in_home(tmp_path, capsys, monkeypatch):
    """`-o '~/x'`: the whole run lands in $HOME/x (it was split between ./~/x and $HOME/x)."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    rc, err = cli(capsys, *TRAIN, "--output", "~/x")
    assert rc == 0, err
    assert (home / "x" / "summary.json").is_file() and (home / "x" / RUN_MARKER).is_file()
    assert list(cwd.iterdir()) == []


def test_a_poisoned_last_checkpoint_is_refused_with_a_clear_error(tmp_path, capsys):
    """A last.ckpt holding a pickled callable is never unpickled and the error names the file."""
    import pickle

    out = tmp_path / "run"
    cfg_args = [*TRAIN, "--output", str(out)]
    assert cli(capsys, *cfg_args)[0] == 0
    ckpt = out / "1-color-module" / "checkpoints" / "last.ckpt"
    (out / "summary.json").unlink()
    for p in (out / "1-color-module").glob("result.json"):
        p.unlink()

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    ckpt.write_bytes(pickle.dumps({"state_dict": Evil()}))
    rc, err = cli(capsys, *cfg_args)
    assert rc == 2 and str(ckpt) in err and "cannot be loaded safely" in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()
