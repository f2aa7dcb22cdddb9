"""Numbers of comparisons as text: mean ± std, a difference with its CI, a p-value (shared with the
report's tables), and a :func:`~medcolor.study.stats.compare` result as a table for the terminal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcolor.study.stats.comparison import STAT_COLUMNS
from medcolor.study.stats.significance import CI_METHODS


def format_pm(mean: float, std: float, scale: float = 100.0, decimals: int = 1) -> str:
    """``"72.0 ± 2.0"`` (×``scale``); ``"n/a"`` without a mean, no ``±`` without a std."""
    if not np.isfinite(mean):
        return "n/a"
    s = f"{mean * scale:.{decimals}f}"
    return s if not np.isfinite(std) else f"{s} ± {std * scale:.{decimals}f}"


def format_diff(diff: float, lo: float, hi: float, scale: float = 100.0, decimals: int = 1) -> str:
    """``"+4.7 [+1.0, +8.3]"`` (×``scale``); ``"–"`` without a difference, no CI without one."""
    if not np.isfinite(diff):
        return "–"
    s = f"{diff * scale:+.{decimals}f}"
    if np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo * scale:+.{decimals}f}, {hi * scale:+.{decimals}f}]"
    return s


def format_p(p: float | None) -> str:
    """``"0.013"``, ``"<0.001"``, or ``"–"`` without a p-value."""
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _caption(result: pd.DataFrame, scale: float, alpha: float) -> str:
    """What the numbers of a comparison are: metric, interval kind(s), test and the BH family(ies)."""
    test = "paired t-test" if result["test"].iloc[0] == "t" else "Wilcoxon signed-rank test (Pratt: zeros kept)"
    scaled = f" ×{scale:g}" if scale != 1 else ""
    kinds = [CI_METHODS[m] for m in dict.fromkeys(result.get("ci_method", pd.Series(dtype=str))) if m]
    interval = f"[{' / '.join(kinds)}]" if kinds else "(no interval)"
    families = "; ".join(dict.fromkeys(result["family"])) if "family" in result.columns else "these rows"
    return (
        f"{result['metric'].iloc[0]}{scaled}; diff = b − a {interval}; {test}; "
        f"p (BH): Benjamini–Hochberg, family: {families}; * p (BH) < {alpha:g}"
    )


def format_comparison(result: pd.DataFrame, *, scale: float = 100.0, decimals: int = 1, alpha: float = 0.05) -> str:
    """A :func:`compare` (or :func:`compare_to_baseline`) result as a Markdown table for a terminal:
    AUC ×``scale``, ``*`` where the BH-adjusted p < ``alpha``; the arms and the test above it."""
    if result.empty:
        return "(no comparisons)"
    stat_cols = set(STAT_COLUMNS) | {"baseline"}
    group = [c for c in result.columns if c not in stat_cols]

    head = []
    if result["a"].nunique() == 1 and result["b"].nunique() == 1:
        head.append(f"a: {result['a'].iloc[0]}\nb: {result['b'].iloc[0]}")
        arms = []
    else:
        arms = ["a", "b"]
    head.append(_caption(result, scale, alpha))
    cols = [*group, *arms, "label", "n", "a", "b", "diff [CI]", "p", "p (BH)"]
    if arms:
        cols = [*group, "a", "b", "label", "n", "mean a", "mean b", "diff [CI]", "p", "p (BH)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    notes = []
    for _, r in result.iterrows():
        sig = " *" if np.isfinite(r["p_adj"]) and r["p_adj"] < alpha else ""
        vals = [str(r[g]) for g in group]
        if arms:
            vals += [str(r["a"]), str(r["b"])]
        mean_a, mean_b = (format_pm(r[f"mean_{x}"], r[f"std_{x}"], scale, decimals) for x in "ab")
        vals += [str(r["label"]), str(int(r["n"])), mean_a, mean_b]
        vals += [format_diff(r["diff"], r["ci_low"], r["ci_high"], scale, decimals), format_p(r["p"])]
        vals.append(format_p(r["p_adj"]) + sig)
        lines.append("| " + " | ".join(vals) + " |")
        if r["note"]:
            notes.append(f"{r['label']}: {r['note']}")
    return "\n".join([*head, "", *lines, *(["", *sorted(set(notes))] if notes else [])])


__all__ = [
    "format_comparison",
    "format_diff",
    "format_p",
    "format_pm",
]
