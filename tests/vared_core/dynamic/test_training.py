"""Soft-mode gradients and the efficiency loss actually steering the gates."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from vared_core.dynamic import DynamicSpec, StabilitySpec, clip_gflops, dynamic_layers, dynamize, efficiency_loss


def test_gradients_reach_gate_cheap_ops_and_conv_in_soft_mode(make_net) -> None:
    net = dynamize(make_net("net3d").train(), DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    x, y = torch.randn(4, 3, 8, 16, 16), torch.tensor([0, 1, 2, 3])
    logits = net(x)
    loss = F.cross_entropy(logits, y) + 0.8 * efficiency_loss(net, logits, y)
    loss.backward()
    for name, layer in dynamic_layers(net):
        params = {
            "conv weight": layer.weight,
            "gate fc1": layer.gate.fc1.weight,
            "gate fc2": layer.gate.fc2.weight,
            "gate beta": layer.gate.beta,
            "channel cheap op": layer.channel_ops[0].weight,
            "temporal cheap op": layer.temporal_ops[0].weight,
        }
        for what, p in params.items():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches the {what}"


def test_detach_gate_input_stops_gate_gradients_at_the_gate(make_net) -> None:
    """detach_gate_input: a loss that depends only on the gates (the efficiency loss) still trains every
    gate but sends nothing into the network before them; without it, it does. The conv path is untouched."""
    grads = {}
    for detach in (False, True):
        torch.manual_seed(0)
        spec = DynamicSpec(search_space=2, stability=StabilitySpec(detach_gate_input=detach))
        net = dynamize(make_net("net3d").train(), spec, clip_shape=(3, 8, 16, 16))
        x = torch.randn(4, 3, 8, 16, 16)
        logits = net(x)
        efficiency_loss(net, logits, logits.argmax(1)).backward()  # every clip right: μ₀ = 1 for all
        layers = [m for _, m in dynamic_layers(net)]
        assert all(m.gate.fc1.weight.grad.abs().sum() > 0 for m in layers), f"detach={detach}: a gate got no gradient"
        grads[detach] = [m.weight.grad for m in layers]
    assert all(g is not None and g.abs().sum() > 0 for g in grads[False][:-1])  # via the later gates' inputs
    assert all(g is None or g.abs().sum() == 0 for g in grads[True])


def test_efficiency_loss_value_matches_eq_3_6(make_net) -> None:
    net = dynamize(make_net("net3d").eval(), DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    x, y = torch.randn(3, 3, 8, 16, 16), torch.zeros(3, dtype=torch.long)
    logits = net(x)
    layers = [m for _, m in dynamic_layers(net)]
    full = torch.tensor([m.last.full_macs for m in layers])
    frac = torch.stack([m.last.cost_fraction.detach() for m in layers], 1)
    correct = (logits.argmax(1) == y).float()
    expected = ((correct * (frac * full / full.sum()).sum(1)) ** 2).mean()
    assert torch.allclose(efficiency_loss(net, logits, y), expected)
    # every clip wrong → μ₀ = 0 → no efficiency pressure
    wrong = (logits.argmax(1) + 1) % logits.shape[1]
    assert efficiency_loss(net, logits, wrong).item() == 0.0


def _train(net, x, y, lambda_e: float, steps: int = 60) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(steps):
        logits = net(x)
        loss = F.cross_entropy(logits, y) + lambda_e * efficiency_loss(net, logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _eval_gflops(net, x) -> float:
    net.eval()
    with torch.no_grad():
        net(x)
    return clip_gflops(net).mean().item()


@pytest.mark.slow
def test_efficiency_loss_lowers_gflops_and_zero_lambda_does_not(make_net) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 8, 16, 16), torch.randint(0, 4, (16,))
    base = dynamize(make_net("net3d"), DynamicSpec(search_space=2), clip_shape=(3, 8, 16, 16))
    start = _eval_gflops(base, x)
    with_loss, without = copy.deepcopy(base), copy.deepcopy(base)
    _train(with_loss, x, y, lambda_e=4.0)
    _train(without, x, y, lambda_e=0.0)
    g_with, g_without = _eval_gflops(with_loss, x), _eval_gflops(without, x)
    assert g_with < 0.8 * start, (start, g_with)
    # without the loss the gates drift with the task alone (a few percent either way), not steadily down
    assert g_without > 0.9 * start, (start, g_without)
    assert g_with < 0.85 * g_without, (g_with, g_without)
