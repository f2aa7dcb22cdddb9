"""``docs/reproduction.md.j2`` (issue 18, item 4) rendered on a tiny real study shaped like
``configs/examples/study-kermany-external.yaml``: Kermany at 32 px, 64 training images, 2 iterations, groups
gray / colorU (E frozen) and gray-ft / colorU-ft (fine-tuned from the frozen cell) x 3 seeds, each cell tested
on its internal part and on NIH (the real study's COVID set costs 8 s a cell: left out here).  The page's
numbers are checked against the results table and the run directories (not hard-coded), with every cell
done, with a cell still missing and with one repeat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_helpers import run_kermany_nih_study

from medcolor.report.document import render_document
from medcolor.study.layout import read_plan, rebuild_table
from medcolor.study.results import read_results

pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "reproduction.md.j2"

CELLS = """\
grid:
  trainer.seed: [0, 1, 2]
cells:
  gray: {model.colorizer: replicate, stages: baseline}
  gray-ft: {model.colorizer: replicate, stages: baseline-all}
  colorU: {model.colorizer: colorU, stages: color-module}
  colorU-ft: {model.colorizer: colorU, stages: all, transfer: colorU}
transfer:
  colorU: {from: {cells: colorU}, use: model}
"""
SETS = ("internal", "nih")
GROUPS = ("gray", "colorU", "gray-ft", "colorU-ft")


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_path, mobilenet_weights) -> Path:
    out, result = run_kermany_nih_study(
        tmp_path_factory.mktemp("external-doc"),
        shared_path,
        mobilenet_weights,
        name="external-doc-tiny",
        stage_defaults="{lr: 0.02, iterations: 2, val_every: 1}",
        body=CELLS,
    )
    assert result.ok and result.count("done") == 12
    return out


@pytest.fixture(scope="module")
def partial(study: Path, tmp_path_factory) -> Path:
    """The study with colorU-ft's seed-2 cell not finished: its results row gone, the table rebuilt."""
    d = tmp_path_factory.mktemp("partial") / "study"
    shutil.copytree(study, d, ignore=shutil.ignore_patterns("image-cache", "*.ckpt", "*.safetensors"))
    plan = read_plan(d)
    cell = next(c.id for c in plan.cells if c.group == "colorU-ft" and c.values["trainer.seed"] == 2)
    (d / "cells" / cell / "row.json").unlink()
    rebuild_table(d, plan)
    return d


def _group_cells(study_dir: Path) -> dict[str, list[str]]:
    done = set(read_results(study_dir)["cell"].astype(str))
    out: dict[str, list[str]] = {}
    for c in read_plan(study_dir).cells:
        if c.id in done:
            out.setdefault(str(c.group), []).append(c.id)
    return out


def _auc(df: pd.DataFrame, cells: list[str], test_set: str) -> np.ndarray:
    rows = df[(df["test_set"] == test_set) & (df["label"] == "mean")].set_index("cell")
    return rows.loc[cells, "test_auc"].to_numpy(float)


def _pm(x: np.ndarray) -> str:
    return f"{x.mean() * 100:.1f}" + (f" ± {x.std(ddof=1) * 100:.1f}" if len(x) > 1 else "")


def _row(page: str, *cells: str) -> list[str]:
    """The table row of ``page`` whose cells start with ``cells`` (split into its cells)."""
    prefix = "| " + " | ".join(cells) + " |"
    hits = [line for line in page.splitlines() if line.startswith(prefix)]
    assert hits, f"no row {prefix!r} in the page"
    return [x.strip() for x in hits[0].strip("|").split("|")]


def _render(study_dir: Path) -> str:
    return render_document(TEMPLATE, {"external": study_dir}, n_boot=200)


def _header(page: str, start: str) -> list[str]:
    line = next(x for x in page.splitlines() if x.startswith(start))
    return [x.strip() for x in line.strip("|").split("|")]


def _check_auc_table(page: str, study_dir: Path) -> None:
    df = read_results(study_dir)
    cells = _group_cells(study_dir)
    plan = read_plan(study_dir)
    head = _header(page, "| stage | arm | n | val | internal test |")
    for g, name, stage in [
        ("gray", "gray copy (baseline)", "E frozen"),
        ("colorU", "colorU, random start", "E frozen"),
        ("gray-ft", "gray copy, E fine-tuned (baseline-all)", "E fine-tuned"),
        ("colorU-ft", "colorU → all", "E fine-tuned"),
    ]:
        row = _row(page, stage, name)
        planned = sum(c.group == g for c in plan.cells)
        if g not in cells:  # no finished cell yet
            assert row[2:] == [f"0/{planned}"] + ["n/a"] * (len(row) - 3)
            continue
        cs = cells[g]
        assert row[2] == f"{len(cs)}/{planned}"
        val = df[(df["test_set"] == "internal") & (df["label"] == "mean")].set_index("cell").loc[cs, "val_auc"]
        assert row[3] == _pm(val.to_numpy(float))
        internal = _auc(df, cs, "internal")
        assert row[4].startswith(_pm(internal) + " [")
        for ts in SETS[1:]:
            ext = _auc(df, cs, ts)
            assert row[head.index(ts)].startswith(_pm(ext) + " [")
            drop = ext - internal
            want = f"{drop.mean() * 100:+.1f}" + (f" ± {drop.std(ddof=1) * 100:.1f}" if len(drop) > 1 else "")
            assert row[head.index(f"Δ {ts}")] == want
        if len(cs) == 1:  # one run: its own bootstrap CI
            r = df[(df["cell"] == cs[0]) & (df["test_set"] == "nih") & (df["label"] == "mean")].iloc[0]
            shown = row[head.index("nih")]
            assert shown == f"{r.test_auc * 100:.1f} [{r.test_ci_low * 100:.1f}, {r.test_ci_high * 100:.1f}]"


def test_page_carries_the_tables_numbers(study: Path) -> None:
    page = _render(study)
    assert "**Progress: 12 of 12 cells finished**" in page and "Every planned cell has finished." in page
    _check_auc_table(page, study)
    df = read_results(study)
    cells = _group_cells(study)

    # the configuration to ship: the frozen arm with the higher mean validation AUC
    val = df[(df["test_set"] == "internal") & (df["label"] == "mean")].set_index("cell")["val_auc"]
    means = {g: val.loc[cells[g]].mean() for g in ("gray", "colorU")}
    best = max(means, key=lambda g: means[g])
    name = {"gray": "gray copy (baseline)", "colorU": "colorU, random start"}[best]
    ship = _row(page, "MobileNetV2", "64", "E frozen")
    assert ship[3].startswith(f"**{name}** ({means[best] * 100:.2f}, 3 seeds; n = 3")

    # operating points and calibration of gray on NIH, from the run directories
    ops = []
    for c in cells["gray"]:
        j = json.loads((study / "cells" / c / "test_sets" / "nih" / "operating_points.json").read_text())
        ops.append(j["sets"]["nih"]["labels"]["PNEUMONIA"])
    sens = np.array([o["sensitivity"]["value"] for o in ops])
    lo = min(o["sensitivity"]["ci"][0] for o in ops)
    hi = max(o["sensitivity"]["ci"][1] for o in ops)
    brier = np.array([o["brier"] for o in ops])
    section = page.split("### nih\n")[1].split("\n### ")[0]
    row = _row(section, "MobileNetV2", "64", "E frozen", "gray copy (baseline)")
    assert row[4] == "3"
    assert row[6] == f"{_pm(sens)} [{lo * 100:.1f}, {hi * 100:.1f}]"
    assert row[8] == f"{brier.mean():.3f} ± {brier.std(ddof=1):.3f}"

    # how weak each set is: the counts the runs were tested on
    o = ops[0]
    assert _row(page, "nih")[1:4] == [f"{o['n']:,}", f"{o['tp'] + o['fn']:,}", f"{o['tn'] + o['fp']:,}"]

    # the plateau: best vs last validation step of the history
    best_v, last_v = [], []
    for c in cells["colorU"]:
        summ = json.loads((study / "cells" / c / "summary.json").read_text())
        hist = json.loads((Path(summ["stages"][-1]["directory"]) / "history.json").read_text())
        best_v.append(max(h["val_mean_auc"] for h in hist))
        last_v.append(hist[-1]["val_mean_auc"])
    row = _row(
        page.split("## Did training reach a plateau?")[1], "MobileNetV2", "64", "E frozen", "colorU, random start"
    )
    assert row[5].startswith(_pm(np.array(best_v)) + " (") and row[6].startswith(_pm(np.array(last_v)) + " (")

    # colour vs gray with 3 seeds: a paired test per set, the difference of the pairs
    part = page.split("## Colour arm vs gray")[1]
    cmp = _row(part, "MobileNetV2", "64", "E frozen", "colorU, random start − gray copy (baseline)")
    head = _header(part, "| E | training images | stage | colour arm |")
    for ts in SETS:
        d = _auc(df, cells["colorU"], ts) - _auc(df, cells["gray"], ts)  # plan order: seeds 0, 1, 2 in both
        shown = cmp[head.index(ts)]
        assert shown.startswith(f"{d.mean() * 100:+.1f} [") and ", p = " in shown and shown.endswith("(n = 3)")
        # the claims table: the same paired test, read as a verdict
        claim = _row(
            page.split("## Which of the paper's claims survive")[1], "(a) colorU − gray, E frozen", "MobileNetV2", "64"
        )
        said = claim[_header(page, "| claim | E | training images |").index(ts)]
        verdicts = ("**holds**: ", "**reversed**: ", "not reproduced: ")
        assert said.startswith(verdicts) and f"{d.mean() * 100:+.1f} [" in said and ", BH p = " in said, said


def test_page_with_a_missing_cell(partial: Path) -> None:
    page = _render(partial)
    assert "**Progress: 11 of 12 cells finished**" in page
    missing = next(c.id for c in read_plan(partial).cells if c.group == "colorU-ft" and c.values["trainer.seed"] == 2)
    assert "1 cell is still missing" in page and f"* colorU-ft: {missing}" in page
    _check_auc_table(page, partial)
    assert _row(page, "E fine-tuned", "colorU → all")[2] == "2/3"
    # two pairs: the mean difference without an interval or a test
    part = page.split("## Colour arm vs gray")[1]
    cmp, head = (
        _row(part, "MobileNetV2", "64", "E fine-tuned"),
        _header(part, "| E | training images | stage | colour arm |"),
    )
    df, cells = read_results(partial), _group_cells(partial)
    for ts in SETS:
        d = _auc(df, cells["colorU-ft"], ts) - _auc(df, cells["gray-ft"], ts)[:2]  # seeds 0 and 1
        assert cmp[head.index(ts)] == f"{d.mean() * 100:+.1f} (n = 2: no test)"


def test_page_with_one_repeat(partial: Path, tmp_path: Path) -> None:
    """Seed 0 only (what the study has first) and colorU-ft not started: n = 1 everywhere, each run's own CI,
    no test; the arm without a finished cell reads n/a and cannot be chosen."""
    d = tmp_path / "study"
    shutil.copytree(partial, d)
    plan = read_plan(d)
    for c in plan.cells:
        if (c.values["trainer.seed"] != 0 or c.group == "colorU-ft") and (d / "cells" / c.id / "row.json").is_file():
            (d / "cells" / c.id / "row.json").unlink()
    rebuild_table(d, plan)
    page = _render(d)
    assert "**Progress: 3 of 12 cells finished**" in page and "9 cells are still missing" in page
    _check_auc_table(page, d)
    cmp = _row(page.split("## Colour arm vs gray")[1], "MobileNetV2", "64", "E frozen")
    assert all(x.endswith("(n = 1: no test)") for x in cmp[4:]), cmp
    claims = page.split("## Which of the paper's claims survive")[1]
    assert all(x.endswith("(n = 1: no test yet)") for x in _row(claims, "(a) colorU − gray, E frozen")[3:])
    assert all(x == "no pair yet" for x in _row(claims, "(b) colorU → all − baseline-all")[3:])
    assert all(
        x == "no pair yet"
        for x in _row(page.split("## Colour arm vs gray")[1], "MobileNetV2", "64", "E fine-tuned")[4:]
    )
    assert "Arms with no finished cell cannot be chosen yet: colorU-ft." in page
    ship = _row(page, "MobileNetV2", "64", "E fine-tuned")
    assert ship[3].startswith("**gray copy, E fine-tuned (baseline-all)**") and ship[4] == "–"
