"""`sync_batchnorm` on CPU: two gloo ranks holding uneven parts of a batch normalise, back-propagate and update
their running statistics as one BatchNorm over the whole batch does."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from vared_core.engine.sync_batchnorm import SyncBatchNorm1d, SyncBatchNorm2d, SyncBatchNorm3d, sync_batchnorm

from .conftest import run_ranks

#: input shape of one item per BatchNorm kind
SHAPES = {1: (6,), 2: (6, 5, 4), 3: (6, 3, 5, 4)}
SPLIT = (5, 3)  # rank 0 holds 5 items of the batch, rank 1 the other 3


def _net(dims: int) -> nn.Module:
    """A linear/conv layer, the BatchNorm of that kind (random affine, running stats), a nonlinearity."""
    torch.manual_seed(dims)
    layer = {1: nn.Linear(6, 6), 2: nn.Conv2d(6, 6, 1), 3: nn.Conv3d(6, 6, 1)}[dims]
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return nn.Sequential(layer, bn, nn.Tanh()).train()


def _batch(dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10 + dims)
    x = torch.randn(sum(SPLIT), *SHAPES[dims], generator=g) * 3 + 1
    return x, torch.randn(x.shape, generator=g)  # the input and a random upstream gradient


def _step(net: nn.Module, x: torch.Tensor, upstream: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward, a backward with a summed loss, and everything the test compares."""
    x = x.clone().requires_grad_(True)
    y = net(x)
    (y * upstream).sum().backward()
    bn = net[1]
    return {"y": y.detach(), "x.grad": x.grad, "running_mean": bn.running_mean.clone(),
            "running_var": bn.running_var.clone(),
            **{f"{n}.grad": p.grad.clone() for n, p in net.named_parameters()}}  # fmt: skip


def _rank(rank: int, out: str) -> None:
    for dims in SHAPES:
        net = sync_batchnorm(_net(dims))
        x, upstream = _batch(dims)
        part = slice(0, SPLIT[0]) if rank == 0 else slice(SPLIT[0], None)
        got = _step(net, x[part], upstream[part])
        for name, p in net.named_parameters():  # a summed loss: a parameter's gradient is the ranks' sum
            dist.all_reduce(p.grad)
            got[f"{name}.grad"] = p.grad
        torch.save(got, Path(out) / f"dims{dims}_rank{rank}.pt")


def test_swapped_layers_keep_their_type_parameters_and_plain_behaviour() -> None:
    net = nn.Sequential(nn.BatchNorm1d(3), nn.Sequential(nn.BatchNorm2d(3)), nn.BatchNorm3d(3))
    params = [id(p) for p in net.parameters()]
    buffers = [id(b) for b in net.buffers()]
    plain = _net(3)
    x, _ = _batch(3)
    expected = plain(x)

    assert sync_batchnorm(net) is net
    assert [type(m) for m in (net[0], net[1][0], net[2])] == [SyncBatchNorm1d, SyncBatchNorm2d, SyncBatchNorm3d]
    assert isinstance(net[2], nn.BatchNorm3d)  # code that looks for BatchNorm3d (folding) still finds it
    assert [id(p) for p in net.parameters()] == params and [id(b) for b in net.buffers()] == buffers
    synced = sync_batchnorm(_net(3))  # outside a process group: the plain BatchNorm, bit for bit
    assert torch.equal(synced(x), expected)
    assert torch.equal(synced[1].running_var, plain[1].running_var)


def test_two_ranks_with_uneven_parts_match_one_batchnorm_over_the_batch(tmp_path: Path) -> None:
    run_ranks(_rank, 2, tmp_path / "rdv", str(tmp_path))
    for dims in SHAPES:
        x, upstream = _batch(dims)
        expected = _step(_net(dims), x, upstream)
        ranks = [torch.load(tmp_path / f"dims{dims}_rank{r}.pt", weights_only=True) for r in range(2)]
        for key in ("y", "x.grad"):  # each rank holds its part of the batch
            assert torch.allclose(torch.cat([ranks[0][key], ranks[1][key]]), expected[key], atol=1e-5), (dims, key)
        for key in set(expected) - {"y", "x.grad"}:  # and the whole of the rest
            for r in ranks:
                assert torch.allclose(r[key], expected[key], rtol=1e-5, atol=1e-5), (dims, key)
