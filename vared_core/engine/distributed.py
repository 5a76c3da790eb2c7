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

import os
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["World", "all_ranks_max", "all_ranks_sum", "device_for", "gather_objects", "rank_seed", "shard_of", "world"]


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


def device_for(name: str, w: World) -> torch.device:
    """The device of ``name``; ``"auto"`` and a bare ``"cuda"`` take, in a process group, this process's GPU
    (``LOCAL_RANK``, which torchrun and Ray Train set, over the visible GPUs)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} was asked for but CUDA is not available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name in ("auto", "cuda"):
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count() if w.size > 1 else None
        return torch.device("cuda", index)
    return torch.device(name)


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """The global RNG seed of ``rank`` in ``epoch`` of a data-parallel run: random draws that differ per clip
    (the policy warm-up, dropout) differ per rank, reproducibly."""
    return int(np.random.SeedSequence([seed, epoch, rank, 0xD15C]).generate_state(1)[0])


def all_ranks_sum(values: torch.Tensor, w: World) -> torch.Tensor:
    """``values`` summed over every rank (a copy; ``values`` itself for one process)."""
    return _all_ranks(values, w, dist.ReduceOp.SUM)


def all_ranks_max(values: torch.Tensor, w: World) -> torch.Tensor:
    """The greatest of every rank's ``values``, elementwise (a copy; ``values`` itself for one process)."""
    return _all_ranks(values, w, dist.ReduceOp.MAX)


def _all_ranks(values: torch.Tensor, w: World, op: Any) -> torch.Tensor:
    """``values`` reduced over every rank, returned on ``values``' device. A group started with NCCL alone
    (``init_process_group("nccl")``, Ray Train's ``TorchConfig(backend="nccl")``) reduces CUDA tensors only,
    so CPU values (epoch sums, timings) travel through this process's GPU."""
    if w.size == 1:
        return values
    on_gpu_only = values.device.type == "cpu" and dist.get_backend() == dist.Backend.NCCL
    out = values.to(torch.device("cuda", torch.cuda.current_device())) if on_gpu_only else values.clone()
    dist.all_reduce(out, op=op)
    return out.to(values.device)
