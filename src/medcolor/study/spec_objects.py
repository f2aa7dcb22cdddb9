"""The parsed study spec (:func:`medcolor.study.spec.parse_spec` builds it): the grid's axes and their values, the
transfer sources, and :class:`Spec` with the ``file:line`` of every key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medcolor.study.resources import Resources


@dataclass
class Value:
    """One alternative of a grid axis: ``label`` is what the results table shows."""

    label: Any
    value: Any
    line: int | None = None


@dataclass
class Axis:
    key: str
    values: list[Value]
    line: int | None = None


@dataclass
class TransferSpec:
    name: str
    select: dict[str, list[Any]]
    use: str
    stage: int | str | None
    match: list[str] | None
    line: int | None = None


@dataclass
class Spec:
    name: str
    base: dict[str, Any]
    path: str = "<spec>"
    description: str | None = None
    stage_defaults: dict[str, Any] = field(default_factory=dict)
    grid: list[Axis] = field(default_factory=list)
    groups: dict[str, list[Axis]] = field(default_factory=dict)
    exclude: list[tuple[dict[str, list[Any]], int | None]] = field(default_factory=list)
    transfers: dict[str, TransferSpec] = field(default_factory=dict)
    executor: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    estimate: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    lines: dict[tuple, int] = field(default_factory=dict)

    def at(self, *path: Any) -> str:
        """``file:line`` of a key path (the nearest enclosing key that has a line)."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return f"{self.path}:{self.lines[p]}" if p in self.lines else self.path


__all__ = ["Axis", "Spec", "TransferSpec", "Value"]
