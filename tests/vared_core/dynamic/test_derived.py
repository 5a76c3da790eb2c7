"""derived: a value made from tensors is kept until one of them changes (in place, or its storage replaced)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vared_core.dynamic.derived import batchnorm_sources, derived, parameter
from vared_core.engine.sync_batchnorm import SyncBatchNorm1d


def test_a_derived_value_is_kept_until_a_source_changes() -> None:
    lin, cache, made = nn.Linear(3, 2), {}, []

    def make() -> torch.Tensor:
        made.append(1)
        return lin.weight.detach() * 2

    first = derived(cache, "w2", [lin.weight, None, lin.bias], make)
    assert derived(cache, "w2", [lin.weight, None, lin.bias], make) is first and len(made) == 1
    with torch.no_grad():
        lin.bias.add_(1.0)  # in place: the version counter moves
    assert derived(cache, "w2", [lin.weight, None, lin.bias], make) is not first and len(made) == 2
    lin.weight.data = torch.ones(2, 3)  # a new storage behind the same Parameter
    assert torch.equal(derived(cache, "w2", [lin.weight, None, lin.bias], make), torch.full((2, 3), 2.0))
    assert len(made) == 3


@pytest.mark.parametrize("batchnorm", [nn.BatchNorm1d, SyncBatchNorm1d])
def test_a_batchnorm_training_forward_renews_what_its_running_statistics_made(batchnorm) -> None:
    """A training forward rewrites the running statistics without moving their version counters; the watched
    ``num_batches_tracked`` is what tells the change (the engine's SyncBatchNorm outside a process group too)."""
    bn, cache, made = batchnorm(4), {}, []

    def make() -> torch.Tensor:
        made.append(1)
        return bn.running_mean.clone()

    first = derived(cache, "mean", batchnorm_sources(bn), make)
    assert derived(cache, "mean", batchnorm_sources(bn), make) is first and len(made) == 1
    bn.eval()(torch.randn(8, 4))  # an eval forward changes nothing: the entry stays
    assert derived(cache, "mean", batchnorm_sources(bn), make) is first and len(made) == 1
    bn.train()(torch.randn(8, 4) + 3.0)
    renewed = derived(cache, "mean", batchnorm_sources(bn), make)
    assert not torch.equal(renewed, first) and torch.equal(renewed, bn.running_mean) and len(made) == 2
    bn.load_state_dict({**bn.state_dict(), "running_var": torch.full((4,), 2.0)})
    assert len(made) == 2 and derived(cache, "mean", batchnorm_sources(bn), make) is not renewed and len(made) == 3


def test_parameter_reads_what_attribute_access_reads() -> None:
    """Registered parameters and buffers, ones registered as None, and names never registered all read as
    ``getattr`` reads them (the dynamic layer's inference path relies on it)."""
    conv, bn = nn.Conv3d(2, 3, 1, bias=False), nn.BatchNorm1d(3, track_running_stats=False)
    read = [(conv, "weight"), (conv, "bias"), (bn, "weight"), (bn, "running_mean"), (bn, "num_batches_tracked")]
    for module, name in read:
        assert parameter(module, name) is getattr(module, name)
    assert parameter(conv, "bias") is None and parameter(bn, "running_mean") is None
    tracked = nn.BatchNorm1d(3)
    assert parameter(tracked, "running_var") is tracked.running_var and parameter(tracked, "unknown") is None
