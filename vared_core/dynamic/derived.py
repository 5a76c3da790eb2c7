"""Tensors computed from a layer's parameters once and reused until one of those parameters changes."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch

__all__ = ["derived"]

T = TypeVar("T")


def derived(cache: dict, key: Hashable, sources: Sequence[torch.Tensor | None], make: Callable[[], T], *,
            values: Sequence[torch.Tensor | None] = ()) -> T:  # fmt: skip
    """``make()``, stored in ``cache[key]`` and returned again while no tensor it is made from has changed.

    ``sources`` are told changed by a new storage (``.data =``, a replaced buffer) or an in-place write (an
    optimizer step, ``add_``, ``load_state_dict``'s copy), from each tensor's data pointer and version counter; the
    entry holds them, so their memory cannot be handed to a later tensor that would then look unchanged.
    ``values`` are compared by content: a BatchNorm's running statistics, which a training forward updates in place
    without moving their version counter (keep them small). Call it under ``no_grad``: the stored value must not
    carry autograd history.
    """
    alive = [t for t in sources if t is not None]
    stamp = tuple((t.data_ptr(), t._version) for t in alive)
    watched = [t for t in values if t is not None]
    entry = cache.get(key)
    if entry is None or entry[0] != stamp or not all(torch.equal(a, b) for a, b in zip(entry[3], watched)):
        entry = cache[key] = (stamp, make(), [t.detach() for t in alive], [t.detach().clone() for t in watched])
    return entry[1]
