"""Every Markdown table the repository ships (README, docs/, benchmark and experiment results) is one that
GitHub renders: its header, delimiter row and every body row have the same number of cells (GFM does not
recognise a table whose delimiter row has a different count, and shows it as text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(
    p
    for pattern in ("README.md", "docs/**/*.md", "benchmarks/results/*.md", "experiments/**/*.md")
    for p in ROOT.glob(pattern)
)
DELIMITER = re.compile(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")


def cells(line: str) -> int:
    """The cells of a table row (pipes escaped as ``\\|`` do not separate cells)."""
    s = line.strip().removeprefix("|")
    s = s[:-1] if s.endswith("|") and not s.endswith("\\|") else s
    return len(re.split(r"(?<!\\)\|", s))


def table_problems(text: str) -> list[str]:
    """``line N: C cells, the header has H`` for each row of a table that does not match its header."""
    lines, out, code = text.splitlines(), [], False
    for i, line in enumerate(lines):
        code ^= line.strip().startswith("```")
        delimiter = lines[i + 1] if i + 1 < len(lines) else ""
        if code or "|" not in line or "|" not in delimiter or not DELIMITER.fullmatch(delimiter):
            continue
        head = cells(line)
        j = i + 1
        while j < len(lines) and (j == i + 1 or lines[j].strip().startswith("|")):
            if cells(lines[j]) != head:
                out.append(f"line {j + 1}: {cells(lines[j])} cells, the header (line {i + 1}) has {head}")
            j += 1
    return out


def test_the_checker_finds_a_delimiter_row_of_another_width() -> None:
    good = "| a | b |\n|---|---:|\n| 1 | x \\| y |\n"
    assert table_problems(good) == []
    assert table_problems("| a | b |\n|---|---|---|\n| 1 | 2 |\n") == ["line 2: 3 cells, the header (line 1) has 2"]
    assert table_problems("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n") == ["line 3: 3 cells, the header (line 1) has 2"]
    assert table_problems("```\n| a | b |\n|---|\n```\n") == []
    assert table_problems("| a | b |\n|--|--|--|\n") == ["line 2: 3 cells, the header (line 1) has 2"]
    assert table_problems("a | b\n---\n") == []  # a line with a pipe above a horizontal rule: no table


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_table_renders(path: Path) -> None:
    assert table_problems(path.read_text(encoding="utf-8")) == []
