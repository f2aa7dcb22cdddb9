"""The numbers the README and the closing note quote from the external study, read from its results table.

For every colour arm (colorU, lut, graystart, with their ``-ft``, ``-1k`` and ``lite-`` variants) and every seed
both it and its gray arm (the same name with the colour word replaced by ``gray``) have finished: colour minus
gray, in AUC points, on validation and on each test set; then the range of those differences per set, and the
range of each cell's drop from its internal test to the external sets.

    python experiments/external/pairs.py studies/external          # or experiments/external/study
"""

from __future__ import annotations

import argparse
import re

import pandas as pd

from medcolor.study.results import read_results

COLOURS = ("colorU", "lut", "graystart")


def cell_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell x test set: its arm (group), seed, validation and test AUC x 100 (mean over labels)."""
    t = table.copy()
    parts = t["cell"].str.extract(r"^(?P<group>.+?)_s(?P<seed>\d+)_")
    t["group"], t["seed"] = parts["group"], parts["seed"].astype(int)
    m = t.groupby(["group", "seed", "test_set"], as_index=False)[["val_auc", "test_auc"]].mean()
    m[["val_auc", "test_auc"]] *= 100
    return m


def gray_of(group: str) -> str | None:
    """The gray arm a colour arm is compared with (None for a gray arm)."""
    for colour in COLOURS:
        if re.search(rf"(^|-){colour}(-|$)", group):
            return re.sub(rf"(^|-){colour}(-|$)", r"\1gray\2", group)
    return None


def pair_differences(m: pd.DataFrame) -> pd.DataFrame:
    """Colour minus gray per arm, seed and test set (validation AUC as the set ``val``)."""
    val = m[m["test_set"] == "internal"].assign(test_set="val", test_auc=lambda d: d["val_auc"])
    wide = pd.concat([m, val]).pivot_table(index=["group", "seed"], columns="test_set", values="test_auc")
    rows = []
    for (group, seed), row in wide.iterrows():
        gray = gray_of(str(group))
        if gray is not None and (gray, seed) in wide.index:
            rows.append({"arm": group, "gray": gray, "seed": seed, **(row - wide.loc[(gray, seed)]).to_dict()})
    return pd.DataFrame(rows)


def drops(m: pd.DataFrame) -> pd.Series:
    """Per cell: internal test AUC minus each external set's."""
    wide = m.pivot_table(index=["group", "seed"], columns="test_set", values="test_auc")
    external = [c for c in wide.columns if c != "internal"]
    return pd.concat([wide["internal"] - wide[c] for c in external])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="a study directory (or its results.parquet)")
    a = ap.parse_args()
    m = cell_means(read_results(a.study))
    d = pair_differences(m)
    pd.set_option("display.width", 160)
    print(f"{m[['group', 'seed']].drop_duplicates().shape[0]} cells, {len(d)} colour-gray pairs\n")
    print(d.round(2).to_string(index=False))
    print("\ncolour minus gray, range over the pairs (AUC points):")
    for s in [c for c in d.columns if c not in ("arm", "gray", "seed")]:
        print(f"  {s:<9} {d[s].min():+.1f} .. {d[s].max():+.1f}")
    dr = drops(m)
    print(f"\ninternal minus external test AUC, over every cell and external set: {dr.min():.0f} .. {dr.max():.0f}")


if __name__ == "__main__":
    main()
