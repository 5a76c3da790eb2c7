"""clip_gflops against torch's FlopCounterMode; reduced policies really compute less."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vared_core.dynamic import (
    DynamicConv, DynamicSpec, clip_gflops, dynamic_layers, dynamic_mode, dynamize, force_policy, static_gflops,
    track_costs,
)

POLICIES = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (0, 2)]
# The 3-channel stem stays static, as in the real backbones: FlopCounterMode does not count Φ^t's
# elementwise affine MACs, which clip_gflops counts; next to a 3-input conv they are not small.
BEYOND_STEM = {"net3d": ["features.[369]"], "net2d_folded": ["features.3"]}


def _counted_gflops(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
@pytest.mark.parametrize("temporal, channel", POLICIES)
def test_clip_gflops_matches_flop_counter_for_each_pinned_policy(kind, temporal, channel, make_net) -> None:
    net = dynamize(make_net(kind, width=32), DynamicSpec(search_space=3), clip_shape=(3, 8, 32, 32),
                   include=BEYOND_STEM[kind])
    x = torch.randn(4, 3, 8, 32, 32)
    with force_policy(net, temporal=temporal, channel=channel), dynamic_mode(net, "hard"):
        counted = _counted_gflops(net, x)
        tracked = clip_gflops(net)
    assert tracked.shape == (4,)
    assert abs(tracked.sum().item() - counted) <= 0.02 * counted


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
def test_clip_gflops_matches_flop_counter_for_a_mixed_batch(kind, make_net, randomize_gates) -> None:
    net = dynamize(make_net(kind, width=32), DynamicSpec(search_space=2), clip_shape=(3, 8, 32, 32),
                   include=BEYOND_STEM[kind])
    x = torch.randn(6, 3, 8, 32, 32)
    with force_policy(net, temporal=[0, 1, 0, 1, 1, 0], channel=[0, 0, 1, 1, 1, 0]), dynamic_mode(net, "hard"):
        counted = _counted_gflops(net, x)
        tracked = clip_gflops(net)
    assert abs(tracked.sum().item() - counted) <= 0.02 * counted
    # clips pinned alike cost alike; full clips cost most, half+half least
    assert tracked[0] == tracked[5] and tracked[3] == tracked[4]
    assert tracked[0] > tracked[1] and tracked[0] > tracked[2] and tracked[3] < min(tracked[1], tracked[2])
    # random gate states as well
    randomize_gates(net, seed=7)
    with dynamic_mode(net, "hard"):
        counted = _counted_gflops(net, x)
        tracked = clip_gflops(net)
    assert abs(tracked.sum().item() - counted) <= 0.02 * counted


@pytest.mark.parametrize("folded", [False, True])
def test_half_channels_half_frames_costs_at_most_03_of_the_full_conv(folded: bool) -> None:
    conv = nn.Conv2d(64, 128, 3, padding=1) if folded else nn.Conv3d(64, 128, (1, 3, 3), padding=(0, 1, 1))
    dyn = DynamicConv.build(conv, DynamicSpec(search_space=2), in_frames=8).eval()
    x = torch.randn(2 * 8, 64, 28, 28) if folded else torch.randn(2, 64, 8, 28, 28)
    with force_policy(dyn, temporal=1, channel=1):
        counted = _counted_gflops(dyn, x) * 1e9 / 2
        dyn(x)
    full = dyn.last.full_macs
    assert torch.all(dyn.last.clip_macs <= 0.3 * full)
    assert counted <= 0.3 * full
    assert abs(dyn.last.cost_fraction[0].item() - 0.25) < 1e-6


def test_static_gflops_and_track_costs_on_a_static_model(make_net) -> None:
    conv = nn.Conv3d(3, 8, (3, 3, 3), padding=1)
    # 8 outputs × 4 frames × 16² positions × (3 × 27) MACs each
    assert static_gflops(conv, (3, 4, 16, 16)) == pytest.approx(8 * 4 * 16 * 16 * 3 * 27 / 1e9)
    net = make_net("net3d")
    expected = static_gflops(net, (3, 8, 16, 16))
    track_costs(net)
    net(torch.randn(3, 3, 8, 16, 16))
    assert torch.allclose(clip_gflops(net), torch.full((3,), expected, dtype=torch.float64), rtol=1e-9)


def test_clip_gflops_needs_tracking_and_a_forward(make_net) -> None:
    net = make_net("net3d")
    with pytest.raises(ValueError, match="dynamize or track_costs"):
        clip_gflops(net)
    track_costs(net)
    with pytest.raises(ValueError, match="forward"):
        clip_gflops(net)


def test_soft_mode_reports_the_inference_cost_of_its_decisions(make_net, randomize_gates) -> None:
    net = dynamize(make_net("net3d"), DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    randomize_gates(net, seed=2)
    x = torch.randn(5, 3, 8, 16, 16)
    with dynamic_mode(net, "soft"):
        net(x)
        soft = clip_gflops(net)
    with dynamic_mode(net, "hard"):
        net(x)
        hard = clip_gflops(net)
    assert torch.equal(soft, hard)
    assert len({round(v, 12) for v in hard.tolist()}) > 1
    assert all(layer.last is not None for _, layer in dynamic_layers(net))
