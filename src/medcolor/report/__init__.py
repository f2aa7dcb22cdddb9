"""Reports: figures (LR range test, training curves, colorized images, the paper's Figs. 4-6), the paper's
tables (I, II, III) as Markdown/LaTeX/HTML, and a static HTML report of a study (:func:`build_report`).

``from medcolor.report import plot_lr_find`` etc. keep working: the figure helpers live in
:mod:`medcolor.report.figures` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

from medcolor.report.figures import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _save,
    colorization_figure,
    colorization_grid,
    markdown_table,
    plot_history,
    plot_label_distribution,
    plot_lr_find,
    plot_size_curves,
    side_by_side,
    to_display,
)


def __getattr__(name: str) -> Any:  # build_report pulls in jinja2 and pandas: import it on first use
    if name == "build_report":
        from medcolor.report.html import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "_save",
    "build_report",
    "colorization_figure",
    "colorization_grid",
    "markdown_table",
    "plot_history",
    "plot_label_distribution",
    "plot_lr_find",
    "plot_size_curves",
    "side_by_side",
    "to_display",
]
