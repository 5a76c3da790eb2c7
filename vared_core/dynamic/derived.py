"""Tensors computed from a layer's parameters once and reused until one of those parameters changes."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch
from torch import nn

__all__ = ["batchnorm_sources", "derived", "parameter"]

T = TypeVar("T")


def derived(cache: dict, key: Hashable, sources: Sequence[torch.Tensor | None], make: Callable[[], T]) -> T:
    """``make()``, stored in ``cache[key]`` and returned again while no tensor it is made from has changed.

    ``sources`` are told changed by a new storage (``.data =``, a replaced buffer) or an in-place write (an
    optimizer step, ``add_``, ``load_state_dict``'s copy), from each tensor's data pointer and version counter, so
    a cache hit costs no look at the tensors' contents (nor a device sync); the entry holds them, so their memory
    cannot be handed to a later tensor that would then look unchanged. A BatchNorm's sources are
    `batchnorm_sources`. Call it under ``no_grad``: the stored value must not carry autograd history.
    """
    alive = [t for t in sources if t is not None]
    stamp = tuple((t.data_ptr(), t._version) for t in alive)
    entry = cache.get(key)
    if entry is None or entry[0] != stamp:
        entry = cache[key] = (stamp, make(), [t.detach() for t in alive])
    return entry[1]


def batchnorm_sources(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor | None, ...]:
    """What an eval-mode BatchNorm's output is made from, as `derived` sources.

    A training forward rewrites ``running_mean`` and ``running_var`` inside the native kernel without moving
    their version counters, but advances ``num_batches_tracked`` with an in-place add (``nn.BatchNorm*`` and the
    engine's SyncBatchNorm alike), so that counter's version stands for the statistics it came with.
    """
    return tuple(parameter(bn, n) for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))


def parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module.<name>`` for a registered parameter or buffer, read from its registry: ``nn.Module.__getattr__``
    costs about a microsecond a read, which a dynamic layer's inference forward, reading a dozen, would notice."""
    found = module._parameters.get(name)
    return found if found is not None or name in module._parameters else module._buffers.get(name)
