"""The cheap operations: Φ^c rebuilds missing channels from computed ones, Φ^t missing frames."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vared_core.dynamic import ChannelCheapOp, DynamicConv, DynamicSpec, TemporalCheapOp, dynamic_mode, force_policy


def _sources(op: ChannelCheapOp) -> list[int]:
    """For each rebuilt map, the one computed map it reads: found by feeding one impulse per computed map."""
    with torch.no_grad():
        op.weight.fill_(1.0)
    reads = {}
    for c in range(op.in_channels):
        x = torch.zeros(1, op.in_channels, 5, 5)
        x[0, c, 2, 2] = 1.0
        for o in op.conv(x)[0, :, 2, 2].nonzero().flatten().tolist():
            assert o not in reads, f"rebuilt map {o} reads more than one computed map"
            reads[o] = c
    return [reads[o] for o in range(op.out_channels)]


# ------------------------------------------------------------------ Φ^c


@pytest.mark.parametrize(
    ("k", "rebuilt", "sources"),
    [
        (2, 6, [0, 0, 0, 1, 1, 1]),  # multiplier 3: each computed map feeds 3 consecutive rebuilt ones
        (4, 4, [0, 1, 2, 3]),  # r = 1/2: multiplier 1
        (3, 7, [0, 0, 0, 1, 1, 2, 2]),  # 7 not a multiple of 3: o·k // (C - k), spread evenly
        (4, 3, [0, 1, 2]),  # odd C = 7 at r = 1/2: fewer rebuilt maps than computed ones
    ],
)
def test_each_rebuilt_map_reads_one_computed_map(k: int, rebuilt: int, sources: list[int]) -> None:
    op = ChannelCheapOp(k, rebuilt)
    assert _sources(op) == sources


@pytest.mark.parametrize(("k", "rebuilt"), [(2, 6), (3, 7)])
def test_the_channel_multiplier_is_rebuilt_over_computed_maps(k: int, rebuilt: int) -> None:
    """A plain depthwise conv with multiplier (C - k)/k when it divides; one filter per rebuilt map always."""
    op = ChannelCheapOp(k, rebuilt)
    assert op.weight.shape == (rebuilt, 1, 3, 3)
    assert op.groups == (k if rebuilt % k == 0 else rebuilt)


@pytest.mark.parametrize("weight_ndim", [4, 5])
@pytest.mark.parametrize(("k", "rebuilt"), [(4, 4), (3, 7)])
def test_output_shape_for_folded_frames(weight_ndim: int, k: int, rebuilt: int) -> None:
    op = ChannelCheapOp(k, rebuilt, kernel_size=5, weight_ndim=weight_ndim)
    assert op.weight.dim() == weight_ndim
    assert op(torch.randn(6, k, 7, 9)).shape == (6, rebuilt, 7, 9)  # 'same' padding keeps H and W


def test_conv3d_and_conv2d_shaped_weights_compute_the_same() -> None:
    flat, deep = ChannelCheapOp(3, 5, weight_ndim=4).eval(), ChannelCheapOp(3, 5, weight_ndim=5).eval()
    with torch.no_grad():
        deep.weight.copy_(flat.weight.unsqueeze(2))
    assert deep.weight.shape == (5, 1, 1, 3, 3)
    x = torch.randn(4, 3, 6, 6)
    assert torch.allclose(deep(x), flat(x), atol=1e-6)
    deep.to(memory_format=torch.channels_last_3d)  # what a Conv3d host's model.to(...) does to it
    assert torch.allclose(deep(x), flat(x), atol=1e-6)


@pytest.mark.parametrize(("host", "ndim"), [(nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1)), 5),
                                            (nn.Conv2d(4, 8, 3, padding=1), 4)])  # fmt: skip
def test_a_dynamic_conv_gives_its_cheap_ops_weights_shaped_like_its_own(host: nn.Module, ndim: int) -> None:
    dyn = DynamicConv.build(host, DynamicSpec(search_space=3, temporal=False), in_frames=4, name="conv")
    assert [op.weight.dim() for op in dyn.channel_ops] == [ndim, ndim]
    assert [(op.in_channels, op.out_channels) for op in dyn.channel_ops] == [(4, 4), (2, 6)]


def test_bn_affine_is_the_eval_op_after_the_conv() -> None:
    op = ChannelCheapOp(3, 7).eval()
    with torch.no_grad():
        op.bn.running_mean.normal_()
        op.bn.running_var.uniform_(0.5, 2.0)
        op.bn.weight.normal_()
        op.bn.bias.normal_()
    x = torch.randn(2, 3, 5, 5)
    scale, shift = op.bn_affine()
    assert scale.shape == shift.shape == (7,)
    assert torch.allclose(op(x), op.conv(x) * scale.view(1, 7, 1, 1) + shift.view(1, 7, 1, 1), atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
def test_zero_init_rebuilds_zeros(train: bool) -> None:
    op = ChannelCheapOp(3, 5, zero_init=True).train(train)
    assert torch.count_nonzero(op(torch.randn(4, 3, 6, 6))) == 0


def test_zero_init_still_lets_the_fine_tune_grow_the_rebuilt_maps() -> None:
    op = ChannelCheapOp(3, 5, zero_init=True).train()
    (op(torch.randn(4, 3, 6, 6)) * torch.randn(4, 5, 6, 6)).sum().backward()
    assert op.bn.weight.grad is not None and bool((op.bn.weight.grad != 0).all())


def test_without_zero_init_rebuilt_maps_start_as_unit_variance_features() -> None:
    y = ChannelCheapOp(3, 5).train()(torch.randn(8, 3, 6, 6) * 4 + 2)
    var = y.transpose(0, 1).flatten(1).var(dim=1, unbiased=False)
    assert torch.allclose(var, torch.ones(5), atol=1e-3)


def test_a_checkpoint_loads_into_an_op_of_the_same_shape() -> None:
    """The gather index is rebuilt from the shapes, not stored: loading a state dict reproduces the output."""
    saved, fresh = ChannelCheapOp(3, 7).eval(), ChannelCheapOp(3, 7).eval()
    with torch.no_grad():
        saved.bn.running_mean.normal_()
    fresh.load_state_dict(saved.state_dict())
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(fresh(x), saved(x))


@pytest.mark.parametrize(("height", "width", "kernel"), [(7, 9, 3), (4, 4, 5)])
def test_macs_per_frame_is_one_filter_per_rebuilt_map(height: int, width: int, kernel: int) -> None:
    op = ChannelCheapOp(3, 7, kernel_size=kernel)
    assert op.macs_per_frame(height, width) == 7 * kernel * kernel * height * width


@pytest.mark.parametrize("channels", [64, 128, 256, 512])  # R(2+1)D-18's widths
def test_phi_c_costs_well_under_5_percent_of_the_conv_it_replaces(channels: int) -> None:
    """Method doc §1: rebuilding half of a C → C 1×3×3 conv's maps costs < 5% of that conv."""
    k = DynamicSpec.channel_count(channels, 1)
    full_per_frame = channels * channels * 3 * 3 * 14 * 14
    assert ChannelCheapOp(k, channels - k).macs_per_frame(14, 14) < 0.05 * full_per_frame


# ------------------------------------------------------------------ Φ^t


@pytest.mark.parametrize("factor", [2, 4])
def test_phi_t_starts_as_a_copy(factor: int) -> None:
    op = TemporalCheapOp(factor, 6)
    scale, shift = op.tables()
    assert scale.shape == shift.shape == (factor, 6)
    assert torch.equal(scale, torch.ones(factor, 6)) and torch.equal(shift, torch.zeros(factor, 6))
    assert sum(p.numel() for p in op.parameters()) == 2 * (factor - 1) * 6  # a weight and bias per offset j ≥ 1


def test_phi_t_tables_keep_the_identity_row_for_computed_frames() -> None:
    op = TemporalCheapOp(3, 4)
    with torch.no_grad():
        op.weight.copy_(torch.tensor([[2.0] * 4, [3.0] * 4]))
        op.bias.copy_(torch.tensor([[-1.0] * 4, [0.5] * 4]))
    scale, shift = op.tables()
    assert scale[:, 0].tolist() == [1.0, 2.0, 3.0] and shift[:, 0].tolist() == [0.0, -1.0, 0.5]


def _temporal_conv(frames: int) -> tuple[DynamicConv, nn.Conv3d]:
    """A conv with temporal alternatives R = 1, 2, 4 and the static conv it wraps (temporal stride 1)."""
    conv = nn.Conv3d(4, 6, (1, 3, 3), padding=(0, 1, 1))
    dyn = DynamicConv.build(conv, DynamicSpec(search_space=3, channel=False), in_frames=frames, name="conv").eval()
    return dyn, conv


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize(("alternative", "factor"), [(1, 2), (2, 4)])
def test_a_new_phi_t_copies_the_nearest_computed_frame_before(mode: str, alternative: int, factor: int) -> None:
    frames = 7  # not a multiple of R: the last group is cut short
    dyn, conv = _temporal_conv(frames)
    x = torch.randn(2, 4, frames, 5, 5)
    with torch.no_grad(), dynamic_mode(dyn, mode), force_policy(dyn, temporal=alternative):
        y = dyn(x)
    full = conv(x)
    for t in range(frames):
        computed = t - t % factor
        assert torch.allclose(y[:, :, t], full[:, :, computed], atol=1e-5), f"frame {t}"


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_a_trained_phi_t_is_a_per_channel_affine_map_of_that_frame(mode: str) -> None:
    dyn, conv = _temporal_conv(8)
    op = dyn.temporal_ops[1]  # R = 4
    with torch.no_grad():
        op.weight.normal_(1.0, 0.5)
        op.bias.normal_()
    x = torch.randn(2, 4, 8, 5, 5)
    with torch.no_grad(), dynamic_mode(dyn, mode), force_policy(dyn, temporal=2):
        y = dyn(x)
    full = conv(x)
    for t in range(8):
        i, j = divmod(t, 4)
        expected = full[:, :, 4 * i]
        if j:
            expected = expected * op.weight[j - 1].view(1, 6, 1, 1) + op.bias[j - 1].view(1, 6, 1, 1)
        assert torch.allclose(y[:, :, t], expected, atol=1e-5), f"frame {t}"
