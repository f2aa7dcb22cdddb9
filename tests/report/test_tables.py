"""Tables I-III and the Fig. 6 numbers from a synthetic results table, checked against pandas and scipy
computed here independently; Markdown, LaTeX and HTML renderings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import make_study
from scipy import stats as sps

from medcolor.report.names import field_title, strategy_name, value_text
from medcolor.report.render import latex_escape
from medcolor.report.tables import TableOptions, format_diff, format_pm, size_curves, table1, table2, table3

OPT = TableOptions(n_boot=300)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> pd.DataFrame:
    return pd.read_parquet(make_study(tmp_path_factory.mktemp("study"), None) / "results.parquet")


def per_cell(t: pd.DataFrame, label: str = "mean") -> pd.DataFrame:
    return t[t["label"] == label].set_index("cell")


def arm(t: pd.DataFrame, label: str = "mean", **where) -> pd.Series:
    """test_auc of the cells matching ``where`` (subset None = NaN), in seed order."""
    d = per_cell(t, label)
    m = np.ones(len(d), dtype=bool)
    for k, v in where.items():
        col = {"subset": "data.subset", "colorizer": "model.colorizer", "dataset": "data.dataset"}.get(k, k)
        m &= d[col].isna().to_numpy() if v is None else (d[col] == v).to_numpy()
    return d[m].sort_values("trainer.seed")["test_auc"]


def test_table1_numbers_and_marks(results: pd.DataFrame) -> None:
    t1 = table1(results, OPT)
    assert t1 is not None
    assert [h for h, _ in t1.sections] == [
        "Dataset: synthetic · Training subset: 30 images",
        "Dataset: synthetic · Training subset: 60 images",
        "Dataset: synthetic · Training subset: full",
        "Dataset: target · Training subset: full",  # the transfer target's own arms (its baselines)
    ]
    _, rows = t1.sections[0]
    assert [(r[0], r[1]) for r in rows] == [
        ("–", "Baseline"), ("PixelShuffle", "Color Module"), ("ColorU", "Color Module"),
        ("–", "Baseline All"), ("PixelShuffle", "Color Module → All"), ("ColorU", "Color Module → All"),
    ]  # fmt: skip
    # every comparison of the family, computed here: arm vs its paper baseline at the same size, paired by seed
    family = []
    for sub in (30.0, 60.0, None):
        for col in ("pixelshuffle", "colorU"):
            for stages, ref in (("color-module", "baseline"), ("color-module,all", "baseline-all")):
                b = arm(results, dataset="synthetic", subset=sub, colorizer=col, stages=stages).to_numpy()
                a = arm(results, dataset="synthetic", subset=sub, stages=ref).to_numpy()
                family.append((sub, col, stages, a, b, sps.ttest_rel(b, a).pvalue))
    p_adj = sps.false_discovery_control([f[-1] for f in family])
    data = t1.data
    for (sub, col, stages, a, b, p), q in zip(family, p_adj, strict=True):
        sub_s = "none" if sub is None else f"{sub:g}"
        row = data[(data["data.subset"] == sub_s) & (data["model.colorizer"] == col) & (data["stages"] == stages)]
        assert len(row) == 1
        row = row.iloc[0]
        assert row["mean"] == pytest.approx(b.mean()) and row["std"] == pytest.approx(b.std(ddof=1))
        assert row["diff"] == pytest.approx((b - a).mean())
        assert row["p"] == pytest.approx(p) and row["p_adj"] == pytest.approx(q)
        assert row["significant"] == (q < 0.05)
        assert row["baseline"] == ("baseline" if stages == "color-module" else "baseline-all")
    # the baselines' own rows: mean ± std, no comparison
    base = data[(data["data.subset"] == "30") & (data["stages"] == "baseline")].iloc[0]
    a = arm(results, dataset="synthetic", subset=30.0, stages="baseline").to_numpy()
    assert base["mean"] == pytest.approx(a.mean()) and np.isnan(base["p"])

    # the Markdown and LaTeX carry the same numbers, as in the paper: AUC x 100, one decimal
    sub, col, stages, a, b, _ = family[0]
    mark = " *" if p_adj[0] < 0.05 else ""
    text = f"{b.mean() * 100:.1f} ± {b.std(ddof=1) * 100:.1f}{mark}"
    md = t1.to_markdown()
    assert f"| PixelShuffle | Color Module | 3 | {text} | {(b - a).mean() * 100:+.1f} [" in md
    assert f"| – | Baseline | 3 | {a.mean() * 100:.1f} ± {a.std(ddof=1) * 100:.1f} | – | – |" in md
    assert "**Dataset: synthetic · Training subset: 30 images**" in md and "BH family: Table I, 12 tests" in md
    tex = t1.to_latex()
    tex_text = text.replace("±", r"$\pm$")
    assert f"PixelShuffle & Color Module & 3 & {tex_text} & " in tex
    assert "\\multicolumn{6}{l}{\\textit{Dataset: synthetic $\\cdot$ Training subset: 30 images}}" in tex
    assert "\\caption{Mean AUC per colorization module" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    html = t1.to_html()
    assert '<tr class="section"><th colspan="6">Dataset: synthetic · Training subset: 30 images</th></tr>' in html
    assert f'<td class="r sig">{text}</td>' in html or not mark


def test_table2_per_label(results: pd.DataFrame) -> None:
    t2 = table2(results, OPT)
    assert t2 is not None
    assert t2.columns == ["Colorization module", "Learning strategy", "n", "Opacity", "Fine texture", "Enlarged heart"]
    b = arm(results, "Enlarged heart", dataset="synthetic", subset=None, colorizer="colorU",
            stages="color-module,all").to_numpy()  # fmt: skip
    d = t2.data
    row = d[
        (d["data.subset"] == "none") & (d["model.colorizer"] == "colorU") & (d["stages"] == "color-module,all")
    ].iloc[0]
    assert row["Enlarged heart:mean"] == pytest.approx(b.mean())
    assert row["Enlarged heart:std"] == pytest.approx(b.std(ddof=1))
    # 36 comparisons (3 sizes x 4 arms x 3 labels) in one BH family
    assert t2.data.filter(like=":p_adj").notna().sum().sum() == 36
    assert "BH family: Table II, 36 tests" in t2.to_markdown()
    one_label = results[results["label"].isin(["Opacity", "mean"])]
    assert table2(one_label, OPT) is None


def test_table3_transfer(results: pd.DataFrame) -> None:
    t3 = table3(results, OPT)
    assert t3 is not None and len(t3.sections) == 1
    heading, rows = t3.sections[0]
    assert heading == ""  # one target dataset: it is in the caption
    assert "all cells: Dataset target" in t3.caption
    assert [(r[0], r[2]) for r in rows] == [
        ("–", "Baseline"), ("synthetic · Color Module → All", "Last Layer"), ("–", "Baseline All"),
    ]  # fmt: skip
    a = arm(results, dataset="target", stages="baseline").to_numpy()
    b = arm(results, dataset="target", stages="last-layer").to_numpy()
    assert (b - a).mean() == pytest.approx(0.07 / 1.2)  # 0.05 + 0.005 s^2 for s = 0, 1, 2
    p = sps.ttest_rel(b, a).pvalue
    ll = t3.data[t3.data["stages"] == "last-layer"].iloc[0]
    assert ll["p"] == pytest.approx(p) and ll["p_adj"] == pytest.approx(p)  # a family of one
    assert rows[1][5].startswith(f"{(b - a).mean() * 100:+.1f} [") and rows[1][6] == f"{p:.3f}"
    # Tables I/II hold every cell that takes nothing from another cell: the target's own arms, no transfer
    t1_target = table1(results, OPT).data
    t1_target = t1_target[t1_target["data.dataset"] == "target"]
    assert len(t1_target) > 0 and set(t1_target["stages"]) <= {"baseline", "baseline-all"}
    no_transfer = results[results["data.dataset"] == "synthetic"]
    assert table3(no_transfer, OPT) is None


def test_size_curves_for_fig6(results: pd.DataFrame) -> None:
    curves, diffs = size_curves(results, OPT)
    assert set(curves["data.dataset"]) == {"synthetic"}  # the target dataset has one size: no curve
    assert set(diffs["data.dataset"]) == {"synthetic"}
    ps = curves[(curves["arm"] == "PixelShuffle Color Module → All") & (curves["data.dataset"] == "synthetic")]
    assert sorted(ps["n_train"]) == [30, 60, 72]
    full = ps[ps["data.subset"] == "none"].iloc[0]
    b = arm(results, dataset="synthetic", subset=None, colorizer="pixelshuffle", stages="color-module,all")
    assert full["mean"] == pytest.approx(b.mean()) and full["std"] == pytest.approx(b.std(ddof=1))
    # (b): every arm against the fine-tuned baseline (the paper's Fig. 6b), paired per size
    assert set(diffs["baseline"]) == {"baseline-all"}
    d = diffs[
        (diffs["model.colorizer"] == "colorU") & (diffs["stages"] == "color-module") & (diffs["data.subset"] == "60")
    ]
    a = arm(results, dataset="synthetic", subset=60.0, stages="baseline-all").to_numpy()
    b = arm(results, dataset="synthetic", subset=60.0, colorizer="colorU", stages="color-module").to_numpy()
    assert d.iloc[0]["diff"] == pytest.approx((b - a).mean()) and d.iloc[0]["n_train"] == 60
    assert d.iloc[0]["ci_low"] <= d.iloc[0]["diff"] <= d.iloc[0]["ci_high"]
    no_sizes = results[results["data.subset"].isna()]
    assert size_curves(no_sizes.drop(columns=["data.subset"]), OPT)[0].empty


def test_fig6_legend_entries_have_no_dash_placeholder(results: pd.DataFrame, tmp_path: Path, monkeypatch) -> None:
    """The legend of Fig. 6 (a)/(b) named the ImageNet-statistics baseline "– (ImageNet mean/std) Baseline": the
    tables' "no T" placeholder; the figure names each arm in words."""
    from medcolor.report.figures import plot_size_curves

    t = results.copy()
    gray = (t["model.colorizer"] == "replicate") & (t["stages"] == "baseline")
    t.loc[gray & (t["trainer.seed"] == 0), "model.colorizer"] = "replicate-imagenet"  # a second gray input arm
    curves, diffs = size_curves(t, OPT)
    assert "Baseline (ImageNet mean/std)" in set(curves["arm"]) and "Baseline All" in set(curves["arm"])
    assert not any("–" in a for a in curves["arm"]), sorted(set(curves["arm"]))
    import matplotlib.figure

    captured: dict[str, list[str]] = {}
    real_legend = matplotlib.figure.Figure.legend

    def legend(fig, handles, labels, **kw):  # the one legend of (a) and (b)
        captured["labels"] = list(labels)
        return real_legend(fig, handles, labels, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "legend", legend)
    plot_size_curves(curves, diffs, tmp_path / "fig6.png")
    assert "Baseline (ImageNet mean/std)" in captured["labels"] and "Baseline" in captured["labels"]
    assert not any("–" in x for x in captured["labels"]), captured["labels"]


def test_formatting() -> None:
    assert strategy_name("color-module,all") == "Color Module → All" and strategy_name("baseline-all") == "Baseline All"
    assert value_text("data.subset", "0.001") == "0.1 %" and value_text("data.subset", "1000") == "1,000 images"
    assert value_text("model.colorizer", "replicate") == "–" and value_text("transfer", "none") == "–"
    assert value_text("data", "none") == "as in the spec's base" and value_text("data", "kermany") == "kermany"
    assert field_title("data") == "Data"
    assert format_pm(0.8345, 0.0051) == "83.5 ± 0.5" and format_pm(0.8, float("nan")) == "80.0"
    assert format_diff(0.05, 0.04, 0.061) == "+5.0 [+4.0, +6.1]" and format_diff(float("nan"), 0, 0) == "–"
    assert latex_escape("a_b & 10% ± Δ → <0.001 #1") == r"a\_b \& 10\% $\pm$ $\Delta$ $\rightarrow$ $<$0.001 \#1"


def test_tables_without_baselines(tmp_path: Path) -> None:
    t = pd.read_parquet(make_study(tmp_path, None, transfer=False) / "results.parquet")
    t = t[~t["stages"].isin(["baseline", "baseline-all"])]
    t1 = table1(t, OPT)
    assert t1 is not None and t1.data["p"].isna().all()
    assert "no baseline cells" in " ".join(t1.notes)
    assert all(r[4] == "–" for _, rows in t1.sections for r in rows)


def test_a_transfer_source_leaves_out_what_its_section_says() -> None:
    """Table III's "Transferred from" (and Fig. 4's rows) name the source arm without the values the section's
    title or the caption already give (they made the external study's rows eight lines long)."""
    from medcolor.report.names import field_text, transfer_text
    from medcolor.study.stats import NONE, TRANSFER_FIELD

    v = "colorU · gray · mobilenet_v2 · ../w/mnv2.pth · 4172 · color-module · folder"
    assert transfer_text(v, {"mobilenet_v2", "../w/mnv2.pth", "4172", "folder"}) == "ColorU · gray · Color Module"
    assert (
        field_text(TRANSFER_FIELD, v) == "ColorU · gray · mobilenet_v2 · ../w/mnv2.pth · 4172 · Color Module · folder"
    )
    assert field_text(TRANSFER_FIELD, NONE, {"folder"}) == "–"
    assert field_text("stages", "color-module", {"color-module"}) == "Color Module"  # only a transfer is shortened
