"""A table of the report (:class:`StudyTable`: sections of display strings and the numbers behind them)
and its renderings as Markdown, LaTeX (booktabs) and HTML."""

from __future__ import annotations

import html as _html
from dataclasses import dataclass, field

import pandas as pd

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "→": r"$\rightarrow$",
    "·": r"$\cdot$",
    "–": "--",
    "−": r"$-$",
    "—": "---",
    "<": r"$<$",
    ">": r"$>$",
    "×": r"$\times$",
    "α": r"$\alpha$",
}


def latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(s))


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


@dataclass
class StudyTable:
    """A table as sections of display strings, plus the numbers behind it (``data``)."""

    key: str
    title: str
    columns: list[str]
    #: (section heading or "", rows of display strings)
    sections: list[tuple[str, list[list[str]]]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: number of leading text columns (left-aligned); the others are right-aligned numbers
    text_columns: int = 2
    #: column groups over ``columns`` as (heading or "", number of columns), e.g. one per test set
    groups: list[tuple[str, int]] = field(default_factory=list)

    def _short_title(self) -> str:
        """The title without its "Table I. " (LaTeX numbers its tables itself)."""
        head, _, rest = self.title.partition(". ")
        return rest if head.startswith("Table") and rest else self.title

    def _align(self) -> list[str]:
        return ["l" if j < self.text_columns else "r" for j in range(len(self.columns))]

    def to_markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.caption:
            out += [self.caption, ""]
        sep = "|" + "|".join("---" if a == "l" else "---:" for a in self._align()) + "|"
        for heading, rows in self.sections:
            if heading:
                out += [f"**{_md_escape(heading)}**", ""]
            out.append("| " + " | ".join(_md_escape(c) for c in self.columns) + " |")
            out.append(sep)
            out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
            out.append("")
        out += [f"{n}  " for n in self.notes]
        return "\n".join(out).rstrip() + "\n"

    def to_latex(self) -> str:
        n = len(self.columns)
        caption = latex_escape(self._short_title()) + (". " + latex_escape(self.caption) if self.caption else "")
        out = [
            "% " + self.title + " (made by medcolor; needs \\usepackage{booktabs})",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{caption}}}",
            f"\\label{{tab:{self.key}}}",
            "\\begin{tabular}{" + "".join(self._align()) + "}",
            "\\toprule",
            " & ".join(latex_escape(c) for c in self.columns) + " \\\\",
        ]
        if self.groups:  # a row of group headings above the column titles, each underlined
            heads, rules, col = [], [], 1
            for g, k in self.groups:
                heads.append(f"\\multicolumn{{{k}}}{{c}}{{{latex_escape(g)}}}")
                if g:
                    rules.append(f"\\cmidrule(lr){{{col}-{col + k - 1}}}")
                col += k
            out[-1:-1] = [" & ".join(heads) + " \\\\", " ".join(rules)]
        out.append("\\midrule")
        for i, (heading, rows) in enumerate(self.sections):
            if heading:
                if i:
                    out.append("\\midrule")
                out.append(f"\\multicolumn{{{n}}}{{l}}{{\\textit{{{latex_escape(heading)}}}}} \\\\")
            out += [" & ".join(latex_escape(c) for c in r) + " \\\\" for r in rows]
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        if self.notes:
            out.append("\\par\\smallskip\\footnotesize " + " ".join(latex_escape(x) for x in self.notes))
        out.append("\\end{table}")
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        e = _html.escape
        align = self._align()
        out = [f'<table class="study" id="{e(self.key)}">', "<thead>"]
        if self.groups:
            out.append('<tr class="groups">')
            out += [f'<th colspan="{n}" class="group">{e(g)}</th>' for g, n in self.groups]
            out.append("</tr>")
        out.append("<tr>")
        out += [f'<th class="{a}">{e(c)}</th>' for c, a in zip(self.columns, align, strict=True)]
        out.append("</tr></thead><tbody>")
        for heading, rows in self.sections:
            if heading:
                out.append(f'<tr class="section"><th colspan="{len(self.columns)}">{e(heading)}</th></tr>')
            for r in rows:
                tds = []
                for c, a in zip(r, align, strict=True):
                    cls = a + (" sig" if c.endswith("*") else "")
                    tds.append(f'<td class="{cls}">{e(c)}</td>')
                out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table>")
        return "\n".join(out)


__all__ = ["StudyTable", "latex_escape"]
