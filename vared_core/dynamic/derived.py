"""Tensors computed from a layer's parameters once and reused until one of those parameters changes."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch

__all__ = ["derived"]

T = TypeVar("T")


def derived(cache: dict, key: Hashable, sources: Sequence[torch.Tensor | None], make: Callable[[], T]) -> T:
    """``make()``, stored in ``cache[key]`` and returned again while no tensor of ``sources`` has changed.

    A change is a new storage (``.data =``, `load_state_dict` into a new tensor, a replaced buffer) or an in-place
    write (an optimizer step, ``add_``), told by each tensor's data pointer and version counter. The entry holds the
    sources it was made from, so their memory cannot be handed to a later tensor that would then look unchanged.
    Call it under ``no_grad``: the stored value must not carry autograd history.
    """
    alive = [t for t in sources if t is not None]
    stamp = tuple((t.data_ptr(), t._version) for t in alive)
    entry = cache.get(key)
    if entry is None or entry[0] != stamp:
        entry = cache[key] = (stamp, make(), [t.detach() for t in alive])
    return entry[1]
