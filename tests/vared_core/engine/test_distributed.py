"""`vared_core.engine.distributed` and `evaluate` inside a real torch process group (gloo, 2 processes on
this machine): shards cover every video once, and the gathered result is the one-process result."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from vared_core import DynamicSpec, dynamize
from vared_core.engine import evaluate
from vared_core.engine.distributed import World, gather_objects, shard_of, world


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
