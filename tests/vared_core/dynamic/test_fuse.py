"""fuse_batchnorm / DynamicConv.absorb_affine: the inference form computes what the training form does."""
from __future__ import annotations

import copy
import platform

import pytest
import torch
from torch import nn

from vared_core import clip_gflops, fuse_batchnorm
from vared_core.dynamic import DynamicConv, DynamicSpec, dynamic_mode, dynamize, force_policy
from vared_core.runtime import retain_freed_memory

CLIP = (3, 8, 16, 16)
POLICIES = [(0, 0), (0, 1), (1, 0), (1, 1), ([0, 1, 0, 1, 1], [0, 0, 1, 1, 0]), ([1, 1, 0, 0, 1], [1, 0, 1, 0, 0])]


def _relu_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every ReLU's output (each sits after a conv → BN pair in the test nets), then the logits."""
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, a, out: seen.append(out.clone()))
               for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            seen.append(model(x))
    finally:
        for h in handles:
            h.remove()
    return seen


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor], tol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for i, (ya, yb) in enumerate(zip(a, b)):
        assert (ya - yb).abs().max() <= tol * max(1.0, ya.abs().max().item()), f"output {i} differs"


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
def test_static_net_folds_every_bn_and_keeps_outputs(kind: str, make_net, randomize_bn) -> None:
    net = make_net(kind)
    randomize_bn(net)
    before = copy.deepcopy(net.state_dict())
    fused = fuse_batchnorm(net, CLIP)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.features)
    assert sum(isinstance(m, nn.Identity) for m in fused.features) == sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.features)
    x = torch.randn(3, *CLIP)
    _assert_same(_relu_outputs(net, x), _relu_outputs(fused, x))
    # the original is untouched and still trainable
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in fused.parameters())


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
@pytest.mark.parametrize("spec", [DynamicSpec(search_space=2), DynamicSpec(search_space=3)], ids=["S2", "S3"])
def test_dynamic_net_fused_equals_unfused_layer_by_layer(kind, spec, make_net, randomize_bn, randomize_gates) -> None:
    dyn = dynamize(make_net(kind), spec, clip_shape=CLIP)
    randomize_bn(dyn)
    randomize_gates(dyn)
    fused = fuse_batchnorm(dyn, CLIP)
    assert all(m.post_scale is not None for m in fused.modules() if isinstance(m, DynamicConv))
    x = torch.randn(5, *CLIP)
    for mode in ("hard", "soft"):  # the gates' own choices: clips differ, some layers skip
        with dynamic_mode(dyn, mode), dynamic_mode(fused, mode):
            _assert_same(_relu_outputs(dyn, x), _relu_outputs(fused, x))
            assert torch.equal(clip_gflops(dyn), clip_gflops(fused))
    for t, c in POLICIES:
        with force_policy(dyn, temporal=t, channel=c), force_policy(fused, temporal=t, channel=c):
            _assert_same(_relu_outputs(dyn, x), _relu_outputs(fused, x))
    if kind == "net3d":  # the layout CPU inference runs in: parts are written into strided views
        fast = fused.to(memory_format=torch.channels_last_3d)
        xc = x.contiguous(memory_format=torch.channels_last_3d)
        for t, c in POLICIES:
            with force_policy(dyn, temporal=t, channel=c), force_policy(fast, temporal=t, channel=c):
                _assert_same(_relu_outputs(dyn, x), _relu_outputs(fast, xc))


def test_zeroed_gate_outputs_the_absorbed_shift() -> None:
    net = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(8))
    net[1].bias.data.uniform_(0.5, 1.0)
    net[1].running_mean.uniform_(-0.1, 0.1)
    dyn = dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8)).eval()
    dyn[0].gate.beta.data.fill_(-5.0)  # every alternative weighted 0: the layer skips, BN sees zeros
    fused = fuse_batchnorm(dyn, (3, 4, 8, 8))
    x = torch.randn(2, 3, 4, 8, 8)
    with torch.no_grad():
        expected = dyn(x)
        got = fused(x)
    assert torch.equal(dyn[0].last.channel_choice, torch.tensor([-1, -1]))
    assert (expected - got).abs().max() <= 1e-6
    assert got.abs().min() > 0  # the BN's shift, not zeros


class _Residual(nn.Module):
    """conv → BN, but the conv's output is also added to the result: folding the BN would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1))
        self.bn = nn.BatchNorm3d(4)
        self.conv2 = nn.Conv3d(4, 4, 1)
        self.bn2 = nn.BatchNorm3d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y + self.bn2(self.conv2(x))


def test_bn_whose_conv_output_is_read_elsewhere_stays(randomize_bn) -> None:
    net = _Residual().eval()
    randomize_bn(net)
    fused = fuse_batchnorm(net, (4, 3, 8, 8))
    assert isinstance(fused.bn, nn.BatchNorm3d) and isinstance(fused.bn2, nn.Identity)
    x = torch.randn(2, 4, 3, 8, 8)
    with torch.no_grad():
        assert (net(x) - fused(x)).abs().max() <= 1e-5


def test_cost_tracking_survives_on_both_models(make_net) -> None:
    dyn = dynamize(make_net("net3d"), DynamicSpec(search_space=2), clip_shape=CLIP).eval()
    fused = fuse_batchnorm(dyn, CLIP)
    x = torch.randn(2, *CLIP)
    with torch.no_grad(), force_policy(fused, temporal=1, channel=1), force_policy(dyn, temporal=1, channel=1):
        fused(x)
        reduced = clip_gflops(fused)
        dyn(x[:1])  # the original's tracker still counts its own forwards
        assert clip_gflops(dyn).shape == (1,)
    with torch.no_grad(), force_policy(fused, temporal=0, channel=0):
        fused(x)
        assert (clip_gflops(fused) > reduced).all()


def test_absorb_affine_checks_the_channel_count() -> None:
    dyn = DynamicConv.build(nn.Conv3d(3, 8, 1), DynamicSpec(search_space=2), in_frames=4, name="features.0")
    with pytest.raises(ValueError, match="features.0.*8 channels"):
        dyn.absorb_affine(torch.ones(6), torch.zeros(6))


def test_fuse_rejects_a_bad_clip_shape(make_net) -> None:
    with pytest.raises(ValueError, match="clip_shape"):
        fuse_batchnorm(make_net("net3d"), (3, 16, 16))


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_retain_freed_memory_applies_on_glibc() -> None:
    assert retain_freed_memory() is True
