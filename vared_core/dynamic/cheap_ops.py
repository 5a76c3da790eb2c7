"""The cheap linear operations that rebuild what a dynamic conv did not compute (method doc §1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .affine import batchnorm_affine

__all__ = ["ChannelCheapOp", "TemporalCheapOp"]


class ChannelCheapOp(nn.Module):
    """Φ^c: rebuild ``out_channels`` feature maps from ``in_channels`` computed ones, frame by frame.

    ::

        Y' (N, k, H, W) → depthwise k×k conv (each rebuilt map reads one computed map) → BatchNorm2d
          → (N, C - k, H, W)

    When C - k is a multiple of k this is a plain depthwise conv with channel multiplier (C - k)/k
    (GhostNet's cheap operation). Otherwise each rebuilt map ``o`` reads computed map ``o·k // (C - k)``
    (spread evenly), then a depthwise conv with one filter per rebuilt map. Linear, as the seed requires.

    Args:
        in_channels: k, the computed maps.
        out_channels: C - k, the maps to rebuild.
        kernel_size: spatial kernel (odd).
        weight_ndim: 5 stores the filters as a (C - k, 1, 1, k, k) Conv3d-shaped weight (for Conv3d hosts,
            so ``model.to(memory_format=torch.channels_last_3d)`` applies), 4 as Conv2d-shaped. The
            computation is a conv2d over folded frames either way: depthwise conv3d has no fast CPU kernel.
        zero_init: start BN's scale γ at 0, so the op first outputs zeros (BN's shift) and the fine-tune grows
            it; otherwise γ = 1 and the rebuilt maps start as random unit-variance features.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, weight_ndim: int = 4, zero_init: bool = False
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.gather: torch.Tensor | None
        if out_channels % in_channels == 0:
            groups = in_channels
            self.register_buffer("gather", None, persistent=False)
        else:
            groups = out_channels
            src = torch.arange(out_channels) * in_channels // out_channels
            self.register_buffer("gather", src, persistent=False)
        self.groups = groups
        weight = torch.empty(out_channels, 1, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=5**0.5)  # nn.Conv2d's default initialisation
        self.weight = nn.Parameter(weight if weight_ndim == 4 else weight.unsqueeze(2))
        self.bn = nn.BatchNorm2d(out_channels)
        if zero_init:
            nn.init.zeros_(self.bn.weight)

    def macs_per_frame(self, height: int, width: int) -> int:
        """Multiply-accumulates to rebuild one frame of ``height``×``width``."""
        return self.out_channels * self.kernel_size**2 * height * width

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise conv alone (before BN): (N, k, H, W) → (N, C - k, H, W)."""
        if self.gather is not None:
            x = x.index_select(1, self.gather)
        k = self.kernel_size
        weight = self.weight.reshape(self.out_channels, 1, k, k)
        return F.conv2d(x, weight, None, 1, k // 2, 1, self.groups)

    def bn_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """BN with its running statistics as ``(scale, shift)`` per rebuilt map: ``bn(y) = y·scale + shift``
        in eval, so hard mode can apply it while writing the rebuilt maps instead of in a pass of its own."""
        return batchnorm_affine(self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, k, H, W), frames folded into N. Returns (N, C - k, H, W)."""
        return self.bn(self.conv(x))


class TemporalCheapOp(nn.Module):
    """Φ^t for one temporal alternative with factor R: rebuild skipped frames from the computed ones.

    Output frame ``j + iR`` (``j = 1..R-1``) is ``w_j ⊙ Y'[i] + b_j``, a per-channel affine map (a depthwise
    1×1×1 conv with its own weight and bias per offset ``j``) of the nearest computed frame before it.
    Starts as a copy (w = 1, b = 0).

    Args:
        factor: R (≥ 2).
        channels: C_out of the dynamic conv.
    """

    def __init__(self, factor: int, channels: int) -> None:
        super().__init__()
        self.factor = factor
        self.weight = nn.Parameter(torch.ones(factor - 1, channels))
        self.bias = nn.Parameter(torch.zeros(factor - 1, channels))

    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, C) scale and shift per offset ``j`` including the identity row ``j = 0``."""
        one = torch.ones_like(self.weight[:1])
        return torch.cat([one, self.weight]), torch.cat([torch.zeros_like(one), self.bias])
