"""The report per test set (results schema 2: a ``test_set`` column, "internal" and external sets): Tables I/II
with a column group per set and the drop external - internal, Fig. 6 with a row of panels per set, the
operating points of each set on the cells page; and the readability of the pages (no "(absent)" navigation,
AUC ×100 in the cells table, SVG figures beside the PNGs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import EXTERNAL, cell_id, external_shift, make_study

import medcolor.report.figures as figures
from medcolor.report import build_report
from medcolor.report.tables import (
    TableOptions,
    for_test_set,
    per_test_set,
    size_curves,
    study_test_sets,
    table1,
    table2,
)

OPT = TableOptions(n_boot=200)
SETS = ["internal", *sorted(EXTERNAL)]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> pd.DataFrame:
    return pd.read_parquet(make_study(tmp_path_factory.mktemp("study"), None, external=EXTERNAL) / "results.parquet")


def test_study_test_sets_internal_first_and_old_tables_are_internal(results) -> None:
    assert study_test_sets(results) == SETS
    old = results[results["test_set"] == "internal"].drop(columns="test_set")
    assert study_test_sets(old) == ["internal"]
    assert for_test_set(old, "internal") is old
    one = for_test_set(results, "official-test")
    assert "test_set" not in one.columns and len(one) == len(old)
    # a table without the column: the tables are those of before, no groups
    t_old, t_new = table1(old, OPT), per_test_set(table1, old, OPT)
    assert t_new.columns == t_old.columns and t_new.sections == t_old.sections and t_new.groups == []


def test_table1_has_a_column_group_per_test_set_with_the_drop(results) -> None:
    t = per_test_set(table1, results, OPT)
    k = t.text_columns + 1  # colorizer, strategy, n
    assert t.groups == [("", k), ("internal", 3), ("nih-pneumonia", 2), ("official-test", 2)]
    assert sum(n for _, n in t.groups) == len(t.columns)
    assert t.columns[k:] == ["Mean AUC · internal", "Δ vs baseline [CI]", "p (BH)", "Mean AUC · nih-pneumonia",
                             "Δ nih-pneumonia − internal", "Mean AUC · official-test",
                             "Δ official-test − internal"]  # fmt: skip
    # the drop computed here from the table: mean over the condition's cells of external - internal
    mean = results[results["label"] == "mean"]
    by_set = {s: mean[mean["test_set"] == s].set_index("cell")["test_auc"] for s in SETS}
    flat = [r for _, rows in t.sections for r in rows]
    assert len(flat) == len(t.data)
    for (_, rec), row in zip(t.data.iterrows(), flat, strict=True):
        cells = rec["cells"].split(",")
        internal = by_set["internal"][cells].mean()
        assert rec["mean"] == pytest.approx(internal)
        for j, s in enumerate(sorted(EXTERNAL)):
            ext = by_set[s][cells].mean()
            drop = ext - internal
            assert rec[f"{s}:mean"] == pytest.approx(ext) and rec[f"{s}:mean:drop"] == pytest.approx(drop)
            # the fake study's shift, half as much again for the baselines: -6 / -9 and -11 / -16.5 points
            assert drop == pytest.approx(external_shift(EXTERNAL[s], rec["stages"]))
            assert row[k + 3 + 2 * j + 1] == f"{100 * drop:+.1f}".replace("-", "−")
            assert row[k + 3 + 2 * j].startswith(f"{100 * ext:.1f} ± ")
    baseline = next(r for r in flat if r[1] == "Baseline")
    assert baseline[-1] == "−9.0" and baseline[-3] == "−16.5"
    assert any("Δ = external − internal" in n for n in t.notes)
    html = t.to_html()
    assert '<th colspan="2" class="group">official-test</th>' in html and '<td class="r">−9.0</td>' in html
    tex = t.to_latex()
    assert "\\multicolumn{2}{c}{official-test}" in tex and "\\cmidrule(lr){9-10}" in tex and "$-$9.0" in tex


def test_table2_puts_each_label_of_each_set_with_its_drop(results) -> None:
    t = per_test_set(table2, results, OPT)
    labels = ["Opacity", "Fine texture", "Enlarged heart"]
    assert t.groups[2:] == [("nih-pneumonia", 3), ("official-test", 3)]
    assert t.columns[-3:] == [f"{lab} · official-test (Δ)" for lab in labels]
    first = t.sections[0][1]
    base = next(r for r in first if r[1] == "Baseline")
    color = next(r for r in first if r[1] == "Color Module")
    assert all(x.endswith("(−9.0)") for x in base[-3:]) and all(x.endswith("(−6.0)") for x in color[-3:])
    rec = t.data.iloc[0]
    drop = rec["official-test:Opacity:mean:drop"]
    assert rec["official-test:Opacity:mean"] - rec["Opacity:mean"] == pytest.approx(drop)


def test_fig6_has_a_row_of_panels_per_test_set(results, tmp_path: Path, monkeypatch) -> None:
    curves, diffs = size_curves(results, OPT)
    assert list(dict.fromkeys(curves["test_set"])) == SETS
    seen = {}

    def capture(fig, path, **kw):
        seen["axes"] = [a for a in fig.axes if a.get_visible()]
        seen["also"] = kw.get("also")
        return Path(path)

    monkeypatch.setattr(figures, "save_figure", capture)
    figures.plot_size_curves(curves, diffs, tmp_path / "f.png", also=("svg",))
    axes = seen["axes"]
    assert len(axes) == 2 * len(SETS)  # (a) curves and (b) differences, per test set
    titles = [a.get_title() for a in axes]
    for s in SETS:
        assert sum(f"test set {s}" in x for x in titles) == 1, titles  # the (a) panel names its set
    assert seen["also"] == ("svg",)
    # the curves of a set are that set's AUCs: the external means are the internal ones plus the shift
    one = curves[(curves["arm"] == "ColorU Color Module") & (curves["size"] == "full")].set_index("test_set")
    assert one.loc["official-test", "mean"] - one.loc["internal", "mean"] == pytest.approx(EXTERNAL["official-test"])


def _write_operating_points(run: Path, sets: dict[str, float]) -> None:
    """Operating points in the format training writes (medcolor.operating), from fixed vectors."""
    from medcolor.operating import operating_points

    rng = np.random.default_rng(0)
    t = (np.arange(80) % 2).astype(float)[:, None]
    p = np.clip(0.5 * t + rng.uniform(0, 0.6, size=t.shape), 0, 1)
    test = {name: (np.clip(p + shift, 0, 1), t) for name, shift in sets.items()}
    d = operating_points(p, t, test, ["Opacity"], n_resamples=50).to_dict()
    run.mkdir(parents=True, exist_ok=True)
    (run / "operating_points.json").write_text(json.dumps(d))


def test_report_per_test_set_and_readable(tmp_path: Path, real_runs) -> None:
    study = make_study(tmp_path / "study", real_runs, subsets=(30, None), transfer=False, external=EXTERNAL)
    real = study / "cells" / cell_id("synthetic", "pixelshuffle", "color-module", None, 0)
    _write_operating_points(real, {"test": 0.0})
    _write_operating_points(real / "test_sets" / "official-test", {"official-test": -0.2})
    out = tmp_path / "out"
    html = build_report(study, out, n_boot=100).read_text()
    # navigation: present sections only (Table III is absent here and still explained in its section)
    nav = html[html.index("<nav>") : html.index("</nav>")]
    assert "(absent)" not in html and "#table3" not in nav and "#table1" in nav
    assert "Not in this report: no cell transfers" in html
    # Table I's groups, Fig. 6 with its SVG linked
    assert '<th colspan="2" class="group">nih-pneumonia</th>' in html
    assert "test sets: internal, nih-pneumonia, official-test" in html
    for fig in ("fig6_sizes", "fig5_labels_synthetic"):
        assert (out / "figures" / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
        assert f'href="figures/{fig}.svg"' in html
    # Fig. 4 is a grid of pictures: PNG only (an SVG would embed the same pixels again)
    assert list((out / "figures").glob("fig4_colorized*.jpg")) and not list((out / "figures").glob("fig4*.[ps][nv]g"))
    # the cells table: mean AUC ×100 of the internal set, cell ids wrap at their separators
    assert "mean AUC ×100 [95 % CI]" in html
    t = pd.read_parquet(study / "results.parquet")
    m = t[(t["test_set"] == "internal") & (t["label"] == "mean") & (t["cell"] == real.name)].iloc[0]
    row = re.search(rf'<tr>(?:(?!<tr>).)*title="{re.escape(real.name)}"', html, re.S).group(0)
    assert f">{100 * m['test_auc']:.1f} [{100 * m['test_ci_low']:.1f}, {100 * m['test_ci_high']:.1f}]<" in row
    assert f'title="{real.name}">synthetic-<wbr>pixelshuffle-<wbr>color-<wbr>module-<wbr>full-<wbr>s0<wbr></a>' in html
    # the cells page: AUCs ×100 per test set, the operating points of each set
    cells = (out / "cells.html").read_text()
    sec = cells[cells.index(f'id="cell-{real.name}"') :].split('<section class="cell"')[0]
    assert "test AUC ×100" in sec
    for s in SETS:
        ext = t[(t["test_set"] == s) & (t["label"] == "Opacity") & (t["cell"] == real.name)].iloc[0]
        assert f'<td class="l">{s}</td><td class="l">Opacity</td><td class="r"></td>' in sec or s == "internal"
        assert f'<td class="r">{100 * ext["test_auc"]:.1f}</td>' in sec
    ops = json.loads((real / "operating_points.json").read_text())["sets"]["test"]["labels"]["Opacity"]
    assert "Operating points per test set" in sec
    head = '<td class="l">internal</td><td class="l">Opacity</td><td class="l">youden</td>'
    assert f'{head}<td class="r">{ops["threshold"]:.3g}</td>' in sec
    ext_ops = json.loads((real / "test_sets" / "official-test" / "operating_points.json").read_text())
    sens = ext_ops["sets"]["official-test"]["labels"]["Opacity"]["sensitivity"]["value"]
    assert re.search(rf'<td class="l">official-test</td><td class="l">Opacity</td>.*?>{sens:.3g}<', sec)
    # the other real run recorded why it has no operating points; it is said, not dropped
    assert "no operating points:" in cells
