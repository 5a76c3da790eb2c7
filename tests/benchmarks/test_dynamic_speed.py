"""benchmarks/dynamic_speed.py: its bound computes what it claims, and a run reports every policy and batch."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vared_core import DynamicSpec, dynamize

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "dynamic_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dynamic_speed", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dynamic_speed"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("dynamic_speed", None)


def test_the_mixed_bound_computes_each_clips_kept_part_and_copies_the_rest(bench) -> None:
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 6, (3, 3, 3), padding=1).eval()
    x = torch.randn(4, 4, 6, 8, 8)
    factors, channels = torch.tensor([1, 2, 2, 1]), torch.tensor([3, 6, 3, 6])
    with torch.no_grad():
        out = bench.ReducedOnly(conv, factors, channels)(x)
        full = conv(x)
    assert out.shape == full.shape
    for i, (r, k) in enumerate(zip(factors.tolist(), channels.tolist())):
        kept = full[i, :k, ::r]
        assert torch.allclose(out[i, :k, ::r], kept, atol=1e-5)  # the conv's own outputs where it computed
        assert torch.equal(out[i, k:, ::r], out[i, : 6 - k, ::r])  # rebuilt channels: copies of computed ones
        for j in range(1, r):
            assert torch.equal(out[i, :, j::r], out[i, :, ::r][:, : out[i, :, j::r].shape[1]])


def test_a_run_reports_every_policy_at_every_batch_size(bench) -> None:
    torch.manual_seed(0)
    static = bench.r2plus1d_like([(4, 8, 4, 1, 1), (4, 8, 8, 2, 2)]).eval()
    x = torch.randn(2, 4, 4, 8, 8)
    results = bench.bench_network(static, x, ["0", "6"], [1, 2], repeats=1)
    assert [r["batch"] for r in results] == [1, 2]
    for r in results:
        assert set(r["policies"]) == {"full", "half_channel", "half_temporal", "half_both", "mixed", "gated"}
        for row in r["policies"].values():
            measured, bound = row["measured_speedup"], row["bound_speedup"]  # each rounded to 3 decimals
            assert row["measured_over_bound"] == pytest.approx(measured / bound, rel=0.01 + 1e-3 / min(measured, bound))
    # the mixed policy really differs per clip and per layer
    dyn = dynamize(static, DynamicSpec(search_space=2), clip_shape=(4, 4, 8, 8), include=["0", "6"])
    choices = bench.mixed_choices(dyn, 8)
    (t0, c0), (t1, c1) = choices.values()
    assert len(set(zip(t0.tolist(), c0.tolist()))) > 1 and not (torch.equal(t0, t1) and torch.equal(c0, c1))
