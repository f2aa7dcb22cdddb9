"""Paired statistics over a results table: hand-computed numbers, scipy on fixed AUC vectors, refusals
with their messages, and properties (swapping arms, BH >= raw p, row order)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from medcolor.errors import ConfigError, DataError
from medcolor.study.stats import (
    ArmNotFoundError,
    PairingError,
    adjust_bh,
    compare,
    compare_to_baseline,
    grid_fields,
    normalize_value,
    reference_baseline,
)

FIXED = {
    "schema_version": 1,
    "study": "s",
    "test_ci_low": np.nan,
    "test_ci_high": np.nan,
    "n_train": 100,
    "iterations": 10,
    "wall_s": 1.0,
    "git_commit": "abc",
    "medcolor_version": "0.1.0",
    "torch_version": "2.5",
}


def table(cells: list[tuple[dict, dict[str, float]]], val: bool = False) -> pd.DataFrame:
    """A results table from ``[(grid values, {label: AUC})]``; the "mean" row is added."""
    rows = []
    for i, (grid, aucs) in enumerate(cells):
        cell = grid.get("_cell") or f"c{i}"
        grid = {k: v for k, v in grid.items() if k != "_cell"}
        finite = [v for v in aucs.values() if not math.isnan(v)]
        for label, v in [*aucs.items(), ("mean", float(np.mean(finite)) if finite else math.nan)]:
            rows.append(
                {**FIXED, "cell": cell, **grid, "label": label, "val_auc": v, "run_dir": f"cells/{cell}"}
                | {"test_auc": np.nan if val else v}
            )
    return pd.DataFrame(rows)


def two_arms(a: list[float], b: list[float], label: str = "X", **extra) -> pd.DataFrame:
    cells = []
    for seed, v in enumerate(a):
        cells.append(
            ({"stages": "baseline", "model.colorizer": "replicate", "trainer.seed": seed, **extra}, {label: v})
        )
    for seed, v in enumerate(b):
        cells.append(({"stages": "color-module", "model.colorizer": "pixelshuffle", "trainer.seed": seed, **extra},
                      {label: v}))  # fmt: skip
    return table(cells)


A3, B3 = [0.70, 0.72, 0.74], [0.75, 0.78, 0.77]


def test_hand_computed_t_test() -> None:
    # d = (5, 6, 3) / 100: mean 14/300, sd^2 = 21/90000, t^2 = (14/300)^2 / (7/90000) = 28;
    # with 2 degrees of freedom the two-sided p is 1 - t / sqrt(t^2 + 2) = 1 - sqrt(14/15)
    r = compare(two_arms(A3, B3), "stages=baseline", "stages=color-module")
    assert list(r["label"]) == ["X", "mean"]
    x = r.iloc[0]
    assert x["n"] == 3
    assert x["mean_a"] == pytest.approx(0.72) and x["std_a"] == pytest.approx(0.02)
    assert x["mean_b"] == pytest.approx(0.23 / 0.3) and x["std_b"] == pytest.approx(math.sqrt(21 / 90000))
    assert x["diff"] == pytest.approx(14 / 300)
    assert x["statistic"] == pytest.approx(math.sqrt(28))
    assert x["p"] == pytest.approx(1 - math.sqrt(14 / 15))
    assert x["a"] == "stages=baseline & model.colorizer=replicate"  # constant per arm: part of the arm
    assert x["b"] == "stages=color-module & model.colorizer=pixelshuffle"
    assert x["test"] == "t" and x["metric"] == "test_auc" and x["note"] == ""
    # the mean row equals the single label; BH over the two identical p-values changes nothing
    assert r.iloc[1]["p"] == pytest.approx(x["p"]) and r.iloc[1]["p_adj"] == pytest.approx(x["p"])
    # one test, counted once: the mean row of a single-label study is the label's test
    assert list(r["family"]) == ["this comparison (1 test)"] * 2
    # 3 pairs: the 95 % t-interval of the mean difference (a bootstrap would give exactly [min d, max d]);
    # t(0.975, 2 df) = 4.302652729911275
    half = 4.302652729911275 * math.sqrt(21 / 90000) / math.sqrt(3)
    assert x["ci_method"] == "t"
    assert x["ci_low"] == pytest.approx(14 / 300 - half) and x["ci_high"] == pytest.approx(14 / 300 + half)


def test_hand_computed_wilcoxon_and_bh() -> None:
    # three positive differences: W- = 0; exact two-sided p = 2 * P(W- = 0) = 2 / 2^3
    r = compare(two_arms(A3, B3), "baseline", "color-module", test="wilcoxon")
    assert r.iloc[0]["statistic"] == 0 and r.iloc[0]["p"] == pytest.approx(0.25)
    # BH by hand: sorted p 0.01, 0.03, 0.04, 0.2 -> 0.04, min(0.06, 0.0533), 0.0533, 0.2
    assert adjust_bh([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert np.isnan(adjust_bh([0.01, np.nan])[1]) and adjust_bh([0.01, np.nan])[0] == pytest.approx(0.01)


LABELS = ("Atelectasis", "Cardiomegaly", "Edema")


def fixed_vectors() -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(42)
    a = {lab: rng.uniform(0.6, 0.8, 5) for lab in LABELS}
    b = {lab: a[lab] + rng.normal(0.02, 0.03, 5) for lab in LABELS}
    cells = []
    for seed in range(5):
        cells.append(({"stages": "baseline-all", "trainer.seed": seed}, {lab: a[lab][seed] for lab in LABELS}))
        cells.append(({"stages": "color-module,all", "trainer.seed": seed}, {lab: b[lab][seed] for lab in LABELS}))
    return table(cells), a, b


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_against_scipy(test: str) -> None:
    t, a, b = fixed_vectors()
    r = compare(t, "baseline-all", "stages=color-module,all", test=test, n_boot=500, seed=3)
    a["mean"] = np.mean([a[lab] for lab in LABELS], axis=0)
    b["mean"] = np.mean([b[lab] for lab in LABELS], axis=0)
    assert list(r["label"]) == [*LABELS, "mean"]
    for _, row in r.iterrows():
        xa, xb = a[row["label"]], b[row["label"]]
        ref = sps.ttest_rel(xb, xa) if test == "t" else sps.wilcoxon(xb, xa, zero_method="pratt")
        assert row["statistic"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue)
        assert row["diff"] == pytest.approx(np.mean(xb - xa))
        assert row["std_b"] == pytest.approx(np.std(xb, ddof=1))
        d = xb - xa  # 5 pairs: below 6 the interval is the t-interval
        ci = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
        assert row["ci_method"] == "t" and [row["ci_low"], row["ci_high"]] == pytest.approx(list(ci))
    assert r["p_adj"].to_numpy() == pytest.approx(sps.false_discovery_control(r["p"].to_numpy(), method="bh"))


def subset_table(drop: str | None = None) -> pd.DataFrame:
    """2 sizes x 2 subset draws x 2 seeds x (baseline, color-module): pairs on (draw, seed) within a size."""
    cells = []
    for sub in (0.01, 0.1):
        for draw in (0, 1):
            for seed in (0, 1):
                base = 0.6 + 2 * sub + 0.01 * draw + 0.003 * seed
                for stages, off in (("baseline", 0.0), ("color-module", 0.05 + 0.01 * seed - 0.005 * draw)):
                    name = f"{stages}-{sub}-d{draw}-s{seed}"
                    if name != drop:
                        g = {"_cell": name, "stages": stages, "data.subset": sub, "data.subset_draw": draw,
                             "trainer.seed": seed, "transfer": ""}  # fmt: skip
                        cells.append((g, {"L": base + off}))
    return table(cells)


def test_by_gives_one_comparison_per_size() -> None:
    r = compare(subset_table(), "baseline", "color-module", by=["data.subset"], labels=["L"])
    assert list(r["data.subset"]) == ["0.01", "0.1"]
    assert list(r["n"]) == [4, 4]
    # offsets per (draw, seed) pair: 0.05, 0.06, 0.045, 0.055 -> mean 0.0525 at both sizes
    assert r["diff"].to_numpy() == pytest.approx([0.0525, 0.0525])
    assert r["mean_a"].to_numpy() == pytest.approx([0.62 + 0.0065, 0.8 + 0.0065])
    # a size with a single pair (e.g. the full set, one draw): its difference, no test, out of the BH family
    t = subset_table()
    keep = (t["data.subset"] != 0.1) | ((t["data.subset_draw"] == 0) & (t["trainer.seed"] == 0))
    r = compare(t[keep], "baseline", "color-module", by=["data.subset"], labels=["L"])
    assert list(r["n"]) == [4, 1] and r["diff"].to_numpy() == pytest.approx([0.0525, 0.05])
    assert np.isfinite(r["p"].iloc[0]) and np.isnan(r["p"].iloc[1]) and np.isnan(r["p_adj"].iloc[1])
    assert r["p_adj"].iloc[0] == pytest.approx(r["p"].iloc[0])  # a family of one test
    assert "1 pair(s): too few for the test" in r["note"].iloc[1] and np.isnan(r["ci_low"].iloc[1])
    # without --by the two sizes are pairing fields: 8 pairs in one comparison
    r = compare(subset_table(), "baseline", "color-module", labels=["L"])
    assert list(r["n"]) == [8] and "data.subset" not in r.columns


def test_refusals_say_what_is_missing() -> None:
    t = subset_table()
    with pytest.raises(ArmNotFoundError, match=r"never run.*stages has baseline, color-module \('all' never\)"):
        compare(t, "baseline", "stages=all")
    assert issubclass(ArmNotFoundError, ConfigError) and issubclass(PairingError, DataError)
    with pytest.raises(ArmNotFoundError, match="no grid field has the value 'colour-module'"):
        compare(t, "baseline", "colour-module")
    with pytest.raises(ConfigError, match=r"several grid fields \(data.subset_draw, trainer.seed\).*trainer.seed=0"):
        compare(t, "0", "1")
    with pytest.raises(ConfigError, match="'sed' is not a grid field"):
        compare(t, "baseline", "color-module", by=["sed"])
    with pytest.raises(ConfigError, match="both select the cells"):
        compare(t, "baseline", "stages=baseline&trainer.seed=0")
    with pytest.raises(ConfigError, match="both contrasted"):
        compare(t, "baseline", "color-module", by=["stages"])
    with pytest.raises(ConfigError, match="test must be one of t, wilcoxon"):
        compare(t, "baseline", "color-module", test="ttest")
    # one cell missing: its partner is named, with the fields a pair agrees on
    t = subset_table(drop="color-module-0.1-d1-s0")
    with pytest.raises(PairingError, match=r"1 cell\(s\) of arm a have no partner.*baseline-0.1-d1-s0"):
        compare(t, "baseline", "color-module")
    # one pair is too few for a paired test
    t = subset_table()
    with pytest.raises(PairingError, match=r"1 matched pair.*at least 2.*run more repeats"):
        compare(t, "baseline&data.subset=0.1&subset_draw=0", "color-module&data.subset=0.1&subset_draw=0", by=["seed"])


def test_refuses_other_schema_and_missing_test_split() -> None:
    t = two_arms(A3, B3)
    with pytest.raises(DataError, match=r"schema_version \[4\].*reads versions 1 to 3"):
        compare(t.assign(schema_version=4), "baseline", "color-module")
    cells = [({"stages": s, "trainer.seed": i}, {"X": 0.7 + 0.01 * i}) for s in ("baseline", "all") for i in range(3)]
    val_only = table(cells, val=True)
    with pytest.raises(DataError, match="no test split: use metric='val_auc'"):
        compare(val_only, "baseline", "all")
    assert compare(val_only, "baseline", "all", metric="val_auc")["diff"].tolist() == [0.0, 0.0]


def test_implicit_arm_fields_and_broadcast_by() -> None:
    cells = []
    for seed in range(3):
        cells.append(({"stages": "baseline", "model.colorizer": "replicate", "trainer.seed": seed}, {"X": 0.7}))
        for k, col in enumerate(("deconv", "pixelshuffle")):
            g = {"stages": "color-module", "model.colorizer": col, "trainer.seed": seed}
            cells.append((g, {"X": 0.75 + 0.01 * k + 0.001 * seed}))
    t = table(cells)
    # the colour-module arm has two colorizers: pairing is ambiguous and the message says in which field
    with pytest.raises(PairingError, match=r"never share a value of model\.colorizer"):
        compare(t, "baseline", "color-module")
    r = compare(t, "baseline", "model.colorizer=pixelshuffle&stages=color-module", labels=["X"])
    assert r.iloc[0]["diff"] == pytest.approx(0.061)
    # by colorizer: the baseline (one colorizer, "replicate", that the other arm never has) is every group's reference
    r = compare(t, "baseline", "color-module", by=["colorizer"], labels=["X"])
    assert list(r["model.colorizer"]) == ["deconv", "pixelshuffle"]
    assert r["diff"].to_numpy() == pytest.approx([0.051, 0.061]) and list(r["n"]) == [3, 3]
    assert (r["p_adj"] >= r["p"]).all()


def test_ambiguous_cells_name_the_differing_field() -> None:
    cells = [({"stages": "baseline", "model.colorizer": "replicate", "trainer.seed": s}, {"X": 0.7}) for s in range(2)]
    cells += [({"stages": st_, "model.colorizer": "pixelshuffle", "trainer.seed": s}, {"X": 0.8})
              for st_ in ("color-module", "color-module,all") for s in range(2)]  # fmt: skip
    with pytest.raises(PairingError, match=r"same trainer\.seed=0.*differ in stages: add that field to the arm"):
        compare(table(cells), "baseline", "pixelshuffle")


def transfer_table() -> pd.DataFrame:
    cells = []
    for seed in range(3):
        src = f"kermany-all-s{seed}"
        cells.append(({"_cell": src, "data.dataset": "kermany", "stages": "color-module,all", "trainer.seed": seed,
                       "transfer": ""}, {"P": 0.9}))  # fmt: skip
        for stages, tr, v in (("baseline", "", 0.66), ("last-layer", src, 0.68 + 0.01 * seed)):
            g = {"_cell": f"nih-{stages}-s{seed}", "data.dataset": "nih", "stages": stages, "trainer.seed": seed,
                 "transfer": tr}  # fmt: skip
            cells.append((g, {"P": v}))
    return table(cells)


def test_transfer_sources_pair_across_seeds() -> None:
    t = transfer_table()
    r = compare(t, "stages=baseline&data.dataset=nih", "last-layer", labels=["P"])
    assert r.iloc[0]["n"] == 3 and r.iloc[0]["diff"] == pytest.approx(0.03)
    assert "transfer=kermany · color-module,all" in r.iloc[0]["b"]
    # a source may be named by a cell id or by its description
    r2 = compare(t, "stages=baseline&data.dataset=nih", "transfer=kermany-all-s1", labels=["P"])
    assert r2.iloc[0]["diff"] == pytest.approx(0.03)


def test_nan_auc_of_one_label_leaves_that_pair_out() -> None:
    t = two_arms(A3, B3)
    t.loc[(t["cell"] == "c4") & (t["label"] == "X"), "test_auc"] = np.nan
    r = compare(t, "baseline", "color-module")
    x = r.set_index("label").loc["X"]
    assert x["n"] == 2 and "1 pair(s) without a finite test_auc" in x["note"]
    assert x["diff"] == pytest.approx(0.04)


def test_constant_differences() -> None:
    r = compare(two_arms(A3, A3), "baseline", "color-module")
    assert r.iloc[0]["p"] == 1.0 and r.iloc[0]["statistic"] == 0 and "all differences are 0" in r.iloc[0]["note"]
    r = compare(two_arms(A3, [x + 0.01 for x in A3]), "baseline", "color-module")
    assert r.iloc[0]["p"] == 0.0 and r.iloc[0]["ci_low"] == pytest.approx(0.01) == r.iloc[0]["ci_high"]


def table1_like() -> pd.DataFrame:
    cells = []
    for bb in ("resnet18", "densenet121"):
        for seed in range(3):
            for col, stages, v in (
                ("replicate", "baseline", 0.78),
                ("replicate", "baseline-all", 0.89),
                ("pixelshuffle", "color-module", 0.83),
                ("pixelshuffle", "color-module,all", 0.888),
                ("colorU", "color-module", 0.84),
            ):
                g = {"model.backbone": bb, "model.colorizer": col, "stages": stages, "trainer.seed": seed}
                cells.append((g, {"A": v + 0.002 * seed, "B": v - 0.001 * seed * seed}))
    return table(cells)


def test_compare_to_baseline_uses_the_papers_references() -> None:
    r = compare_to_baseline(table1_like(), labels=["mean"], n_boot=200)
    assert len(r) == 6
    assert set(r["model.backbone"]) == {"resnet18", "densenet121"}
    ref = dict(zip(r["stages"], r["baseline"], strict=False))
    assert ref == {"color-module": "baseline", "color-module,all": "baseline-all"}
    assert reference_baseline("last-layer") == "baseline" and reference_baseline("transfer-all") == "baseline-all"
    row = r[(r["model.backbone"] == "resnet18") & (r["model.colorizer"] == "colorU")].iloc[0]
    assert row["diff"] == pytest.approx(0.06) and row["n"] == 3
    assert r["p_adj"].to_numpy() == pytest.approx(sps.false_discovery_control(r["p"].to_numpy()))
    # a forced reference, and a missing one: NaN statistics with the reason, never an exception
    forced = compare_to_baseline(table1_like(), baseline="baseline-all", labels=["mean"])
    assert set(forced["baseline"]) == {"baseline-all"}
    t = table1_like()
    t = t[~((t["stages"] == "baseline") & (t["model.backbone"] == "densenet121"))]
    r = compare_to_baseline(t, labels=["mean"])
    cm = r[(r["model.backbone"] == "densenet121") & (r["stages"] == "color-module")]
    assert (cm["baseline"] == "baseline-all").all()  # falls back to the baseline that exists
    t = t[~((t["stages"] == "baseline-all") & (t["model.backbone"] == "densenet121"))]
    r = compare_to_baseline(t, labels=["mean"])
    miss = r[r["model.backbone"] == "densenet121"]
    assert miss["p"].isna().all() and miss["note"].str.contains("no baseline was run in this section").all()
    assert r[r["model.backbone"] == "resnet18"]["p"].notna().all()


def test_a_second_gray_baseline_is_an_arm_against_the_papers() -> None:
    """replicate-imagenet baselines are compared with the replicate (gray copy) baselines, not used as one."""
    t = table1_like()
    extra = []
    for bb in ("resnet18", "densenet121"):
        for seed in range(3):
            g = {
                "model.backbone": bb,
                "model.colorizer": "replicate-imagenet",
                "stages": "baseline",
                "trainer.seed": seed,
            }
            extra.append((g, {"A": 0.79 + 0.002 * seed, "B": 0.79 - 0.001 * seed * seed}))
    t = pd.concat([t, table(extra).assign(cell=lambda d: "x" + d["cell"].astype(str))], ignore_index=True)
    r = compare_to_baseline(t, labels=["mean"], n_boot=200)
    imn = r[r["model.colorizer"] == "replicate-imagenet"]
    assert len(imn) == 2 and (imn["baseline"] == "baseline").all()
    assert imn["diff"].to_numpy() == pytest.approx([0.01, 0.01]) and (imn["n"] == 3).all()
    cu = r[(r["model.backbone"] == "resnet18") & (r["model.colorizer"] == "colorU")].iloc[0]
    assert cu["diff"] == pytest.approx(0.06) and cu["a"].endswith("model.colorizer=replicate")
    # a section whose only frozen baseline is replicate-imagenet uses it (decided per section)
    t2 = t[
        ~((t["model.backbone"] == "densenet121") & (t["model.colorizer"] == "replicate") & (t["stages"] == "baseline"))
    ]
    r2 = compare_to_baseline(t2, labels=["mean"], n_boot=200)
    dn = r2[(r2["model.backbone"] == "densenet121") & (r2["model.colorizer"] == "colorU")].iloc[0]
    assert dn["n"] == 3 and dn["diff"] == pytest.approx(0.05) and dn["baseline"] == "baseline"
    assert dn["mean_a"] == pytest.approx(0.79 + 0.0005 / 3)  # the replicate-imagenet cells' mean


def test_normalize_value_and_grid_fields() -> None:
    assert [normalize_value(v) for v in (None, np.nan, "", 1000.0, 0.001, 3, True, " x ")] == [
        "none", "none", "none", "1000", "0.001", "3", "true", "x"
    ]  # fmt: skip
    assert grid_fields(two_arms(A3, B3)) == ["stages", "model.colorizer", "trainer.seed"]


# ------------------------------------------------------------------------------------------------ properties

aucs = st.floats(0.3, 1.0, allow_nan=False)


@st.composite
def paired_tables(draw):
    n = draw(st.integers(2, 6))
    n_labels = draw(st.integers(1, 3))
    cells = []
    for seed in range(n):
        for stages in ("baseline", "color-module"):
            cells.append(({"stages": stages, "trainer.seed": seed}, {f"L{j}": draw(aucs) for j in range(n_labels)}))
    return table(cells)


SETTINGS = settings(max_examples=25, deadline=None)


@SETTINGS
@given(paired_tables(), st.sampled_from(["t", "wilcoxon"]))
def test_swapping_arms_negates_the_difference(t: pd.DataFrame, test: str) -> None:
    ab = compare(t, "baseline", "color-module", test=test, n_boot=200)
    ba = compare(t, "color-module", "baseline", test=test, n_boot=200)
    assert ba["diff"].to_numpy() == pytest.approx(-ab["diff"].to_numpy(), abs=1e-12)
    assert ba["mean_a"].to_numpy() == pytest.approx(ab["mean_b"].to_numpy())
    assert ba["ci_low"].to_numpy() == pytest.approx(-ab["ci_high"].to_numpy(), abs=1e-9)
    assert ba["ci_high"].to_numpy() == pytest.approx(-ab["ci_low"].to_numpy(), abs=1e-9)
    np.testing.assert_allclose(ba["p"].to_numpy(), ab["p"].to_numpy(), rtol=1e-9)
    if test == "t":
        np.testing.assert_allclose(ba["statistic"].to_numpy(), -ab["statistic"].to_numpy(), rtol=1e-9)


@SETTINGS
@given(paired_tables(), st.sampled_from(["t", "wilcoxon"]))
def test_bh_adjusted_is_at_least_raw_p(t: pd.DataFrame, test: str) -> None:
    r = compare(t, "baseline", "color-module", test=test, n_boot=50)
    ok = r["p"].notna()
    assert (r.loc[ok, "p_adj"] >= r.loc[ok, "p"] - 1e-15).all() and (r.loc[ok, "p_adj"] <= 1).all()


@SETTINGS
@given(paired_tables(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(t: pd.DataFrame, rnd) -> None:
    order = list(range(len(t)))
    rnd.shuffle(order)
    shuffled = t.iloc[order].reset_index(drop=True)
    r1 = compare(t, "baseline", "color-module", n_boot=100)
    r2 = compare(shuffled, "baseline", "color-module", n_boot=100)
    r2 = r2.set_index("label").loc[r1["label"]].reset_index()
    pd.testing.assert_frame_equal(r1, r2[r1.columns])


def test_format_comparison_for_the_terminal() -> None:
    from medcolor.study.stats import format_comparison

    text = format_comparison(compare(two_arms(A3, B3), "baseline", "color-module", n_boot=100))
    lines = text.splitlines()
    assert lines[0] == "a: stages=baseline & model.colorizer=replicate"
    assert lines[1] == "b: stages=color-module & model.colorizer=pixelshuffle"
    assert "paired t-test" in lines[2] and "family: this comparison (1 test)" in lines[2] and "[t-interval]" in lines[2]
    p = 1 - math.sqrt(14 / 15)
    assert "| X | 3 | 72.0 ± 2.0 | 76.7 ± 1.5 | +4.7 [" in text and f"| {p:.3f} | {p:.3f} * |" in text
    assert format_comparison(compare(two_arms(A3, B3), "baseline", "color-module").iloc[:0]) == "(no comparisons)"


def test_from_six_pairs_the_interval_is_the_seeded_bootstrap() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0.6, 0.8, 8)
    b = a + rng.normal(0.02, 0.03, 8)
    cells = []
    for seed in range(8):
        cells.append(({"stages": "baseline", "trainer.seed": seed}, {"X": a[seed]}))
        cells.append(({"stages": "color-module", "trainer.seed": seed}, {"X": b[seed]}))
    r = compare(table(cells), "baseline", "color-module", labels=["X"], n_boot=400, seed=5)
    d = b - a
    boots = d[np.random.default_rng(5).integers(0, 8, size=(400, 8))].mean(axis=1)
    x = r.iloc[0]
    assert x["ci_method"] == "bootstrap"
    assert [x["ci_low"], x["ci_high"]] == pytest.approx(list(np.percentile(boots, [2.5, 97.5])))


def test_wilcoxon_keeps_zero_differences_so_n_is_what_the_test_used() -> None:
    a = [0.70, 0.72, 0.74, 0.71, 0.73, 0.75]
    b = [0.70, 0.71, 0.78, 0.74, 0.77, 0.80]  # the first difference is 0, the second negative
    cells = []
    for seed in range(6):
        cells.append(({"stages": "baseline", "trainer.seed": seed}, {"X": a[seed]}))
        cells.append(({"stages": "color-module", "trainer.seed": seed}, {"X": b[seed]}))
    x = compare(table(cells), "baseline", "color-module", labels=["X"], test="wilcoxon").iloc[0]
    ref = sps.wilcoxon(b, a, zero_method="pratt")
    assert x["n"] == 6 and x["p"] == pytest.approx(ref.pvalue) and x["statistic"] == pytest.approx(ref.statistic)
    dropped = sps.wilcoxon(b, a)  # scipy's default drops the zero: a test of 5 pairs
    assert (x["p"], x["statistic"]) != pytest.approx((dropped.pvalue, dropped.statistic))


def test_a_single_label_study_counts_each_test_once_in_bh() -> None:
    """The mean row of a single-label study is the same test as its label row: one member of the family."""
    cells = []
    for seed in range(3):
        cells.append(({"stages": "baseline", "model.colorizer": "replicate", "trainer.seed": seed}, {"X": 0.7}))
        for k, col in enumerate(("colorU", "deconv", "pixelshuffle")):
            v = 0.7 + 0.01 * (k + 1) + 0.004 * seed * (k - 1)
            g = {"stages": "color-module", "model.colorizer": col, "trainer.seed": seed}
            cells.append((g, {"X": v}))
    t = table(cells)
    r = compare_to_baseline(t)
    assert len(r) == 6 and set(r["label"]) == {"X", "mean"}
    xs, means = r[r["label"] == "X"], r[r["label"] == "mean"]
    tested = xs["p"].notna().sum()
    assert set(r["family"]) == {f"every arm against its baseline ({tested} tests)"}
    want = sps.false_discovery_control(xs["p"].dropna().to_numpy(), method="bh")
    assert xs["p_adj"].dropna().to_numpy() == pytest.approx(want)
    assert means["p_adj"].to_numpy() == pytest.approx(xs["p_adj"].to_numpy(), nan_ok=True)
