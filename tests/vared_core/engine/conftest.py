"""Shared fixtures: one small synthetic set and one trained tiny base model for the engine tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vared_core.engine import DataConfig, FitResult, OptimConfig, SyntheticData, TrainConfig, fit


@pytest.fixture(scope="session")
def engine_data(tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    """pan_right vs pan_left, 16 videos each (12 train, 4 val), 8 frames of 32²; clips of 4 frames."""
    root = tmp_path_factory.mktemp("engine") / "synth"
    return DataConfig(
        synthetic=SyntheticData(root=root, classes=2, videos_per_class=16, frames=8, size=32, seed=0),
        flip=False, batch_size=4, num_workers=0, num_frames=4, frame_stride=2, crop_size=32,
    )  # fmt: skip


def base_config(data: DataConfig, output_dir: Path, **overrides: object) -> TrainConfig:
    fields = dict(model="r2plus1d_18_tiny", epochs=15, output_dir=output_dir, data=data,
                  optim=OptimConfig(lr=0.02, warmup_epochs=1), eval_every=100)  # fmt: skip
    fields.update(overrides)
    return TrainConfig(**fields)


@pytest.fixture(scope="session")
def make_base_config():
    return base_config


@pytest.fixture(scope="session")
def base_run(engine_data: DataConfig, tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    torch.set_num_threads(1)
    return fit(base_config(engine_data, tmp_path_factory.mktemp("base")))


def run_ranks(target, size: int, rendezvous: Path, *args: object, timeout: float = 300) -> None:
    """Run ``target(rank, *args)`` in ``size`` forked processes that form a gloo process group (one CPU thread
    each: forked children must not share the parent's OpenMP pool); fail unless every rank exits cleanly."""
    import multiprocessing as mp

    import torch.distributed as dist

    def in_group(rank: int) -> None:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
        try:
            target(rank, *args)
        finally:
            dist.destroy_process_group()

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=in_group, args=(r,)) for r in range(size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * size, "a rank failed (its traceback is in the captured stderr)"
