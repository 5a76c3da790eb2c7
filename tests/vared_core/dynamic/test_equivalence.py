"""Hard mode computes the network soft mode trains, on every path a forward can take.

One sweep crosses the engine's paths: soft vs hard × grad / no-grad × raw / normalised gate weights ×
BatchNorm fused / not × contiguous / channels-last × the policies a batch can carry (the gates' own mixed
choices, one uniform gate choice, a pinned uniform policy, a pinned mixed one, clips skipping layers) ×
S ∈ {2, 3} × temporal / channel / both, on every tiny backbone, with random gate and cheap-op parameters.
Every output must match the soft, unfused, contiguous forward with grad to 1e-5 of its largest value. The
sweep runs in float64, so float rounding through a deep net stays far below that and any miss is a wrong
formula; the directed tests below run in float32, the dtype of training and evaluation.

The branches of the hard path are watched by spies that call through to the real methods, and directed
tests make each branch run and match, so a refactor cannot route around one without a test noticing.
"""
from __future__ import annotations

import copy
import os
from collections import Counter
from contextlib import ExitStack, nullcontext

import pytest
import torch
from torch import nn

from vared_core.dynamic import (
    DynamicConv,
    DynamicSpec,
    StabilitySpec,
    dynamic_layers,
    dynamic_mode,
    force_policy,
    fuse_batchnorm,
)
from vared_core.models import build_model, list_models

from .conftest import randomize_bn, randomize_gates

RTOL = 1e-5
CLIP = (3, 8, 16, 16)
BATCH = 4
BACKBONES = sorted(n for n in list_models() if n.endswith("_tiny"))
DIMS = {"temporal": (True, False), "channel": (False, True), "both": (True, True)}
POLICIES = ("gates", "uniform", "pinned", "mixed", "skipping")
HARD_BRANCHES = ("_hard_direct", "_hard_assembled", "_hard_mixture", "_hard_mixed", "_skipped_output", "_fill_skipped")


@pytest.fixture
def hard_paths(monkeypatch) -> Counter:
    """Counts calls of each hard-path branch of every `DynamicConv` (the real methods still run)."""
    calls: Counter = Counter()
    for branch in HARD_BRANCHES:
        real = getattr(DynamicConv, branch)

        def spy(self, *args, _real=real, _branch=branch, **kwargs):
            calls[_branch] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(DynamicConv, branch, spy)
    return calls


def _relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.detach() - ref.detach()).abs().max() / ref.detach().abs().max().clamp(min=1e-12))


def _to_layout(model: nn.Module, layout: str) -> nn.Module:
    """Every 5D parameter and buffer in channels_last_3d and every 4D one in channels_last (``layout``
    "channels_last"), or all contiguous again, in place (a copy per layout cost a sixth of the sweep's time)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dim() in formats:
            fmt = formats[t.dim()] if layout == "channels_last" else torch.contiguous_format
            t.data = t.data.contiguous(memory_format=fmt)
    return model


def _dynamic_model(name: str, spec: DynamicSpec, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, num_classes=5, dynamic=spec, crop_size=CLIP[-1])
    randomize_bn(model, seed=seed)
    randomize_gates(model, seed=seed)
    return model.eval().double()


def _policy(model: nn.Module, policy: str, spec: DynamicSpec, g: torch.Generator, twins: list[nn.Module]):
    """(clips, pin) for one policy: ``pin(m)`` is a context pinning on ``m`` what ``policy`` pins. "skipping"
    lowers the gates' β of ``model`` and of each of its ``twins`` (its fused copy) alike."""
    if policy == "uniform":  # one clip repeated: the gates choose the same (raw) weights for every clip
        x = torch.randn(1, *CLIP, generator=g, dtype=torch.float64)
        return x.expand(4, *CLIP).contiguous(), lambda m: nullcontext()
    x = torch.randn(BATCH, *CLIP, generator=g, dtype=torch.float64)
    s = spec.search_space
    temporal = lambda v: v if spec.temporal else None  # noqa: E731 - a dimension that is not gated takes no pin
    channel = lambda v: v if spec.channel else None  # noqa: E731
    if policy == "pinned":
        return x, lambda m: force_policy(m, temporal=temporal(s - 1), channel=channel(s - 1))
    if policy == "mixed":
        return x, lambda m: force_policy(m, temporal=temporal([i % s for i in range(BATCH)]),
                                         channel=channel([(i // 2) % s for i in range(BATCH)]))
    if policy == "skipping":  # gates pushed toward zero until whole dimensions switch off for some clips
        for _ in range(12):
            with torch.no_grad():
                model(x)
            if _some_clips_skip(_choices(model)):
                break
            for net in (model, *twins):
                for _, m in dynamic_layers(net):
                    m.gate.beta.data -= 0.25
    return x, lambda m: nullcontext()


def _choices(model: nn.Module) -> list[tuple[list[int], list[int]]]:
    return [(m.last.channel_choice.tolist(), m.last.temporal_choice.tolist()) for _, m in dynamic_layers(model)]


def _some_clips_skip(choices: list[tuple[list[int], list[int]]]) -> bool:
    """Whether some layer has clips that skip it beside clips that do not."""
    skips = [sum(ci < 0 or ti < 0 for ci, ti in zip(c, t)) for c, t in choices]
    return any(0 < k < len(c) for k, (c, _) in zip(skips, choices))


def _check_policy_shape(policy: str, choices: list[tuple[list[int], list[int]]]) -> None:
    """The batch really carries the policy named (the sweep would prove little otherwise)."""
    per_layer = [set(zip(c, t)) for c, t in choices]
    if policy in ("uniform", "pinned"):
        assert all(len(p) == 1 for p in per_layer)
    elif policy == "mixed":
        assert all(len(p) > 1 for p in per_layer)
    elif policy == "skipping":
        assert _some_clips_skip(choices), "no layer where some clips skip and others do not"
    else:
        assert any(len(p) > 1 for p in per_layer), "the random gates chose the same policy for every clip"


def _forward(model: nn.Module, x: torch.Tensor, mode: str, grad: bool, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with dynamic_mode(model, mode), torch.set_grad_enabled(grad):
        return model(x)


def _sweep(name: str, s: int, dims: str, normalize: bool, hard_paths: Counter) -> None:
    temporal, channel = DIMS[dims]
    spec = DynamicSpec(search_space=s, temporal=temporal, channel=channel, stability=StabilitySpec(normalize_weights=normalize))
    # one random model and its fused copy serve every policy (building and fusing were a third of the time);
    # each policy draws its own clips, and "skipping", which lowers the gates' β in both, runs last
    model = _dynamic_model(name, spec, seed=len(dims) + s)
    variants = {"plain": model, "fused": fuse_batchnorm(model, CLIP)}
    errors = {}
    for p_index, policy in enumerate(POLICIES):
        x, pin = _policy(model, policy, spec, torch.Generator().manual_seed(100 + p_index), [variants["fused"]])
        with ExitStack() as stack:
            for m in variants.values():
                stack.enter_context(pin(m))
            ref = _forward(model, x, "soft", True, "contiguous")
            ref_choices = _choices(model)
            _check_policy_shape(policy, ref_choices)
            for layout in ("contiguous", "channels_last"):
                for key, m in variants.items():
                    _to_layout(m, layout)
                    for mode in ("soft", "hard"):
                        for grad in (True, False):
                            if (layout, key, mode, grad) == ("contiguous", "plain", "soft", True):
                                continue  # the reference itself
                            y = _forward(m, x, mode, grad, layout)
                            errors[(policy, key, layout, mode, grad)] = _relative_error(y, ref)
                            assert _choices(m) == ref_choices, (policy, key, layout, mode, grad)
            for m in variants.values():
                _to_layout(m, "contiguous")
    bad = {k: e for k, e in errors.items() if e > RTOL}
    assert not bad, f"outputs differ from soft mode beyond {RTOL}: {bad}"
    assert len(errors) == len(POLICIES) * 15
    assert hard_paths["_hard_direct"] + hard_paths["_hard_assembled"] + hard_paths["_hard_mixture"] > 0


# The per-backbone factors (S × dims × weights) in a covering design: each of their 12 combinations runs on one
# backbone (one of them on two), and each backbone runs 3 of them, so that every backbone meets every dimension, both S and
# both weightings, and every pair of values of any two factors (backbone included) meets. The forward's own
# factors (policy × BN × layout × mode × grad) are crossed in full inside each case. VARED_EXHAUSTIVE=1 runs all
# 48 cases (four times the covering's time: about 9 min on 2 AMD EPYC cores).
_DESIGN = {
    "i3d_inception_v2_tiny": [(2, "temporal", True), (2, "channel", False), (3, "both", False)],
    # and on the cheapest backbone both dimensions with raw weights once more: the case that shows the bias
    # scaling of issue 21 (hard mode under no_grad off by V_c), which normalised weights hide
    "r2plus1d_18_tiny": [(3, "temporal", False), (3, "channel", True), (2, "both", True), (3, "both", False)],
    "tsn_resnet50_tiny": [(2, "temporal", False), (3, "channel", False), (3, "both", True)],
    "x3d_m_tiny": [(3, "temporal", True), (2, "channel", True), (2, "both", False)],
}
assert sorted(_DESIGN) == BACKBONES
assert {r for rows in _DESIGN.values() for r in rows} == {(s, d, norm) for s in (2, 3) for d in DIMS for norm in (False, True)}
if os.environ.get("VARED_EXHAUSTIVE") == "1":
    CASES = [(n, s, d, norm) for n in BACKBONES for s in (2, 3) for d in DIMS for norm in (False, True)]
else:
    CASES = [(n, *row) for n, rows in _DESIGN.items() for row in rows]
# the fast lane: the cheapest backbone's cases that together reach S 2 and 3, every dimension and both weightings,
# plus TSN's cheapest case (the only backbone whose dynamic convs are Conv2d over folded frames)
FAST = {("r2plus1d_18_tiny", 3, "temporal", False), ("r2plus1d_18_tiny", 3, "both", False),
        ("r2plus1d_18_tiny", 3, "channel", True), ("tsn_resnet50_tiny", 2, "temporal", False)}
assert FAST <= set(CASES)


@pytest.mark.parametrize(
    "name, s, dims, normalize",
    [pytest.param(*c, marks=() if c in FAST else pytest.mark.slow) for c in CASES],
    ids=[f"{n}-S{s}-{d}-{'norm' if norm else 'raw'}" for n, s, d, norm in CASES],
)
def test_every_path_equals_soft_mode(name: str, s: int, dims: str, normalize: bool, hard_paths: Counter) -> None:
    _sweep(name, s, dims, normalize, hard_paths)


# ------------------------------------------------------------------ each hard branch, directed
def _one_conv(spec: DynamicSpec, beta: list[float], reads_mean: list[float] | None = None) -> DynamicConv:
    """A dynamic 1×3×3 conv (8 → 12 channels, 6 frames) with random cheap ops whose gate outputs
    φ(reads_mean · tanh(m) + β), m the clip's mean input: the same weights for every clip when
    ``reads_mean`` is None."""
    torch.manual_seed(0)
    conv = DynamicConv.build(nn.Conv3d(8, 12, (1, 3, 3), padding=(0, 1, 1)), spec, in_frames=6, name="conv").eval()
    gate = conv.gate
    with torch.no_grad():
        gate.fc1.weight.zero_()
        gate.fc1.bias.zero_()
        gate.fc1.weight[0] = 1 / gate.fc1.in_features  # hidden unit 0 = the clip's mean; BN starts as identity
        gate.fc2.weight.zero_()
        if reads_mean is not None:
            gate.fc2.weight[:, 0] = torch.tensor(reads_mean)
        gate.beta.copy_(torch.tensor(beta))
        for op in conv.temporal_ops:
            op.weight.normal_(1, 0.3)
            op.bias.normal_()
        for op in conv.channel_ops:
            op.bn.running_mean.normal_(0, 0.2)
            op.bn.bias.normal_(0, 0.5)
    return conv


def _soft_and_hard(conv: DynamicConv, x: torch.Tensor, calls: Counter) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft output with grad, then hard without; ``calls`` counts the hard forward's branches only."""
    with dynamic_mode(conv, "soft"):
        ref = conv(x)
    calls.clear()
    with torch.no_grad(), dynamic_mode(conv, "hard"):
        return ref, conv(x)


def test_issue_reproduction_no_grad_hard_equals_soft() -> None:
    """The report's network: raw gate weights, random gates and cheap ops, hard mode under no_grad."""
    from vared_core.dynamic import dynamize

    base = nn.Sequential(nn.Conv3d(3, 16, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(16), nn.ReLU(),
                         nn.Conv3d(16, 32, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(32, 5)).eval()
    for seed in range(4):
        torch.manual_seed(seed)
        g = dynamize(copy.deepcopy(base), DynamicSpec(search_space=2), clip_shape=(3, 8, 32, 32))
        with torch.no_grad():
            for n, p in g.named_parameters():
                if any(k in n for k in ("gate", "channel_ops", "temporal_ops")):
                    p.add_(torch.randn_like(p) * 0.5)
        g.eval()
        x = torch.randn(16, 3, 8, 32, 32)
        with dynamic_mode(g, "soft"):
            ys = g(x)
        with torch.no_grad(), dynamic_mode(g, "hard"):
            yh = g(x)
        assert _relative_error(yh, ys) <= RTOL


@pytest.mark.parametrize("fused", [False, True])
def test_direct_branch_scales_temporal_bias_by_temporal_weight_only(fused: bool, hard_paths: Counter) -> None:
    # temporal weights [0, φ(0.8)], channel weights [0, φ(0.6)]: one reduced alternative each, both < 1
    conv = _one_conv(DynamicSpec(search_space=2), [-1.0, 0.8, -1.0, 0.6])
    if fused:
        conv.absorb_affine(torch.rand(12) + 0.5, torch.randn(12))
    ref, y = _soft_and_hard(conv, torch.randn(3, 8, 6, 10, 10), hard_paths)
    assert hard_paths["_hard_direct"] == 1 and hard_paths["_hard_assembled"] == 0
    assert conv.last.channel_choice.tolist() == [1, 1, 1] and conv.last.temporal_choice.tolist() == [1, 1, 1]
    assert _relative_error(y, ref) <= RTOL


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("s, beta", [(2, [0.8, 0.8, 0.5, 0.6]), (3, [0.8, 0.3, 0.2, 0.9, 0.4, 0.3]),
                                     (3, [-1.0, 0.3, 0.2, -1.0, 0.4, 0.3])])
def test_several_alternatives_mix_without_grad_and_assemble_with_it(s: int, beta: list, fused: bool,
                                                                    hard_paths: Counter) -> None:
    # every alternative in use; with S = 3 also the two reduced ones only (full ones closed): the conv then
    # computes half the channels at every other frame, and the mixture rebuilds from that
    conv = _one_conv(DynamicSpec(search_space=s), beta)
    if fused:
        conv.absorb_affine(torch.rand(12) + 0.5, torch.randn(12))
    x = torch.randn(3, 8, 6, 10, 10)
    ref, without_grad = _soft_and_hard(conv, x, hard_paths)
    assert hard_paths["_hard_mixture"] == 1 and hard_paths["_hard_assembled"] + hard_paths["_hard_direct"] == 0
    with dynamic_mode(conv, "hard"):
        with_grad = conv(x)
    assert with_grad.requires_grad and hard_paths["_hard_assembled"] == 1
    assert _relative_error(with_grad, ref) <= RTOL and _relative_error(without_grad, ref) <= RTOL


def test_mixed_branch_groups_clips_and_fills_skipped_ones(hard_paths: Counter) -> None:
    # gate outputs [t0, t1, c0, c1] from h = tanh(clip mean):
    #   t0 = φ(4h - 0.2), t1 = φ(-4h - 0.2), c0 = φ(-4h + 1), c1 = φ(4h)
    conv = _one_conv(DynamicSpec(search_space=2), [-0.2, -0.2, 1.0, 0.0], reads_mean=[4.0, -4.0, -4.0, 4.0])
    conv.absorb_affine(torch.rand(12) + 0.5, torch.randn(12))
    means = torch.tensor([1.0, -1.0, 0.1, 0.0, 1.0])  # t0·c1, t1·c0 (direct), t0·c0+c1 (mixture), skip, t0·c1
    x = means.view(-1, 1, 1, 1, 1) + 0.1 * torch.randn(5, 8, 6, 10, 10)
    ref, y = _soft_and_hard(conv, x, hard_paths)
    choices = list(zip(conv.last.channel_choice.tolist(), conv.last.temporal_choice.tolist()))
    assert choices == [(1, 0), (0, 1), (0, 0), (0, -1), (1, 0)]  # clip 3: no temporal alternative
    assert hard_paths["_hard_mixed"] == 1 and hard_paths["_fill_skipped"] == 1
    assert hard_paths["_hard_direct"] == 2 and hard_paths["_hard_mixture"] == 1 and hard_paths["_hard_assembled"] == 0
    assert _relative_error(y, ref) <= RTOL
    assert torch.equal(y[3], conv.post_shift.view(12, 1, 1, 1).expand_as(y[3]))  # a skip outputs the shift


def test_skipped_branch_when_every_clip_skips(hard_paths: Counter) -> None:
    conv = _one_conv(DynamicSpec(search_space=2), [-1.0, -1.0, 0.5, 0.6])  # temporal weights all zero
    conv.absorb_affine(torch.ones(12), torch.randn(12))
    ref, y = _soft_and_hard(conv, torch.randn(2, 8, 6, 10, 10), hard_paths)
    assert hard_paths["_skipped_output"] == 1
    assert hard_paths["_hard_direct"] + hard_paths["_hard_assembled"] + hard_paths["_hard_mixture"] == 0
    assert _relative_error(y, ref) <= RTOL


def test_mixture_when_two_channel_alternatives_round_to_the_same_count(hard_paths: Counter) -> None:
    # 2 output channels with S = 3 compute 2, 1 and 1 channels: alternatives 1 and 2 share a count
    torch.manual_seed(0)
    conv = DynamicConv.build(nn.Conv3d(4, 2, (1, 3, 3), padding=(0, 1, 1)), DynamicSpec(search_space=3),
                             in_frames=4, name="conv").eval()
    assert conv.channel_counts == [2, 1, 1]
    with torch.no_grad():
        conv.gate.beta.copy_(torch.tensor([-1.0, 0.4, 0.3, -1.0, 0.5, 0.7]))  # t1, t2 and c1, c2 in use
        for op in conv.channel_ops:
            op.bn.running_mean.normal_(0, 0.2)
            op.bn.bias.normal_(0, 0.5)
    conv.absorb_affine(torch.rand(2) + 0.5, torch.randn(2))
    ref, y = _soft_and_hard(conv, torch.randn(3, 4, 4, 6, 6), hard_paths)
    assert hard_paths["_hard_mixture"] == 1
    assert _relative_error(y, ref) <= RTOL


def test_mixture_follows_in_place_changes_of_the_cheap_ops(hard_paths: Counter) -> None:
    """The mixture keeps Φ^c's folded BatchNorm between forwards; a fine-tune step changing it, or Φ^t, in place
    must reach the next output."""
    conv = _one_conv(DynamicSpec(search_space=2), [0.8, 0.8, 0.5, 0.6])  # every alternative in use
    conv.absorb_affine(torch.rand(12) + 0.5, torch.randn(12))
    x = torch.randn(2, 8, 6, 10, 10)
    ref, y = _soft_and_hard(conv, x, hard_paths)
    assert hard_paths["_hard_mixture"] == 1 and _relative_error(y, ref) <= RTOL
    with torch.no_grad():
        conv.channel_ops[0].bn.running_mean.add_(0.3)
        conv.temporal_ops[0].bias.add_(0.2)
    ref_after, y_after = _soft_and_hard(conv, x, hard_paths)
    assert not torch.allclose(ref_after, ref, atol=1e-3)
    assert hard_paths["_hard_mixture"] == 1 and _relative_error(y_after, ref_after) <= RTOL
