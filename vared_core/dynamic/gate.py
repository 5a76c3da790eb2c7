"""The soft modulation gate of eq. 3.4: one tiny per-layer policy network."""
from __future__ import annotations

import torch
from torch import nn

from .derived import batchnorm_sources, derived, parameter

__all__ = ["SoftModulationGate"]


class SoftModulationGate(nn.Module):
    """Per-clip weights of a dynamic layer's alternatives (method doc §2, eq. 3.4).

    ::

        X (B, C_in, T, H, W) → G: mean over H, W → (B, C_in·T)
          → FC(ω₁) → BatchNorm1d → tanh → FC(ω₂) + β → max(tanh(·), 0) → (B, S_t + S_c)

    Outputs lie in [0, 1) and are exactly zero where the pre-activation is ≤ 0, which is what lets hard
    mode skip alternatives. The first ``num_temporal`` outputs are V_t, the rest V_c.

    Args:
        in_channels: C_in of the gated conv.
        in_frames: T, the frames per clip the conv sees (the gate's input size is C_in·T).
        hidden: D_h.
        num_temporal: S_t (0 when time is not gated).
        num_channel: S_c (0 when channels are not gated).
        bias_full / bias_reduced: initial β for alternative 0 / the reduced alternatives of each dimension.
        detach_input: pass no gradient back into ``X`` (the gate's own parameters still learn).

    Example:
        >>> gate = SoftModulationGate(8, 4, hidden=16, num_temporal=2, num_channel=2).eval()
        >>> gate(torch.randn(3, 8, 4, 7, 7)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        in_channels: int,
        in_frames: int,
        *,
        hidden: int,
        num_temporal: int,
        num_channel: int,
        bias_full: float = 1.0,
        bias_reduced: float = 0.5,
        detach_input: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.in_frames = in_frames
        self.num_temporal = num_temporal
        self.num_channel = num_channel
        self.detach_input = detach_input
        num_out = num_temporal + num_channel
        self.fc1 = nn.Linear(in_channels * in_frames, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, num_out, bias=False)
        nn.init.normal_(self.fc2.weight, std=0.01)  # start near β so every clip begins with the same policy
        init = []
        for n in (num_temporal, num_channel):
            init += [bias_full] + [bias_reduced] * (n - 1) if n else []
        self.beta = nn.Parameter(torch.tensor(init, dtype=torch.float32))

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one gate evaluation (its two linear layers)."""
        return self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C_in, T, H, W) (any strides). Returns (B, S_t + S_c) weights in [0, 1)."""
        if x.shape[1] != self.in_channels or x.shape[2] != self.in_frames:
            raise ValueError(
                f"SoftModulationGate expects (B, {self.in_channels}, {self.in_frames}, H, W) inputs, got "
                f"{tuple(x.shape)}: a dynamized model keeps the clip length it was dynamized with"
            )
        channels_last = x.dim() == 5 and x.stride(1) == 1 and x.shape[1] > 1
        if not self.training and not torch.is_grad_enabled():
            return self._infer(x, channels_last)
        if channels_last:  # reduce over rows of C
            pooled = x.permute(0, 2, 3, 4, 1).flatten(2, 3).mean(2).transpose(1, 2).flatten(1)
        else:
            pooled = x.mean(dim=(3, 4)).flatten(1)  # G: (B, C_in·T)
        if self.detach_input:
            pooled = pooled.detach()
        h = torch.tanh(self.bn(self.fc1(pooled)))
        return torch.relu(torch.tanh(self.fc2(h) + self.beta))

    def _infer(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """The forward at inference, in as few ops as it takes: BN folded into fc1, the mean's 1/(H·W) into fc1's
        product, β into fc2's; a channels-last input summed in its own (T, C) order, read by fc1's columns
        reordered to match."""
        if channels_last:
            summed = x.permute(0, 2, 3, 4, 1).flatten(2, 3).sum(2).flatten(1)  # (B, T·C), frame-major
        else:
            summed = x.sum(dim=(3, 4)).flatten(1)  # (B, C·T), channel-major as fc1 reads it
        w1t, b1, w2t, beta = self._folded(frame_major=channels_last)
        h = torch.addmm(b1, summed, w1t, alpha=1.0 / (x.shape[3] * x.shape[4])).tanh_()
        return torch.addmm(beta, h, w2t).tanh_().relu_()

    def _folded(self, frame_major: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What `_infer` multiplies by: fc1 with the eval BatchNorm folded in, ``bn(fc1(p)) = p·W'ᵀ + b'``, as
        (W'ᵀ, b', fc2's Wᵀ, β), W' with its columns in (T, C) order when ``frame_major``; rebuilt when a tensor it
        comes from changes (read from the registries, see `parameter`: the gates of X3D-M run 52 times a forward)."""
        fc1, bn, fc2 = self._modules["fc1"], self._modules["bn"], self._modules["fc2"]
        w1, b1, w2 = parameter(fc1, "weight"), parameter(fc1, "bias"), parameter(fc2, "weight")
        beta = parameter(self, "beta")

        def fold() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = w1 * scale[:, None]
            if frame_major:  # column c·T + t → t·C + c
                weight = weight.unflatten(1, (self.in_channels, self.in_frames)).transpose(1, 2).flatten(1).contiguous()
            return weight.t(), (b1 - bn.running_mean) * scale + bn.bias, w2.t(), beta

        sources = (w1, b1, *batchnorm_sources(bn), w2, beta)
        return derived(self.__dict__.setdefault("_derived", {}), ("folded", frame_major), sources, fold)
