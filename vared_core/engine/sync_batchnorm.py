"""Synchronized BatchNorm for data-parallel training on any device, CPU (gloo) included.

The seed trained with BatchNorm statistics synchronized across all its GPUs (appendix A.2), so that a
layer normalizes with the mean and variance of the whole global batch, as one process on that batch would.
`torch.nn.SyncBatchNorm` does this on GPUs only: it raises ``ValueError`` for CPU tensors, which is where a
2-worker gloo run (a test, a laptop) trains. These layers do it with one differentiable all-reduce per
layer in the forward pass and one in the backward (`_AllReduceSum`, whose backward is the all-reduce of the
gradient): the per-channel sums of the input and of its square, shifted by the running mean so that the
variance does not cancel in float32, and the count. The gradient is exact: each rank's loss reaches every
rank's inputs through the shared statistics, and DDP's averaging of parameter gradients completes it. (A
first version reduced the mean and then the squared deviations, two collectives each way: `benchmarks/
data_parallel.py` measured 2 ranks at 14 clips/s against 57 without synchronization, collectives being a
fixed latency per call on gloo.)

`sync_batchnorm` swaps every ``BatchNorm1d/2d/3d`` of a model for the synchronized subclass of the same
type, sharing its parameters and buffers, so code that checks ``isinstance(m, nn.BatchNorm3d)`` (BatchNorm
folding, cheap ops) keeps working. Outside a process group of several ranks, and in eval mode, a layer is
the plain BatchNorm it replaced.

Example:
    >>> net = sync_batchnorm(nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4)))
    >>> type(net[1]).__name__, isinstance(net[1], nn.BatchNorm3d)
    ('SyncBatchNorm3d', True)
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "SyncBatchNorm3d", "sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """The sum of a tensor over every rank, differentiable: the gradient of a sum shared by every rank's loss
    is the sum of their gradients. (`torch.distributed.nn.functional.all_reduce` did this; torch 2.13
    deprecates it, and the functional collectives that replace it are private.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


class _Synchronized:
    """The forward of a synchronized BatchNorm; mixed into a ``BatchNorm{1,2,3}d`` subclass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn: nn.modules.batchnorm._BatchNorm = self  # type: ignore[assignment]
        if not (bn.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)  # type: ignore[misc]
        bn._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        channels = x.shape[1]
        # one all-reduce of the per-channel sums of (x - k) and (x - k)² and the count; k, the running mean
        # (no gradient), keeps E[(x-k)²] - E[x-k]² from cancelling in float32 once the statistics settle
        shift = bn.running_mean.detach().float().clone().view(shape) if bn.track_running_stats else x.new_zeros(())  # type: ignore[union-attr]
        d = x.float() - shift
        local_count = x.new_full((1,), x.numel() // channels, dtype=torch.float32)
        totals = _AllReduceSum.apply(torch.cat([d.sum(dims), (d * d).sum(dims), local_count]))
        count = totals[-1]
        shifted_mean = totals[:channels] / count
        var = (totals[channels:2 * channels] / count - shifted_mean * shifted_mean).clamp(min=0)
        mean = shifted_mean + shift.reshape(-1) if bn.track_running_stats else shifted_mean
        centred = d - shifted_mean.view(shape)
        y = centred * torch.rsqrt(var + bn.eps).view(shape)
        if bn.affine:
            y = y * bn.weight.view(shape) + bn.bias.view(shape)
        if bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked += 1  # type: ignore[operator]
                factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)  # type: ignore[union-attr]
                bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)  # type: ignore[union-attr]
        return y.to(x.dtype)


class SyncBatchNorm1d(_Synchronized, nn.BatchNorm1d):
    """`nn.BatchNorm1d` with batch statistics over every rank of the process group (see the module doc)."""


class SyncBatchNorm2d(_Synchronized, nn.BatchNorm2d):
    """`nn.BatchNorm2d` with batch statistics over every rank of the process group (see the module doc)."""


class SyncBatchNorm3d(_Synchronized, nn.BatchNorm3d):
    """`nn.BatchNorm3d` with batch statistics over every rank of the process group (see the module doc)."""


_SYNCED: dict[type[nn.Module], type[nn.Module]] = {
    nn.BatchNorm1d: SyncBatchNorm1d, nn.BatchNorm2d: SyncBatchNorm2d, nn.BatchNorm3d: SyncBatchNorm3d,
}


def _synced_copy(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    new = _SYNCED[type(bn)](bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias
    if bn.track_running_stats:
        new.running_mean, new.running_var = bn.running_mean, bn.running_var
        new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def sync_batchnorm(model: nn.Module, keep_local: tuple[type[nn.Module], ...] = ()) -> nn.Module:
    """``model`` with every plain ``BatchNorm1d/2d/3d`` replaced, in place, by its synchronized subclass
    (same parameters and buffers, so optimizer state and checkpoints are unchanged). Returns ``model``.

    A synchronized layer runs collectives, so every rank must call it equally often. ``keep_local`` names
    module types whose BatchNorms keep per-rank statistics because their calls depend on the rank's data:
    a dynamic conv's cheap ops run for the alternatives some clip of the batch uses, so ranks call them a
    different number of times (`vared_core.engine.fit` passes them)."""
    if type(model) in _SYNCED:
        return _synced_copy(model)  # type: ignore[arg-type]
    for name, child in list(model.named_children()):
        if isinstance(child, keep_local):
            continue
        if type(child) in _SYNCED:
            setattr(model, name, _synced_copy(child))  # type: ignore[arg-type]
        else:
            sync_batchnorm(child, keep_local)
    return model
