"""Dotted paths into nested config mappings, both ways: ``{"optim": {"lr": 0.1}}`` ↔ ``"optim.lr"``.

The one place the project turns a dotted key (a ``--set`` override, a study axis, an MLflow param
name) into a nested mapping and back.

Example:
    >>> tree = {"optim": {"lr": 0.1}}
    >>> set_dotted(tree, "optim.weight_decay", 5e-4); set_dotted(tree, ["dynamic", "search_space"], 2)
    >>> flatten_dotted(tree)
    {'optim.lr': 0.1, 'optim.weight_decay': 0.0005, 'dynamic.search_space': 2}
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["flatten_dotted", "set_dotted"]


def set_dotted(tree: dict[str, Any], path: str | Sequence[str], value: Any) -> None:
    """``tree["a"]["b"] = value`` for the path ``"a.b"`` (or ``["a", "b"]``, whose parts may hold dots).

    Missing parents are made, and a parent that is not a mapping is replaced by one. The value is
    copied, so later changes to either side do not reach the other.
    """
    *parents, leaf = path.split(".") if isinstance(path, str) else list(path)
    node = tree
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = copy.deepcopy(value)


def flatten_dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → one level with ``"a.b"`` keys; values (and empty mappings) are kept as they are."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_dotted(v, key + "."))
        else:
            out[key] = v
    return out
