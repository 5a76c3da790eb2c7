"""Line numbers of YAML paths, for error messages that point into the file.

A path is a tuple of mapping keys and sequence indices, as pydantic reports locations:
``("search", "grid", "dims", 2)`` is written ``search.grid.dims[2]`` and found on the line of that item.
Keys are matched whole, so a key with dots in it (``dynamic.search_space``) is one step.

Example:
    >>> root = compose("search:\\n  grid:\\n    dims: [none,\\n      both]\\n")
    >>> line_of(root, ("search", "grid", "dims", 1)), format_path(("search", "grid", "dims", 1))
    (4, 'search.grid.dims[1]')
"""
from __future__ import annotations

from collections.abc import Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["compose", "duplicate_keys", "format_path", "line_of"]

PathPart = str | int


def compose(text: str) -> Node | None:
    """The node tree of one YAML document (``None`` for an empty one); raises ``yaml.YAMLError``."""
    return yaml.compose(text, Loader=yaml.SafeLoader)


def format_path(path: Sequence[PathPart]) -> str:
    """``("search", "grid", "dims", 2)`` → ``"search.grid.dims[2]"``; ``()`` → ``"(top level)"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _child(node: Node, part: PathPart) -> tuple[Node, Node] | None:
    """(node marking the step, node to descend into) for one step of a path, or ``None``."""
    if isinstance(node, MappingNode):
        for key, value in reversed(node.value):  # the last of duplicate keys wins, as in safe_load
            if isinstance(key, ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item
    return None


def line_of(root: Node | None, path: Sequence[PathPart]) -> int | None:
    """1-based line of ``path`` in the document, or of the deepest part of it that exists.

    A mapping entry is found on its key's line, a sequence item on its own line. ``None`` when not even
    the first step of the path is in the document (a required top-level key left out, say).
    """
    node, line = root, None
    for part in path:
        if node is None:
            break
        step = _child(node, part)
        if step is None:
            break
        mark, node = step
        line = mark.start_mark.line + 1
    return line


def duplicate_keys(root: Node | None) -> list[tuple[tuple[PathPart, ...], int]]:
    """(path, line) of every mapping key given twice in its mapping (``yaml.safe_load`` keeps the last)."""
    found: list[tuple[tuple[PathPart, ...], int]] = []
    visited: set[int] = set()  # an alias repeats a node; a recursive one would loop

    def walk(node: Node, path: tuple[PathPart, ...]) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = key.value if isinstance(key, ScalarNode) else None
                if name is not None:
                    if name in seen:
                        found.append(((*path, name), key.start_mark.line + 1))
                    seen.add(name)
                walk(value, (*path, name if name is not None else "?"))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return found
