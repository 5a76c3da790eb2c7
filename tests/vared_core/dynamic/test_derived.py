"""derived: a value made from tensors is kept until one of them changes (in place, or its storage replaced)."""
from __future__ import annotations

import torch
from torch import nn

from vared_core.dynamic.derived import derived


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


def test_running_statistics_are_watched_by_value() -> None:
    """A training forward updates a BatchNorm's running statistics in place without moving their version counter."""
    bn, cache = nn.BatchNorm1d(4), {}
    make = lambda: bn.running_mean.clone()  # noqa: E731
    first = derived(cache, "mean", [bn.weight], make, values=[bn.running_mean, bn.running_var])
    version = bn.running_mean._version
    bn.train()(torch.randn(8, 4) + 3.0)
    assert bn.running_mean._version == version  # why a version stamp alone would miss it
    renewed = derived(cache, "mean", [bn.weight], make, values=[bn.running_mean, bn.running_var])
    assert not torch.equal(renewed, first) and torch.equal(renewed, bn.running_mean)
