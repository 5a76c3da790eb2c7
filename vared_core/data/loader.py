"""DataLoader defaults for video clips on this kind of machine (few CPU cores, maybe one GPU)."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vared_core.data.collate import collate_clips

__all__ = ["EpochShuffleSampler", "default_num_workers", "make_loader"]

_ORDER_SALT = 0x5EED0  # keeps the order's random stream apart from the items' (seed, epoch, index) ones


class EpochShuffleSampler(Sampler[int]):
    """A random order of ``range(len(dataset))`` drawn from ``(seed, epoch)`` alone.

    The epoch is ``dataset.epoch`` when the dataset has one (`VideoDataset.set_epoch`), otherwise the
    number of ``iter()`` calls so far (a DataLoader with workers makes one extra call on its first
    epoch, so only the ``dataset.epoch`` form is independent of the worker count).

    Unlike a DataLoader ``generator``, whose state the loader also consumes for worker seeds
    (differently with 0 workers, with workers, with persistent workers), this gives the same order for
    any worker setting, and a run resumed at epoch e visits epoch e's order.

    Data-parallel training (``replicas`` > 1): every rank draws the same order, drops its tail so that it
    holds a multiple of ``replicas`` items, and takes every ``replicas``-th item from position ``rank``. Then
    rank r's j-th batch of b and the other ranks' j-th batches are together the j-th batch of
    ``replicas`` × b of the one-process order: the global batches are those of one process.

    Example:
        >>> s = EpochShuffleSampler(range(5), seed=1)
        >>> first, second = list(s), list(s)
        >>> sorted(first), first != second, list(EpochShuffleSampler(range(5), seed=1)) == first
        ([0, 1, 2, 3, 4], True, True)
    """

    def __init__(self, dataset: Sized, *, seed: int = 0, rank: int = 0, replicas: int = 1) -> None:
        if seed < 0:
            raise ValueError(f"EpochShuffleSampler: seed must be ≥ 0, got {seed}")
        if not 0 <= rank < replicas:
            raise ValueError(f"EpochShuffleSampler: rank must be in [0, replicas={replicas}), got {rank}")
        self.dataset, self.seed, self._draws = dataset, seed, 0
        self.rank, self.replicas = rank, replicas

    def __len__(self) -> int:
        return len(self.dataset) // self.replicas

    def __iter__(self) -> Iterator[int]:
        epoch = getattr(self.dataset, "epoch", None)
        if not isinstance(epoch, int):
            epoch = self._draws
        self._draws += 1
        state = np.random.SeedSequence([self.seed, epoch, _ORDER_SALT]).generate_state(1, dtype=np.uint32)
        g = torch.Generator().manual_seed(int(state[0]))
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        return iter(order[: len(self) * self.replicas][self.rank :: self.replicas])


def default_num_workers() -> int:
    """Decoding workers to use: the usable CPU cores minus one for the training loop, at most 8.

    On a 1–2 core machine that is 0 or 1: a second worker only competes with the main process.

    Example:
        >>> default_num_workers()   # on a 2-core machine  # doctest: +SKIP
        1
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


def make_loader(
    dataset: Dataset[Any] | Sequence[Any],
    *,
    batch_size: int,
    train: bool,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
    drop_last: bool | None = None,
    seed: int = 0,
    collate_fn: Callable[[Sequence[Any]], Any] = collate_clips,
    rank: int = 0,
    replicas: int = 1,
) -> DataLoader[Any]:
    """A DataLoader with defaults for `VideoDataset`.

    Training shuffles with `EpochShuffleSampler` (order from ``(seed, dataset.epoch)``: the same for any
    worker count, and resumable) and drops the last incomplete batch; testing keeps list order and
    every video. Call ``dataset.set_epoch(epoch)`` before each epoch: it changes the clips, the
    augmentation and the order.

    Args:
        dataset: usually a `VideoDataset` (any map-style dataset or sequence works).
        batch_size: items per batch (videos; a test item holds all its views).
        train: training (shuffle, drop_last) or evaluation order.
        num_workers: decoding processes; default `default_num_workers`.
        pin_memory: page-locked batches for fast host→GPU copies; default: when CUDA is available.
        persistent_workers: keep workers between epochs (saves their start-up, decord's included);
            default: when there are workers.
        prefetch_factor: batches each worker prepares ahead; default torch's (2) when there are workers.
        drop_last: default ``train``.
        seed: seed of the shuffling order (and of the DataLoader's private generator, which seeds the
            workers' ``random``/``torch`` states; `VideoDataset` does not use those).
        collate_fn: batching function; default `collate_clips` (keeps test views grouped per video).
        rank, replicas: training under data parallelism: this rank's shard of the shuffled order
            (`EpochShuffleSampler`); evaluation shards its dataset itself (`vared_core.engine.evaluate`).

    Returns:
        A `torch.utils.data.DataLoader`.

    Example:
        >>> loader = make_loader(list(range(10)), batch_size=4, train=False, num_workers=0,
        ...                      collate_fn=lambda b: b)
        >>> [len(b) for b in loader]
        [4, 4, 2]
    """
    if batch_size < 1:
        raise ValueError(f"make_loader: batch_size must be ≥ 1, got {batch_size}")
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 0:
        raise ValueError(f"make_loader: num_workers must be ≥ 0, got {workers}")
    extra: dict[str, Any] = {}
    if workers > 0:
        extra["persistent_workers"] = True if persistent_workers is None else persistent_workers
        if prefetch_factor is not None:
            extra["prefetch_factor"] = prefetch_factor
    elif persistent_workers or prefetch_factor is not None:
        raise ValueError("make_loader: persistent_workers / prefetch_factor need num_workers > 0")
    return DataLoader(
        dataset,  # type: ignore[arg-type]  # any sequence works as a map-style dataset
        batch_size=batch_size,
        sampler=EpochShuffleSampler(cast(Sized, dataset), seed=seed, rank=rank, replicas=replicas) if train else None,
        drop_last=train if drop_last is None else drop_last,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )
