"""Reports: the paper's tables (I, II, III) as Markdown/LaTeX/HTML, its figures (training curves, Figs.
4-6) and a static HTML report of a study (:func:`build_report`).  The pictures other layers draw too (the
LR range test, T's output as an image) are in :mod:`medcolor.display`.
"""

from __future__ import annotations

from typing import Any

from medcolor.report.figures import (
    colorization_grid,
    markdown_table,
    plot_history,
    plot_label_distribution,
    plot_size_curves,
)


def __getattr__(name: str) -> Any:  # build_report pulls in jinja2 and pandas: import it on first use
    if name == "build_report":
        from medcolor.report.html import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "build_report",
    "colorization_grid",
    "markdown_table",
    "plot_history",
    "plot_label_distribution",
    "plot_size_curves",
]
