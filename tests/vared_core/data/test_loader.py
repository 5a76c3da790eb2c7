"""DataLoader defaults, and the runnable examples in the package's docstrings."""
from __future__ import annotations

import os

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest
import torch

from vared_core.data import (
    DenseClipSampler,
    EpochShuffleSampler,
    SyntheticInfo,
    VideoDataset,
    default_num_workers,
    make_loader,
    train_transform,
)


def test_training_and_test_defaults(synth: SyntheticInfo) -> None:
    ds = VideoDataset(synth.train_list, sampler=DenseClipSampler(4), transform=train_transform(24))
    train = make_loader(ds, batch_size=5, train=True, num_workers=0)
    assert train.drop_last and isinstance(train.sampler, EpochShuffleSampler)
    assert train.pin_memory == torch.cuda.is_available()
    batches = list(train)
    assert len(batches) == len(ds) // 5 and all(b["video"].shape == (5, 3, 4, 24, 24) for b in batches)
    order = torch.cat([b["index"] for b in batches])
    assert len(set(order.tolist())) == len(order) and order.tolist() != sorted(order.tolist())

    test = make_loader(ds, batch_size=5, train=False, num_workers=0)
    assert not test.drop_last
    assert torch.cat([b["index"] for b in test]).tolist() == list(range(len(ds)))

    workers = make_loader(ds, batch_size=5, train=True, num_workers=1)
    assert workers.persistent_workers and workers.num_workers == 1
    assert make_loader(ds, batch_size=5, train=True).num_workers == default_num_workers()


def test_order_follows_seed_and_epoch(synth: SyntheticInfo) -> None:
    ds = VideoDataset(synth.train_list, sampler=DenseClipSampler(4))
    orders = {}
    for seed, epoch in ((0, 0), (0, 1), (1, 0)):
        ds.set_epoch(epoch)
        orders[seed, epoch] = list(EpochShuffleSampler(ds, seed=seed))
    ds.set_epoch(0)
    assert list(EpochShuffleSampler(ds, seed=0)) == orders[0, 0]
    assert orders[0, 0] != orders[0, 1] and orders[0, 0] != orders[1, 0]
    assert sorted(orders[0, 1]) == list(range(len(ds)))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
        make_loader(list(range(4)), batch_size=0, train=True)
    with pytest.raises(ValueError, match="need num_workers > 0"):
        make_loader(list(range(4)), batch_size=2, train=True, num_workers=0, persistent_workers=True)


MODULES = ["collate", "lists", "loader", "sampling", "synthetic", "transforms", "video"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' mkdtemp() lands in pytest's tmp
    module = importlib.import_module(f"vared_core.data.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_default_workers_leave_one_core_to_the_training_loop() -> None:
    cores = sorted(os.sched_getaffinity(0))
    try:
        for n in range(1, len(cores) + 1):
            os.sched_setaffinity(0, cores[:n])
            assert default_num_workers() == min(8, n - 1), n
    finally:
        os.sched_setaffinity(0, cores)
