"""An eval-mode BatchNorm as the per-channel affine map it is."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["batchnorm_affine"]


def batchnorm_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel with ``bn(y) == y·scale + shift`` under the running statistics."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError(f"{type(bn).__name__} without running statistics is not an affine map")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift
