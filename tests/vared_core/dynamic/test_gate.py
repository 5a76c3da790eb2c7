"""SoftModulationGate (eq. 3.4): output shape and range, β initialisation, what it reads, gradients, size."""
from __future__ import annotations

import math
import re

import pytest
import torch

from vared_core.dynamic import SoftModulationGate


def _gate(c: int = 6, t: int = 4, *, hidden: int = 8, st: int = 2, sc: int = 2, **kw) -> SoftModulationGate:
    return SoftModulationGate(c, t, hidden=hidden, num_temporal=st, num_channel=sc, **kw).eval()


def _reads_one_mean(gate: SoftModulationGate, channel: int, frame: int) -> None:
    """Wire the gate so every output is φ(tanh(BN(m))), m the mean of ``x[:, channel, frame]``."""
    with torch.no_grad():
        gate.fc1.weight.zero_()
        gate.fc1.bias.zero_()
        gate.fc1.weight[0, channel * gate.in_frames + frame] = 1.0  # G's vector is C-major: index c·T + t
        gate.fc2.weight.zero_()
        gate.fc2.weight[:, 0] = 1.0
        gate.beta.zero_()


@pytest.mark.parametrize(("st", "sc"), [(2, 2), (3, 3), (0, 2), (3, 0)])
def test_output_is_one_weight_per_alternative_in_0_1(st: int, sc: int) -> None:
    gate = _gate(st=st, sc=sc)
    with torch.no_grad():
        gate.fc2.weight.normal_(0, 3.0)  # pre-activations of both signs
        gate.beta.zero_()
    v = gate(torch.randn(64, 6, 4, 5, 5))
    assert v.shape == (64, st + sc)
    assert bool((v >= 0).all()) and bool((v < 1).all())
    assert bool((v == 0).any()) and bool((v > 0).any())  # max(tanh, 0): exact zeros, which hard mode skips


def test_a_negative_pre_activation_gives_an_exact_zero() -> None:
    gate = _gate()
    with torch.no_grad():
        gate.beta.copy_(torch.tensor([-3.0, 0.4, -3.0, 0.4]))
    v = gate(torch.randn(5, 6, 4, 3, 3))
    assert torch.count_nonzero(v[:, [0, 2]]) == 0
    assert bool((v[:, [1, 3]] > 0).all())


@pytest.mark.parametrize(
    ("st", "sc", "beta"),
    [
        (2, 2, [1.0, 0.5, 1.0, 0.5]),  # V_t first, then V_c; alternative 0 of each is the full one
        (3, 3, [1.0, 0.5, 0.5, 1.0, 0.5, 0.5]),
        (0, 3, [1.0, 0.5, 0.5]),  # time not gated
        (2, 0, [1.0, 0.5]),  # channels not gated
    ],
)
def test_beta_starts_at_1_for_the_full_alternative_and_0_5_for_reduced_ones(st: int, sc: int, beta: list) -> None:
    assert _gate(st=st, sc=sc).beta.tolist() == beta


def test_beta_initial_values_can_be_chosen() -> None:
    gate = _gate(st=3, sc=2, bias_full=2.0, bias_reduced=-0.25)
    assert gate.beta.tolist() == [2.0, -0.25, -0.25, 2.0, -0.25]


def test_a_new_gate_starts_near_its_bias_for_every_clip() -> None:
    """fc2 starts near zero, so each weight begins close to max(tanh(β), 0) whatever the clip."""
    v = _gate(st=2, sc=2)(torch.randn(16, 6, 4, 5, 5) * 3)
    start = torch.tensor([math.tanh(1.0), math.tanh(0.5)] * 2)
    assert (v - start).abs().max() < 0.1  # well inside the 0.76 vs 0.46 gap between full and reduced


@pytest.mark.parametrize("channels_last", [False, True])
def test_it_reads_the_mean_of_each_channel_in_each_frame(channels_last: bool) -> None:
    """G pools over H and W only: output = φ(tanh(BN(mean of x[:, c, t]))) for the wired (c, t)."""
    gate = _gate(c=6, t=4)
    _reads_one_mean(gate, channel=4, frame=2)
    x = torch.randn(3, 6, 4, 5, 5) + torch.tensor([1.0, -1.0, 0.3]).view(3, 1, 1, 1, 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    m = x[:, 4, 2].mean(dim=(1, 2))
    expected = torch.relu(torch.tanh(torch.tanh(m / math.sqrt(1 + gate.bn.eps))))  # BN: fresh running stats
    v = gate(x)
    assert torch.allclose(v, expected[:, None].expand(3, 4), atol=1e-6)
    assert bool((v[1] == 0).all()) and bool((v[0] > 0).all())  # a negative mean closes the gate


def test_only_per_frame_channel_means_matter() -> None:
    gate = _gate()
    with torch.no_grad():
        gate.fc1.weight.normal_(0, 1.0)
        gate.fc2.weight.normal_(0, 1.0)
    x = torch.randn(2, 6, 4, 5, 5)
    spatially_shuffled = x.flatten(3)[..., torch.randperm(25)].view_as(x)
    assert torch.allclose(gate(spatially_shuffled), gate(x), atol=1e-6)
    assert torch.allclose(gate(x.transpose(3, 4)), gate(x), atol=1e-6)  # a strided view reads the same
    frames_swapped = x[:, :, [1, 0, 2, 3]]
    assert not torch.allclose(gate(frames_swapped), gate(x), atol=1e-4)  # time is kept, not averaged


def test_in_eval_each_clip_gets_its_own_weights() -> None:
    gate = _gate()
    with torch.no_grad():
        gate.fc2.weight.normal_(0, 1.0)
    x = torch.randn(4, 6, 4, 5, 5)
    together = gate(x)
    alone = torch.cat([gate(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert not torch.allclose(together[0], together[1], atol=1e-3)


@pytest.mark.parametrize("shape", [(2, 5, 4, 3, 3), (2, 6, 8, 3, 3)])
def test_a_wrong_input_shape_names_the_expected_one(shape: tuple) -> None:
    with pytest.raises(ValueError, match=r"expects \(B, 6, 4, H, W\) inputs, got " + re.escape(str(shape))):
        _gate(c=6, t=4)(torch.randn(shape))


@pytest.mark.parametrize("detach", [False, True])
def test_gradients_reach_every_gate_parameter_and_the_input_unless_detached(detach: bool) -> None:
    gate = _gate(detach_input=detach).train()
    x = torch.randn(4, 6, 4, 5, 5, requires_grad=True)
    (gate(x) * torch.randn(4, 4)).sum().backward()
    for name, p in gate.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert (x.grad is None) == detach
    if not detach:
        assert x.grad.abs().sum() > 0


def test_a_closed_alternative_passes_no_gradient_to_its_bias() -> None:
    """Why reduced alternatives start at β > 0: a weight clipped to 0 by max(tanh, 0) gets no gradient."""
    gate = _gate()
    with torch.no_grad():
        gate.beta.copy_(torch.tensor([1.0, -2.0, 1.0, 0.5]))
    gate(torch.randn(4, 6, 4, 5, 5)).sum().backward()
    assert gate.beta.grad[1] == 0
    assert bool((gate.beta.grad[[0, 2, 3]] != 0).all())


@pytest.mark.parametrize("hidden", [4, 16, 64])
def test_parameters_grow_linearly_with_the_hidden_width(hidden: int) -> None:
    c, t, s = 6, 4, 5
    gate = _gate(c=c, t=t, hidden=hidden, st=2, sc=3)
    per_hidden_unit = c * t + 1 + 2 + s  # fc1 row and bias, BN scale and shift, fc2 column
    assert sum(p.numel() for p in gate.parameters()) == hidden * per_hidden_unit + s  # + β


@pytest.mark.parametrize("hidden", [4, 32])
def test_macs_are_the_two_linear_layers(hidden: int) -> None:
    """C_in·T → D_h, then D_h → S_t + S_c; BN, tanh and β are not multiply-adds."""
    assert _gate(c=6, t=4, hidden=hidden, st=3, sc=2).macs == 6 * 4 * hidden + hidden * 5


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_inference_folds_bn_into_fc1_and_follows_parameter_changes(memory_format: torch.memory_format) -> None:
    gate = _gate(hidden=8)
    with torch.no_grad():
        gate.bn.running_mean.normal_(0, 0.5)
        gate.bn.running_var.uniform_(0.5, 2.0)
        gate.fc2.weight.normal_(0, 1.0)
    x = torch.randn(5, 6, 4, 7, 7).contiguous(memory_format=memory_format)
    for step in range(3):
        with torch.enable_grad():
            reference = gate(x)  # the layers one by one, as in training code
        with torch.no_grad():
            folded = gate(x)  # BN folded into fc1 (cached)
        assert torch.allclose(folded, reference, atol=1e-6)
        with torch.no_grad():  # a fine-tune step changes the tensors in place: the fold must follow
            gate.bn.running_var.mul_(3.0)
            gate.fc1.weight.add_(0.5) if step == 0 else gate.fc2.weight.mul_(-1.0)
            gate.beta.add_(0.25)
        if step == 1:  # new storage, as `.to()` or an assignment to `.data` gives
            gate.fc1.weight.data = gate.fc1.weight.data * 2.0
    with torch.no_grad():
        assert not torch.allclose(gate(x), folded, atol=1e-3)
