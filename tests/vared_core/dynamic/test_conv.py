"""DynamicConv: pinned-full equals the original, hard equals soft, odd shapes, zero gates."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from vared_core.dynamic import (
    CheapOpsSpec,
    DynamicConv,
    DynamicSpec,
    StabilitySpec,
    dynamic_layers,
    dynamic_mode,
    dynamize,
    force_policy,
    fuse_batchnorm,
)


SPECS = [
    DynamicSpec(search_space=2),
    DynamicSpec(search_space=3),
    DynamicSpec(search_space=2, temporal=False),
    DynamicSpec(search_space=2, channel=False),
    DynamicSpec(search_space=1),
]
NORM = StabilitySpec(normalize_weights=True)
NORMALIZED = [DynamicSpec(search_space=2, stability=NORM), DynamicSpec(search_space=3, stability=NORM)]


def _wrap(conv: nn.Module, spec: DynamicSpec, frames: int) -> DynamicConv:
    return DynamicConv.build(conv, spec, in_frames=frames, name="conv").eval()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"S{s.search_space}-t{int(s.temporal)}-c{int(s.channel)}")
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_pinned_full_conv3d_equals_original(spec: DynamicSpec, mode: str) -> None:
    conv = nn.Conv3d(8, 12, (3, 3, 3), stride=(1, 2, 2), padding=1)
    dyn = _wrap(copy.deepcopy(conv), spec, frames=6)
    x = torch.randn(3, 8, 6, 11, 11)
    with dynamic_mode(dyn, mode), force_policy(dyn, temporal=0, channel=0):
        y = dyn(x)
    assert (y - conv(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_pinned_full_conv2d_folded_equals_original(mode: str) -> None:
    conv = nn.Conv2d(8, 12, 3, padding=1)
    dyn = _wrap(copy.deepcopy(conv), DynamicSpec(search_space=3), frames=5)
    x = torch.randn(2 * 5, 8, 9, 9)
    with dynamic_mode(dyn, mode), force_policy(dyn, temporal=0, channel=0):
        y = dyn(x)
    assert y.shape == (10, 12, 9, 9)
    assert (y - conv(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_pinned_full_net_equals_original(kind: str, mode: str, make_net, randomize_bn, randomize_gates) -> None:
    net = make_net(kind)
    randomize_bn(net)
    ref = copy.deepcopy(net)
    dyn = dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    randomize_gates(dyn)
    x = torch.randn(4, 3, 8, 16, 16)
    with dynamic_mode(dyn, mode), force_policy(dyn, temporal=0, channel=0):
        y = dyn(x)
    assert (y - ref(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
@pytest.mark.parametrize("spec", SPECS[:4] + NORMALIZED,
                         ids=lambda s: f"S{s.search_space}-t{int(s.temporal)}-c{int(s.channel)}-n{int(s.stability.normalize_weights)}")
def test_hard_equals_soft_for_random_gates(kind: str, spec: DynamicSpec, make_net, randomize_bn, randomize_gates) -> None:
    net = dynamize(make_net(kind), spec, clip_shape=(3, 8, 16, 16))
    randomize_bn(net)
    randomize_gates(net, seed=3)
    x = torch.randn(6, 3, 8, 16, 16)
    with dynamic_mode(net, "soft"):
        y_soft = net(x)
        soft_choices = [(m.last.channel_choice.clone(), m.last.temporal_choice.clone()) for _, m in dynamic_layers(net)]
    with dynamic_mode(net, "hard"):
        y_hard = net(x)
    assert (y_soft - y_hard).abs().max() <= 1e-4
    # the random gates really produced a mixed batch somewhere: clips chose different alternatives
    mixed = [len(set(zip(c.tolist(), t.tolist()))) > 1 for c, t in soft_choices]
    assert any(mixed)
    for (_, m), (c, t) in zip(dynamic_layers(net), soft_choices):
        assert torch.equal(m.last.channel_choice, c) and torch.equal(m.last.temporal_choice, t)


MIXED = {
    "one_clip_each": ([0, 1, 2, 1, 0], [2, 1, 0, 0, 1]),
    # groups whose clips lie evenly spaced (written through strided views) or in uneven runs
    "strided_groups": ([0, 1, 0, 1, 0, 1, 2, 2, 0], [0, 0, 1, 1, 0, 0, 1, 1, 0]),
}


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
@pytest.mark.parametrize("policy", MIXED.values(), ids=MIXED.keys())
def test_hard_equals_soft_for_pinned_mixed_batch(kind: str, policy, make_net, randomize_bn, randomize_gates) -> None:
    net = dynamize(make_net(kind), DynamicSpec(search_space=3), clip_shape=(3, 8, 16, 16))
    randomize_bn(net)
    randomize_gates(net)
    temporal, channel = policy
    x = torch.randn(len(temporal), 3, 8, 16, 16)
    with force_policy(net, temporal=temporal, channel=channel):
        with dynamic_mode(net, "soft"):
            y_soft = net(x)
        with dynamic_mode(net, "hard"):
            y_hard = net(x)
    assert (y_soft - y_hard).abs().max() <= 1e-4
    # each clip's output equals that clip run alone with its own policy
    for i in (2, len(temporal) - 2):
        with force_policy(net, temporal=temporal[i], channel=channel[i]), dynamic_mode(net, "hard"):
            alone = net(x[i : i + 1])
        assert (alone - y_hard[i : i + 1]).abs().max() <= 1e-4


@pytest.mark.parametrize(
    "conv, frames",
    [
        (nn.Conv3d(6, 6, (1, 3, 3), padding=(0, 1, 1)), 5),  # 6 channels: S=3 computes 6/3/2; 5 frames
        (nn.Conv3d(8, 10, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)), 7),  # temporal stride, odd frames
        (nn.Conv3d(16, 16, (3, 3, 3), padding=1, groups=4), 4),  # grouped, sliceable by whole groups
        (nn.Conv3d(12, 12, (3, 3, 3), padding=1, groups=12), 4),  # depthwise
        (nn.Conv3d(4, 7, (1, 3, 3), padding="same", bias=False), 3),  # 'same' padding, no bias, odd C_out
    ],
)
def test_odd_shapes_hard_equals_soft(conv: nn.Module, frames: int, randomize_gates) -> None:
    spec = DynamicSpec(search_space=3 if conv.groups == 1 else 2)
    dyn = _wrap(conv, spec, frames=frames)
    randomize_gates(nn.Sequential(dyn), seed=5)
    x = torch.randn(6, conv.in_channels, frames, 9, 9)
    with dynamic_mode(dyn, "soft"):
        y_soft = dyn(x)
    with dynamic_mode(dyn, "hard"):
        y_hard = dyn(x)
    assert y_soft.shape == conv(x).shape
    assert (y_soft - y_hard).abs().max() <= 1e-4
    with force_policy(dyn, temporal=0, channel=0):
        assert (dyn(x) - conv(x)).abs().max() <= 1e-5


def test_cheap_zero_init_rebuilds_zeros_until_trained() -> None:
    conv = nn.Conv3d(8, 12, (1, 3, 3), padding=(0, 1, 1))
    x = torch.randn(2, 8, 4, 9, 9)
    for zero, expect_zero in ((True, True), (False, False)):
        dyn = _wrap(copy.deepcopy(conv), DynamicSpec(search_space=2, temporal=False, cheap_ops=CheapOpsSpec(zero_init=zero)), frames=4)
        with torch.no_grad(), force_policy(dyn, channel=1):
            y = dyn(x)
        full = conv(x)
        # channel alternative 1 computes the first 6 channels; the other 6 are Φ^c's rebuild
        assert torch.allclose(y[:, :6], full[:, :6], atol=1e-5)
        assert bool((y[:, 6:] == 0).all()) == expect_zero


def test_zero_gate_outputs_zeros_and_costs_only_the_gate() -> None:
    dyn = _wrap(nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1)), DynamicSpec(search_space=2), frames=4)
    dyn.gate.beta.data.fill_(-5.0)  # max(tanh(·), 0) = 0 for every alternative
    x = torch.randn(3, 4, 4, 6, 6)
    for mode in ("soft", "hard"):
        with dynamic_mode(dyn, mode):
            y = dyn(x)
        assert y.shape == (3, 8, 4, 6, 6) and torch.count_nonzero(y) == 0
        assert torch.all(dyn.last.clip_macs == dyn.gate.macs)
        assert torch.all(dyn.last.channel_choice == -1)
        # a channels-last input gets a channels-last output, as on every computing path
        y = dyn(x.contiguous(memory_format=torch.channels_last_3d))
        assert y.is_contiguous(memory_format=torch.channels_last_3d) and torch.count_nonzero(y) == 0


@pytest.mark.parametrize("normalize", [False, True])
def test_without_skips_a_zero_dimension_takes_its_cheapest_alternative(normalize: bool) -> None:
    """skip_layers=False: a clip whose gate zeroes one dimension computes that dimension's cheapest
    alternative (and what the other dimension chose), exactly as if pinned to it; live clips are unchanged."""
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1))
    spec = DynamicSpec(search_space=3, stability=StabilitySpec(normalize_weights=normalize))
    skip, floor = _wrap(copy.deepcopy(conv), spec, 4), _wrap(copy.deepcopy(conv), replace(spec, stability=replace(spec.stability, skip_layers=False)), 4)
    floor.load_state_dict(skip.state_dict())
    for m in (skip, floor):
        m.gate.beta.data[3:] = -5.0  # every channel alternative weighted 0 for every clip; time still gated
    x = torch.randn(3, 4, 4, 6, 6)
    for mode in ("soft", "hard"):
        with dynamic_mode(skip, mode), dynamic_mode(floor, mode):
            y_skip, y = skip(x), floor(x)
        assert torch.count_nonzero(y_skip) == 0 and torch.all(skip.last.channel_choice == -1)
        assert torch.all(floor.last.channel_choice == 2)
        assert torch.equal(floor.last.temporal_choice, skip.last.temporal_choice)
        assert torch.all(floor.last.clip_macs > floor.gate.macs)
        with dynamic_mode(floor, mode), force_policy(floor, channel=2):
            pinned = floor(x)
        assert torch.allclose(y, pinned, atol=1e-5)


def test_weights_stay_the_same_tensors_and_state_dict_keys(make_net) -> None:
    net = make_net("net3d")
    weights = {n: p for n, p in net.named_parameters()}
    static_state = copy.deepcopy(net.state_dict())
    dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    after = dict(net.named_parameters())
    for name, p in weights.items():
        assert after[name] is p, name
    missing, unexpected = net.load_state_dict(static_state, strict=False)
    assert not unexpected
    assert all(".gate." in k or "_ops." in k for k in missing)


def test_normalized_weights_sum_to_one_and_keep_choices_and_costs() -> None:
    """normalize_weights rescales each clip's weights to sum 1 per dimension: the same alternatives are
    in use (same choices, same costs), and a clip using one alternative gets exactly that alternative."""
    torch.manual_seed(0)
    conv = nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1))
    raw, norm = (_wrap(conv, DynamicSpec(search_space=3, stability=StabilitySpec(normalize_weights=n)), 4) for n in (False, True))
    with torch.no_grad():
        raw.gate.fc2.weight.normal_(0, 2.0)  # input-dependent gates: clips differ in what they use
    norm.load_state_dict(raw.state_dict())
    x = torch.randn(16, 8, 4, 8, 8)
    y_raw, y_norm = raw(x), norm(x)
    v = norm.last.gate
    sums = torch.stack([v[:, : norm.num_temporal].sum(1), v[:, norm.num_temporal:].sum(1)], 1)
    live = sums > 0
    assert torch.allclose(sums[live], torch.ones_like(sums[live]), atol=1e-5)
    assert torch.equal(raw.last.channel_choice, norm.last.channel_choice)
    assert torch.equal(raw.last.temporal_choice, norm.last.temporal_choice)
    assert torch.equal(raw.last.clip_macs, norm.last.clip_macs)
    assert not torch.allclose(y_raw, y_norm)
    with force_policy(raw, temporal=1, channel=2), force_policy(norm, temporal=1, channel=2):
        assert torch.equal(raw(x), norm(x))  # one-hot weights already sum to 1


def test_normalize_floor_divides_small_sums_by_the_floor() -> None:
    """normalize_floor: a clip whose weights along a dimension sum to less than the floor is divided by
    the floor, so its weights stay small instead of being blown up to sum 1 (and the gradient through the
    division stays bounded by 1/floor); larger sums are normalised as before; pinned policies are unchanged."""
    torch.manual_seed(0)
    conv = nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1))
    raw = _wrap(conv, DynamicSpec(search_space=2), 4)
    with torch.no_grad():
        raw.gate.fc2.weight.normal_(0, 2.0)
        raw.gate.beta.fill_(0.1)  # small weights: some clips' sums fall under the floor, others do not
    floored_spec = DynamicSpec(search_space=2, stability=StabilitySpec(normalize_weights=True, normalize_floor=0.5))
    floored = _wrap(conv, floored_spec, 4)
    floored.load_state_dict(raw.state_dict())
    x = torch.randn(32, 8, 4, 8, 8)
    raw(x)
    floored(x)
    v, w = raw.last.gate, floored.last.gate
    for dim in (slice(0, 2), slice(2, 4)):
        sums = v[:, dim].sum(1, keepdim=True)
        assert bool((sums < 0.5).any()) and bool((sums > 0.5).any())
        assert torch.allclose(w[:, dim], v[:, dim] / sums.clamp(min=0.5), atol=1e-6)
    with force_policy(floored, temporal=1, channel=1), force_policy(raw, temporal=1, channel=1):
        assert torch.equal(floored(x), raw(x))
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="normalize_floor must lie in"):
            StabilitySpec(normalize_weights=True, normalize_floor=bad)


def test_a_dynamic_conv_is_made_of_the_parts_it_receives() -> None:
    spec = DynamicSpec(search_space=2)
    built = DynamicConv.build(nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1)), spec, in_frames=4, name="c")
    conv = nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1))
    gate, ops_c, ops_t = built.gate, list(built.channel_ops), list(built.temporal_ops)
    made = DynamicConv(conv, spec, in_frames=4, gate=gate, channel_ops=ops_c, temporal_ops=ops_t, name="c")
    assert made.gate is gate and made.channel_ops[0] is ops_c[0] and made.temporal_ops[0] is ops_t[0]
    assert made.weight is conv.weight
    with torch.no_grad():
        gate.beta.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0]))  # the received gate is the one that decides
    made.eval()(torch.randn(2, 4, 4, 6, 6))
    assert made.last.channel_choice.tolist() == [0, 0] and made.last.temporal_choice.tolist() == [0, 0]


def test_parts_that_do_not_fit_the_spec_are_refused_naming_the_module() -> None:
    spec = DynamicSpec(search_space=2)
    conv = nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1))
    parts = DynamicConv.build(conv, spec, in_frames=4)
    other = DynamicConv.build(nn.Conv3d(4, 16, 1), DynamicSpec(search_space=3), in_frames=2)
    kw = dict(gate=parts.gate, channel_ops=list(parts.channel_ops), temporal_ops=list(parts.temporal_ops), name="blk")
    with pytest.raises(ValueError, match=r"module 'blk': the gate must have 2 temporal \+ 2 channel outputs"):
        DynamicConv(conv, spec, in_frames=4, **{**kw, "gate": other.gate})
    with pytest.raises(ValueError, match=r"module 'blk': channel cheap ops must map .* \[\(4, 4\)\]"):
        DynamicConv(conv, spec, in_frames=4, **{**kw, "channel_ops": list(other.channel_ops)})
    with pytest.raises(ValueError, match=r"module 'blk': temporal cheap ops must have factors \[2\]"):
        DynamicConv(conv, spec, in_frames=4, **{**kw, "temporal_ops": []})
    with pytest.raises(ValueError, match="a static spec takes no gate"):
        DynamicConv(conv, DynamicSpec(search_space=1), in_frames=4, gate=parts.gate, channel_ops=[], temporal_ops=[])


@pytest.mark.parametrize("kind", ["net3d", "net2d_folded"])
def test_hard_inference_follows_in_place_changes_of_cheap_ops_and_affine(kind: str, make_net, randomize_bn,
                                                                          randomize_gates) -> None:  # fmt: skip
    """Hard mode under no_grad keeps the gate-independent factors it writes with; a changed tensor renews them."""
    clip = (3, 8, 16, 16)
    net = dynamize(make_net(kind), DynamicSpec(search_space=2), clip_shape=clip)
    randomize_bn(net)
    randomize_gates(net, seed=5)
    x = torch.randn(4, 3, 8, 16, 16)
    policy = dict(temporal=[1, 1, 0, 1], channel=[1, 0, 1, 1])

    def hard_and_soft(fused: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), force_policy(fused, **policy):
            hard = fused(x)
        with force_policy(net, **policy), dynamic_mode(net, "soft"):
            return hard, net(x)

    fused = fuse_batchnorm(net, clip_shape=clip)
    hard, soft = hard_and_soft(fused)
    assert (hard - soft).abs().max() <= 1e-5 * soft.abs().max()
    with torch.no_grad():  # a fine-tune step: Φ^t and Φ^c's BatchNorm change in place, in both nets
        for model in (net, fused):
            for _, m in dynamic_layers(model):
                for op in m.temporal_ops:
                    op.bias.add_(0.2)
                for op in m.channel_ops:
                    op.bn.running_mean.add_(0.3)
    hard_after, soft_after = hard_and_soft(fused)
    assert not torch.allclose(soft_after, soft, atol=1e-3)
    assert (hard_after - soft_after).abs().max() <= 1e-5 * soft_after.abs().max()
    for _, m in dynamic_layers(fused):  # a new absorbed affine (new tensors) reaches the output too
        m.absorb_affine(torch.full((m.out_channels,), 1.5), torch.full((m.out_channels,), 0.1))
    with torch.no_grad(), force_policy(fused, **policy):
        assert not torch.allclose(fused(x), hard_after, atol=1e-3)


def test_hard_inference_after_training_steps_sees_the_new_running_statistics(make_net, randomize_gates) -> None:
    """Evaluating between training steps: the BatchNorms of the gates and of Φ^c learn their statistics in
    place (no version bump); hard mode must not keep the ones it folded before."""
    net = dynamize(make_net("net3d"), DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    randomize_gates(net, seed=7)
    x = torch.randn(6, 3, 8, 16, 16)
    for step in range(3):
        net.train()
        with torch.no_grad(), force_policy(net, temporal=[1, 0, 1, 1, 0, 1], channel=[1, 1, 0, 1, 0, 1]):
            net(x * (step + 1.0) + step)  # a training forward: every BatchNorm updates its running statistics
        net.eval()
        with torch.no_grad():
            hard = net(x)
        with dynamic_mode(net, "soft"):
            soft = net(x)
        assert (hard - soft).abs().max() <= 1e-5 * soft.abs().max(), step
