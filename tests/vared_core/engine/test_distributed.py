"""`vared_core.engine.distributed` and `evaluate` inside a real torch process group (gloo, 2 processes on
this machine): shards cover every video once, and the gathered result is the one-process result."""
from __future__ import annotations

import json
import math
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from vared_core import DynamicSpec, dynamize
from vared_core.engine import (
    CheckpointError,
    DataConfig,
    FitStopped,
    OptimConfig,
    SyntheticData,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
)
from vared_core.engine.checkpoint import checkpoint_dirs
from vared_core.engine.distributed import World, gather_objects, shard_of, world

from .conftest import run_ranks


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1))
        self.bn = nn.BatchNorm3d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3, 4)))


def _model() -> nn.Module:
    """A dynamic net whose gates give clips different policies (random, not initial, gate weights)."""
    torch.manual_seed(0)
    model = dynamize(_Net(), DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate" in name:
                p.add_(torch.randn_like(p) * 2.0)
    return model.eval()


def _dataset() -> list[dict]:
    """Seven videos (two ranks get 4 and 3) of 2 views, three classes, annotated with motion."""
    g = torch.Generator().manual_seed(1)
    return [{"video": torch.randn(2, 3, 4, 8, 8, generator=g), "label": i % 3, "index": i, "motion": i % 2}
            for i in range(7)]  # fmt: skip


def _summary(r) -> dict:
    d = r.to_dict()
    d.pop("clips_per_s")  # a timing
    return json.loads(json.dumps(d))


def _rank(rank: int, size: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=size)
    try:
        w = world()
        result = evaluate(_model(), _dataset(), batch_size=2)
        Path(out, f"rank{rank}.json").write_text(json.dumps({
            "world": list(w), "shard": shard_of(7, w), "gathered": gather_objects(rank * 10, w),
            "result": _summary(result), "clips_per_s": result.clips_per_s,
        }))  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_outside_a_process_group_everything_is_one_process() -> None:
    assert world() == World(0, 1) and world().is_main
    assert shard_of(3, world()) == [0, 1, 2] and gather_objects("x", world()) == ["x"]


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_hold_every_item_once(size: int) -> None:
    shards = [shard_of(7, World(r, size)) for r in range(size)]
    assert sorted(i for s in shards for i in s) == list(range(7))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_two_ranks_evaluate_the_whole_set_and_agree_with_one_process(tmp_path: Path) -> None:
    single = evaluate(_model(), _dataset(), batch_size=2)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_rank, args=(r, 2, str(tmp_path / "rdv"), str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [[0, 2], [1, 2]]
    assert [r["shard"] for r in ranks] == [[0, 2, 4, 6], [1, 3, 5]]
    assert ranks[0]["gathered"] == ranks[1]["gathered"] == [0, 10]
    expected = _summary(single)
    assert len({v["gflops"] for v in expected["videos"]}) > 1  # the clips took different policies
    for r in ranks:  # every rank holds the whole set's result, in dataset order
        assert r["result"]["num_videos"] == 7 and [v["index"] for v in r["result"]["videos"]] == list(range(7))
        assert _close(r["result"], expected)
        assert r["clips_per_s"] > 0


def _close(a, b, tol: float = 1e-5) -> bool:
    """Equal structures, floats within ``tol`` (a sharded batch may sum in another order)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (set(a) ^ set(b))
        return all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        assert len(a) == len(b)
        return all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=tol, abs=tol, nan_ok=True), (a, b)
        return True
    assert a == b, (a, b)
    return True


# ------------------------------------------------------------------ fit under DistributedDataParallel
def _fit_config(tmp: Path, output: str, batch_size: int, **fields) -> TrainConfig:
    """X3D-M tiny without dropout (dropout masks are drawn per rank, so no 2-rank run could repeat one
    process's), 12 training and 4 validation videos, 2 epochs. X3D because its training is well conditioned:
    a run's losses do not move with the thread count, unlike R(2+1)D-tiny's on these clips."""
    data = DataConfig(
        synthetic=SyntheticData(root=tmp / "synth", classes=2, videos_per_class=8, frames=8, size=32, seed=0),
        flip=False, batch_size=batch_size, num_workers=0, num_frames=4, frame_stride=2, crop_size=32,
    )  # fmt: skip
    values = dict(model="x3d_m_tiny", dropout=0.0, epochs=2, output_dir=tmp / output, data=data, device="cpu",
                  threads=1, optim=OptimConfig(lr=0.05, warmup_epochs=0.5))  # fmt: skip
    values.update(fields)
    return TrainConfig(**values)


class _Stop(Exception):
    """Raised by an epoch callback: a run interrupted after an epoch."""


def _fit_rank(rank: int, tmp: str, output: str, batch_size: int, fields: dict, stop_after: int | None) -> None:
    def on_epoch(epoch: int, metrics: dict, checkpoint: Path) -> None:
        Path(tmp, f"{output}_rank{rank}_epoch{epoch}.json").write_text(json.dumps({**metrics, "ckpt": str(checkpoint)}))
        if epoch == stop_after:
            raise _Stop

    try:
        fit(_fit_config(Path(tmp), output, batch_size, **fields), on_epoch=on_epoch)
    except _Stop:
        pass


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(checkpoint)["model"].items() if v.is_floating_point()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-4) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).norm() <= tol * a[k].norm().clamp(min=1e-3), k


@pytest.mark.slow
def test_two_ranks_train_as_one_process_on_the_same_global_batch(tmp_path: Path) -> None:
    run_ranks(_fit_rank, 2, tmp_path / "rdv", str(tmp_path), "two", 2, {}, None)
    one = fit(_fit_config(tmp_path, "one", batch_size=4))

    ranks = [[json.loads((tmp_path / f"two_rank{r}_epoch{e}.json").read_text()) for e in (1, 2)] for r in range(2)]
    assert ranks[0] == ranks[1]  # every rank reports the whole run's metrics and rank 0's checkpoint
    for got, want in zip(ranks[0], one.history):
        for key in ("loss", "train_top1", "train_gflops", "val_loss", "video_top1", "clip_top1", "gflops_avg", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    two = tmp_path / "two"
    assert [p.name for p in checkpoint_dirs(two)] == ["epoch_0001", "epoch_0002"]  # written once, by rank 0
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 2
    _assert_same_weights(_weights(one.checkpoint), _weights(two / "checkpoints" / "epoch_0002"))
    recipe = load_checkpoint(two / "checkpoints" / "epoch_0002")["recipe"]
    assert (recipe["workers"], recipe["batch_per_worker"], recipe["accumulation"], recipe["total_batch"]) == (2, 2, 1, 4)
    assert one.recipe.workers == 1 and one.recipe.total_batch == 4


@pytest.mark.slow
def test_a_run_resumes_on_another_worker_count_when_its_total_batch_is_fixed(tmp_path: Path) -> None:
    fixed = {"optim": OptimConfig(lr=0.05, warmup_epochs=0.5, total_batch=4)}
    run_ranks(_fit_rank, 2, tmp_path / "rdv", str(tmp_path), "run", 2, fixed, 1)  # 2 ranks × 2 clips, then stopped
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["epoch_0001"]

    resumed = fit(_fit_config(tmp_path, "run", batch_size=4, resume_from="last", **fixed))  # 1 process × 4 clips
    straight = fit(_fit_config(tmp_path, "straight", batch_size=4, **fixed))
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-4)
    _assert_same_weights(_weights(straight.checkpoint), _weights(resumed.checkpoint))

    with pytest.raises(CheckpointError, match="trained with 4 clips per step, this run has 2.*optim.total_batch"):
        fit(_fit_config(tmp_path, "run", batch_size=2, resume_from="last"))


def test_accumulation_makes_up_the_total_batch_and_is_recorded(tmp_path: Path) -> None:
    config = _fit_config(tmp_path, "acc", batch_size=2, epochs=1, optim=OptimConfig(lr=0.05, total_batch=4))
    result = fit(config)
    assert (result.recipe.accumulation, result.recipe.total_batch) == (2, 4)
    assert load_checkpoint(result.checkpoint)["scheduler"]["last_epoch"] == 3  # 12 videos / 4 per step
    with pytest.raises(ValueError, match="optim.total_batch: 6 .* not a multiple of data.batch_size 4"):
        fit(_fit_config(tmp_path, "bad", batch_size=4, optim=OptimConfig(total_batch=6)))


def _dynamic_rank(rank: int, tmp: str) -> None:
    config = _fit_config(Path(tmp), "dyn", 2, stage="dynamic", dynamic={"search_space": 2}, epochs=1,
                         policy_warmup_epochs=0.5, lambda_e=0.5)  # 2 of the 3 steps pinned, then the gates
    result = fit(config)
    Path(tmp, f"dyn{rank}.json").write_text(json.dumps(result.history))


def test_a_dynamic_run_with_the_policy_warm_up_trains_on_two_ranks(tmp_path: Path) -> None:
    # the warm-up pins every dynamic layer, so the gates get no gradient in its steps, and each rank's clips
    # use other alternatives, so the ranks' backward graphs differ: DDP and the synchronized BatchNorms must
    # cope with both (mixed on one process group, their collectives mismatched and gloo aborted)
    run_ranks(_dynamic_rank, 2, tmp_path / "rdv", str(tmp_path))
    ranks = [json.loads((tmp_path / f"dyn{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] and len(ranks[0]) == 1
    assert ranks[0][0]["gflops_avg"] > 0 and math.isfinite(ranks[0][0]["loss"])


def _stopping_rank(rank: int, tmp: str) -> None:
    """Rank 1 alone is asked to stop, at its 6th question: epoch 1 asks in its 3 steps and before its
    evaluation, so the 6th is in epoch 2's step 2."""
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return rank == 1 and len(asked) == 6

    epochs: list[int] = []
    try:
        fit(_fit_config(Path(tmp), "stop", 2), on_epoch=lambda e, m, c: epochs.append(e), should_stop=should_stop)
        left = None
    except FitStopped as e:
        left = [e.epoch, e.step, str(e.checkpoint)]
    Path(tmp, f"stop{rank}.json").write_text(json.dumps({"left": left, "epochs": epochs, "asked": len(asked)}))


def test_a_stop_asked_on_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    run_ranks(_stopping_rank, 2, tmp_path / "rdv", str(tmp_path))
    ranks = [json.loads((tmp_path / f"stop{r}.json").read_text()) for r in range(2)]
    first = str(tmp_path / "stop" / "checkpoints" / "epoch_0001")
    assert ranks[0] == ranks[1] == {"left": [2, 2, first], "epochs": [1], "asked": 6}  # nothing reported after
    assert [p.name for p in checkpoint_dirs(tmp_path / "stop")] == ["epoch_0001"]

    asked: list[int] = []  # one process, stopped before its first evaluation: no checkpoint yet
    with pytest.raises(FitStopped, match="epoch 1, before its evaluation; newest checkpoint None") as stopped:
        fit(_fit_config(tmp_path, "alone", 4, epochs=1), should_stop=lambda: asked.append(1) or len(asked) == 4)
    assert (stopped.value.epoch, stopped.value.step, stopped.value.checkpoint) == (1, 0, None)
    assert checkpoint_dirs(tmp_path / "alone") == []
