"""Pinned and randomly drawn policies: `random_policy` pins each layer and clip independently, and only
while its block runs."""
from __future__ import annotations

import pytest
import torch

from vared_core.dynamic import DynamicSpec, clip_gflops, dynamic_layers, dynamize, random_policy


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
