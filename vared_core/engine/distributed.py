"""Data parallelism over a torch process group, the way `fit` and `evaluate` see it.

A run is data-parallel when it starts inside an initialised `torch.distributed` process group (Ray Train's
`TorchTrainer` sets one up per worker; so does ``torchrun``): each rank then takes its shard of the data,
and what must cover the whole set (evaluation) is gathered. Outside a group everything here is the one-process
identity, so single-process code paths do not change. `vared_core` never imports Ray: the group is torch's.

Example:
    >>> world()  # no process group: one process
    World(rank=0, size=1)
    >>> shard_of(5, World(rank=1, size=2))
    [1, 3]
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch.distributed as dist

__all__ = ["World", "gather_objects", "shard_of", "world"]


class World(NamedTuple):
    """This process's rank and the number of processes (1 outside a process group)."""

    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and reports."""
        return self.rank == 0


def world() -> World:
    """The process group this process runs in, or ``World(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World(0, 1)


def shard_of(n: int, w: World) -> list[int]:
    """The item positions of ``n`` that rank ``w.rank`` takes: every ``w.size``-th, from its rank, so shards
    differ in length by at most one and together hold every item once."""
    return list(range(w.rank, n, w.size))


def gather_objects(obj: Any, w: World) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for one process). Objects are pickled:
    meant for evaluation records, not for tensors on the training path."""
    if w.size == 1:
        return [obj]
    parts: list[Any] = [None] * w.size
    dist.all_gather_object(parts, obj)
    return parts
