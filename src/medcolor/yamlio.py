"""Reading YAML that someone else may have written: PyYAML's safe loader, with alias expansion bounded.

An alias (``*a``) re-uses the node of its anchor (``&a``), so a 1 KB file of nested aliases stands for
10^7 or more values: PyYAML builds it cheaply (the values are shared), but everything that walks it
afterwards (validation, deep copies, the spec's line map) takes exponential time.  :func:`load_yaml`
counts the nodes the document stands for, aliases expanded, before building it, and refuses a document of
more than :data:`MAX_NODES` with a :class:`~medcolor.errors.ConfigError` naming the file.
Every YAML file medcolor reads (run configs, study specs) goes through here.
"""

from __future__ import annotations

from typing import Any

import yaml

from medcolor.errors import ConfigError

#: the most nodes (scalars, lists, mappings) a document may stand for with its aliases expanded; the
#: largest shipped study spec has a few hundred
MAX_NODES = 100_000


def expanded_size(node: yaml.Node, limit: int = MAX_NODES) -> int:
    """The number of nodes ``node`` stands for with every alias expanded (stops counting past ``limit``)."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if id(n) in memo:
            return memo[id(n)]
        if depth > 200:
            raise ConfigError("nested deeper than 200 levels")
        total = 1
        if isinstance(n, yaml.SequenceNode):
            children: list[yaml.Node] = list(n.value)
        elif isinstance(n, yaml.MappingNode):
            children = [x for kv in n.value for x in kv]
        else:
            children = []
        for c in children:
            total += size(c, depth + 1)
            if total > limit:
                break
        memo[id(n)] = total
        return total

    return size(node, 0)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def compose_yaml(text: str, where: str, *, max_nodes: int = MAX_NODES) -> tuple[Any, yaml.Node | None]:
    """The document in ``text`` as Python values plus its node tree (None for an empty document).
    YAML errors and documents over ``max_nodes`` (aliases expanded) are ConfigErrors naming ``where``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        try:
            n = expanded_size(node, max_nodes)
        except RecursionError:
            n = max_nodes + 1
        if n > max_nodes:
            raise ConfigError(
                f"{where}: the YAML document stands for more than {max_nodes:,} values once its aliases (*name) "
                "are expanded; refusing to read it (write the values out, or use fewer nested aliases)"
            )
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: not valid YAML: {yaml_problem(exc)}") from None
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    finally:
        loader.dispose()


def load_yaml(text: str, where: str, *, max_nodes: int = MAX_NODES) -> Any:
    """:func:`yaml.safe_load` of ``text`` with alias expansion bounded (see :func:`compose_yaml`)."""
    return compose_yaml(text, where, max_nodes=max_nodes)[0]


def load_yaml_mapping(text: str, where: str, what: str = "a mapping") -> dict[str, Any]:
    """A YAML document that must be a mapping (an empty one is ``{}``)."""
    data = load_yaml(text, where)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold {what}, not {type(data).__name__}")
    return data


__all__ = ["MAX_NODES", "compose_yaml", "expanded_size", "load_yaml", "load_yaml_mapping", "yaml_problem"]
