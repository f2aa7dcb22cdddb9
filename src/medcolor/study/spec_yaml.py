"""The study spec file as YAML with a line for every key, so that errors name the file, line and key."""

from __future__ import annotations

from typing import Any

import yaml

from medcolor.errors import ConfigError
from medcolor.yamlio import compose_yaml


class SpecError(ConfigError):
    """A study spec is invalid; the message names the file, line and key."""


def _walk_marks(node: yaml.Node, path: tuple, out: dict[tuple, int], where: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            line = k.start_mark.line + 1
            if key in seen and key != "<<":
                raise SpecError(f"{where}:{line}: key {key!r} appears twice (first on line {seen[key]})")
            seen[key] = line
            out.setdefault((*path, key), line)
            _walk_marks(v, (*path, key), out, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.setdefault((*path, i), v.start_mark.line + 1)
            _walk_marks(v, (*path, i), out, where)


def read_spec_yaml(text: str, where: str) -> tuple[dict[str, Any], dict[tuple, int]]:
    """The spec as a dict plus the line of every key path (``("grid", "trainer.seed")`` -> 12).  Read with
    alias expansion bounded (:mod:`medcolor.yamlio`): a spec of nested aliases is refused, not expanded."""
    try:
        data, node = compose_yaml(text, where)
    except ConfigError as exc:
        raise SpecError(str(exc)) from None
    if data is None or node is None:
        raise SpecError(f"{where}: the study spec is empty")
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a study spec is a mapping (name:, base:, grid:...), not {type(data).__name__}")
    lines: dict[tuple, int] = {}
    _walk_marks(node, (), lines, where)
    return data, lines


__all__ = ["SpecError", "read_spec_yaml"]
