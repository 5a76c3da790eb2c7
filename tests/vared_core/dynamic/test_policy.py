"""Pinned and randomly drawn policies: `random_policy` pins each layer and clip independently, and only
while its block runs."""
from __future__ import annotations

import pytest
import torch

from vared_core.dynamic import (DynamicSpec, clip_gflops, dynamic_layers, dynamize, force_layer_policies,
                                force_policy, random_policy)


def test_random_policy_draws_per_layer_and_clip_and_restores(make_net) -> None:
    torch.manual_seed(0)
    net = dynamize(make_net("net3d"), DynamicSpec(search_space=3), clip_shape=(3, 4, 16, 16)).eval()
    layers = [m for _, m in dynamic_layers(net)]
    x = torch.randn(64, 3, 4, 16, 16)
    with random_policy(net, 64, generator=torch.Generator().manual_seed(1)):
        net(x)
        drawn = [(m.forced_temporal.clone(), m.forced_channel.clone()) for m in layers]
        costs = clip_gflops(net)
    for m, (t, c) in zip(layers, drawn):
        assert t.shape == c.shape == (64,)
        assert set(t.tolist()) == set(range(m.num_temporal)) and set(c.tolist()) == set(range(m.num_channel))
        assert m.last.temporal_choice.tolist() == t.tolist() and m.last.channel_choice.tolist() == c.tolist()
        assert m.forced_temporal is None and m.forced_channel is None  # released after the block
    assert not torch.equal(drawn[0][0], drawn[1][0])  # layers draw independently
    assert len(set(costs.tolist())) > 10  # clips differ in cost
    again = [(m.forced_temporal, m.forced_channel) for m in layers]
    with random_policy(net, 64, generator=torch.Generator().manual_seed(1)):
        same = [(m.forced_temporal.clone(), m.forced_channel.clone()) for m in layers]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(drawn, same))
    assert again == [(None, None)] * len(layers)


def test_random_policy_needs_a_dynamic_model(make_net) -> None:
    with pytest.raises(ValueError, match="no dynamic layers"):
        with random_policy(make_net("net3d"), 2):
            pass


def test_force_layer_policies_pins_each_named_layer_its_own_choice_and_leaves_the_rest_to_the_gates(make_net) -> None:
    net = dynamize(make_net("net3d"), DynamicSpec(search_space=2), clip_shape=(3, 4, 16, 16)).eval()
    (first, a), *middle, (last, z) = dynamic_layers(net)
    x = torch.randn(3, 3, 4, 16, 16)
    pins = force_layer_policies(net, {first: (1, 0), last: (0, [0, 1, 1])})  # checked once, entered twice
    with pins:
        assert a.forced_temporal == 1
    assert a.forced_temporal is None
    with torch.no_grad(), pins:
        net(x)
        costs = clip_gflops(net)
        assert a.forced_temporal == 1 and a.forced_channel == 0 and z.forced_temporal == 0
        assert all(m.forced_temporal is None and m.forced_channel is None for _, m in middle)  # gated
    assert a.last.temporal_choice.tolist() == [1, 1, 1] and z.last.channel_choice.tolist() == [0, 1, 1]
    assert costs[0] > costs[1] and torch.isclose(costs[1], costs[2])  # only the last layer's channels differ
    assert all((m.forced_temporal, m.forced_channel) == (None, None) for _, m in dynamic_layers(net))
    # every layer pinned to one policy is what force_policy does
    with torch.no_grad():
        with force_layer_policies(net, {n: (1, 1) for n, _ in dynamic_layers(net)}):
            per_layer = net(x)
        with force_policy(net, temporal=1, channel=1):
            uniform = net(x)
    assert torch.equal(per_layer, uniform)


def test_force_layer_policies_refuses_an_unknown_layer_or_alternative_naming_it_and_pins_nothing(make_net) -> None:
    net = dynamize(make_net("net3d"), DynamicSpec(search_space=2), clip_shape=(3, 4, 16, 16)).eval()
    first = dynamic_layers(net)[0][0]
    with pytest.raises(ValueError, match=r"\['nope'\] are not dynamic layers"):
        with force_layer_policies(net, {first: (1, 1), "nope": (0, 0)}):
            pass
    with pytest.raises(ValueError, match=f"force_layer_policies: channel alternative 2 is outside 0..1 at module '{first}'"):
        with force_layer_policies(net, {first: (0, 2)}):
            pass
    assert all((m.forced_temporal, m.forced_channel) == (None, None) for _, m in dynamic_layers(net))
