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
