"""dynamize: selection, bad specs named by module path, static S = 1."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vared_core.dynamic import DynamicConv, DynamicSpec, dynamic_layers, dynamize, force_policy


@pytest.mark.parametrize("s", [0, -1])
def test_search_space_below_one_is_rejected(s: int) -> None:
    with pytest.raises(ValueError, match="search_space must be an integer >= 1"):
        DynamicSpec(search_space=s)


def test_unsliceable_groups_name_the_module() -> None:
    net = nn.Sequential(nn.Conv3d(3, 6, 1), nn.Sequential(nn.Conv3d(6, 6, 3, padding=1, groups=3)))
    with pytest.raises(ValueError, match=r"module '1\.0' has groups=3"):
        dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))
    assert not dynamic_layers(net), "a failed dynamize must leave the model unchanged"
    # temporal-only needs no channel slicing: accepted
    dynamize(copy.deepcopy(net), DynamicSpec(search_space=2, channel=False), clip_shape=(3, 4, 8, 8))


def test_non_conv_module_is_named() -> None:
    net = nn.Sequential(nn.Conv3d(3, 8, 1), nn.ReLU(), nn.Conv3d(8, 8, 1))
    with pytest.raises(ValueError, match=r"module '1' is ReLU, not nn.Conv2d or nn.Conv3d"):
        dynamize(net, DynamicSpec(), clip_shape=(3, 4, 8, 8), include=["0", "1"])
    with pytest.raises(ValueError, match=r"module '1' is ReLU"):
        dynamize(net, DynamicSpec(layers=("1",)), clip_shape=(3, 4, 8, 8))
    with pytest.raises(ValueError, match=r"module '1' is ReLU"):
        dynamize(net, DynamicSpec(), clip_shape=(3, 4, 8, 8), include=lambda name, m: name == "1")
    with pytest.raises(ValueError, match=r"no module named 'head'"):
        dynamize(net, DynamicSpec(), clip_shape=(3, 4, 8, 8), include=["head"])
    with pytest.raises(ValueError, match=r"pattern 'x\*' matches no"):
        dynamize(net, DynamicSpec(), clip_shape=(3, 4, 8, 8), include=["x*"])


def test_unreached_conv_and_non_zero_padding_mode_are_named() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Conv3d(3, 4, 1), nn.Conv3d(3, 4, 1)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match="module 'unused' was not called"):
        dynamize(Net(), DynamicSpec(), clip_shape=(3, 4, 8, 8))
    net = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="module '0' uses padding_mode='reflect'"):
        dynamize(net, DynamicSpec(), clip_shape=(3, 4, 8, 8))


def test_patterns_select_convs_and_already_dynamic_is_rejected(make_net) -> None:
    net = dynamize(make_net("net3d"), DynamicSpec(), clip_shape=(3, 8, 16, 16), include=["features.[06]"])
    assert [n for n, _ in dynamic_layers(net)] == ["features.0", "features.6"]
    with pytest.raises(ValueError, match="already dynamic"):
        dynamize(net, DynamicSpec(), clip_shape=(3, 8, 16, 16))


@pytest.mark.parametrize("spec", [DynamicSpec(search_space=1), DynamicSpec(temporal=False, channel=False)])
def test_static_spec_computes_exactly_as_before(spec: DynamicSpec, make_net) -> None:
    net = make_net("net3d")
    ref = copy.deepcopy(net)
    dynamize(net, spec, clip_shape=(3, 8, 16, 16))
    assert all(m.gate is None for _, m in dynamic_layers(net))
    x = torch.randn(2, 3, 8, 16, 16)
    assert torch.equal(net(x), ref(x))


def test_force_policy_validates_and_restores(make_net) -> None:
    net = dynamize(make_net("net3d"), DynamicSpec(search_space=2, channel=False), clip_shape=(3, 8, 16, 16))
    with pytest.raises(ValueError, match=r"channel alternative 1 is outside 0\.\.0 at module 'features.0'"):
        with force_policy(net, channel=1):
            pass
    with pytest.raises(ValueError, match="temporal alternative"):
        with force_policy(net, temporal=[0, 2]):
            pass
    with force_policy(net, temporal=1):
        assert all(m.forced_temporal == 1 for _, m in dynamic_layers(net))
    assert all(m.forced_temporal is None and m.forced_channel is None for _, m in dynamic_layers(net))
    with pytest.raises(ValueError, match="no dynamic layers"):
        with force_policy(nn.Conv3d(3, 3, 1), temporal=0):
            pass
    # a per-clip policy must match the batch
    with force_policy(net, temporal=[0, 1]), pytest.raises(ValueError, match="2 entries for a batch of 3"):
        net(torch.randn(3, 3, 8, 16, 16))
    assert isinstance(dict(net.named_modules())["features.0"], DynamicConv)
