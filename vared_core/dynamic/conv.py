"""`DynamicConv`: the VA-RED² dynamic convolution wrapped around an existing Conv3d / Conv2d.

One module holds the whole per-layer mechanism (method doc §1–4):

::

    X ─► gate ─► V_t, V_c (per clip)
    X ─► conv at the largest alternative in use (fewer output channels / frames)
       ─► channel alternatives: [Y'[:k_i], Φ^c_i(Y'[:k_i])], weighted by V_c[i], summed   (eq. 3.5, left)
       ─► temporal alternatives: frames kept every R_j, rest rebuilt by Φ^t_j, weighted by V_t[j], summed
       ─► Y (same shape as the original conv's output)

Soft mode (training) computes the full conv once and slices every alternative from it (shared weights).
Hard mode (eval) groups the clips of a batch by the alternatives they use and runs each group's conv at its
own reduced size. Both give the same numbers because Φ^c works frame by frame (method doc §4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .cheap_ops import ChannelCheapOp, TemporalCheapOp
from .gate import SoftModulationGate
from .spec import DynamicSpec

__all__ = ["DynamicConv", "LayerRecord", "Mode"]

Mode = Literal["auto", "soft", "hard"]


@dataclass
class LayerRecord:
    """What one dynamic layer decided and cost in the last forward (one entry per clip).

    Attributes:
        clip_macs: (B,) float64 multiply-accumulates each clip costs at inference under its policy
            (reduced conv + cheap ops + gate). In soft mode the forward computed more; this is the
            hard-mode cost of the same decisions.
        full_macs: the original conv's multiply-accumulates for one clip.
        cost_fraction: (B,) hard cost fraction r^s/R^s of the conv (computed / full, exact for
            non-divisible sizes), carrying the gradient of its differentiable stand-in (method doc §5).
        channel_choice / temporal_choice: (B,) long, index of the largest alternative in use; -1 when
            every weight of the gate is zero (the layer outputs zeros).
        gate: (B, S_t + S_c) detached gate weights actually used (after any `force_policy`).
    """

    clip_macs: torch.Tensor
    full_macs: float
    cost_fraction: torch.Tensor
    channel_choice: torch.Tensor
    temporal_choice: torch.Tensor
    gate: torch.Tensor | None


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _mul(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Product of two optional broadcastable factors (None = 1)."""
    return b if a is None else a if b is None else a * b


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Sum of two optional terms (None = 0)."""
    return b if a is None else a if b is None else a + b


def _rows(t: torch.Tensor | None, r: int) -> torch.Tensor | None:
    """Row ``r`` of a per-clip factor (leading size > 1), or the shared factor itself."""
    return t if t is None or t.shape[0] == 1 else t[r : r + 1]


def _take(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """``x[rows]`` along dim 0, keeping the memory format (``index_select`` returns NCDHW, which sends the
    next conv down its slow path); a view when the rows are consecutive."""
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][1]:
            runs[-1][1] = r + 1
        else:
            runs.append([r, r + 1])
    if len(runs) == 1:
        return x[runs[0][0] : runs[0][1]]
    return torch.cat([x[a:b] for a, b in runs])


def _channels(t: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    """Channels ``sl`` of a per-channel factor (size > 1 along dim 1), or a channel-shared one itself."""
    return t if t is None or t.shape[1] == 1 else t[:, sl]


def _affine_into(src: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None, dst: torch.Tensor) -> None:
    """``dst = src·scale + shift`` in one pass (None factors are left out)."""
    if shift is not None:
        if scale is None:
            torch.add(src, shift, out=dst)
        else:
            torch.addcmul(shift, src, scale, out=dst)
    elif scale is not None:
        torch.mul(src, scale, out=dst)
    else:
        dst.copy_(src)


def _emit(src: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None, dst: torch.Tensor,
          rows: list[int] | None, *, src_in_batch: bool = False) -> None:
    """Write ``src·scale + shift`` into ``dst`` — the group's own output (``rows`` None) or the batch output,
    clip ``i`` of the group going to clip ``rows[i]``. ``src`` holds the group's clips, or with
    ``src_in_batch`` is itself a slice of the batch output (read at ``rows[i]`` too)."""
    if rows is None:
        _affine_into(src, scale, shift, dst)
        return
    for i, r in enumerate(rows):
        j = r if src_in_batch else i
        _affine_into(src[j : j + 1], _rows(scale, i), _rows(shift, i), dst[r : r + 1])


class DynamicConv(nn.Module):
    """A Conv3d (or a Conv2d in a net that folds time into the batch) made input-dependent.

    The original ``weight`` and ``bias`` Parameters are kept as the same tensors under the same names,
    so a static state dict loads into the dynamized model (new gate and cheap-op entries aside).

    Args:
        conv: the ``nn.Conv3d`` or ``nn.Conv2d`` to wrap (padding mode ``zeros``).
        spec: what is dynamic and the search space.
        in_frames: frames per clip entering the conv (for a Conv2d: how many consecutive batch entries
            form one clip).
        name: module path, for error messages.

    Example:
        >>> conv = nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1))
        >>> dyn = DynamicConv(conv, DynamicSpec(search_space=2), in_frames=4).eval()
        >>> dyn(torch.randn(2, 8, 4, 10, 10)).shape
        torch.Size([2, 16, 4, 10, 10])
    """

    def __init__(self, conv: nn.Conv2d | nn.Conv3d, spec: DynamicSpec, *, in_frames: int, name: str = "") -> None:
        super().__init__()
        where = f"module '{name}'" if name else "conv"
        if not isinstance(conv, (nn.Conv2d, nn.Conv3d)):
            raise ValueError(f"{where} is {type(conv).__name__}, not nn.Conv2d or nn.Conv3d: only convs can be made dynamic")
        if conv.padding_mode != "zeros":
            raise ValueError(f"{where} uses padding_mode={conv.padding_mode!r}; dynamic convs support only 'zeros'")
        self.name = name
        self.folded = isinstance(conv, nn.Conv2d)
        self.weight = conv.weight
        self.bias = conv.bias
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_size, self.stride, self.dilation = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation)
        self.padding = self._explicit_padding(conv, where)
        self.in_frames = in_frames
        if self.folded:
            self.out_frames = in_frames
        else:
            self.out_frames = _out_size(in_frames, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0])
        self.spec = spec
        self.num_temporal, self.num_channel = spec.num_temporal, spec.num_channel
        self.channel_counts = [spec.channel_count(self.out_channels, i) for i in range(self.num_channel)]
        self.temporal_factors = [2**j for j in range(self.num_temporal)]
        if self.num_channel > 1:
            if self.out_channels < 2:
                raise ValueError(f"{where} has {self.out_channels} output channel; channel reduction needs at least 2")
            per_group = self.out_channels // self.groups
            bad = [k for k in self.channel_counts if self.groups > 1 and k % per_group]
            if bad:
                raise ValueError(
                    f"{where} has groups={self.groups} ({per_group} output channels per group): computing "
                    f"{bad[0]} of {self.out_channels} channels would split a group; use channel=False for it, "
                    f"a smaller search_space, or leave it static"
                )
        self.gate = None
        if not spec.is_static:
            self.gate = SoftModulationGate(
                self.in_channels, in_frames, hidden=spec.gate_hidden,
                num_temporal=self.num_temporal if self.num_temporal > 1 else 0,
                num_channel=self.num_channel if self.num_channel > 1 else 0,
                bias_full=spec.gate_bias_full, bias_reduced=spec.gate_bias_reduced,
                detach_input=spec.detach_gate_input,
            ).to(device=self.weight.device)
        self.channel_ops = nn.ModuleList(
            ChannelCheapOp(k, self.out_channels - k, kernel_size=spec.cheap_kernel, weight_ndim=self.weight.dim(),
                           zero_init=spec.cheap_zero_init)
            for k in self.channel_counts[1:]
        ).to(device=self.weight.device)
        self.temporal_ops = nn.ModuleList(
            TemporalCheapOp(r, self.out_channels) for r in self.temporal_factors[1:]
        ).to(device=self.weight.device)
        # y ← y·post_scale + post_shift per output channel after the layer: a following eval BatchNorm
        # absorbed by `absorb_affine` (see `fuse_batchnorm`); None for a plain layer
        self.register_buffer("post_scale", None)
        self.register_buffer("post_shift", None)
        self._cache: dict = {}  # the fused weight, per-device constants and per-size cost tables
        self.mode: Mode = "auto"
        self.forced_temporal: torch.Tensor | int | None = None
        self.forced_channel: torch.Tensor | int | None = None
        self.last: LayerRecord | None = None

    @staticmethod
    def _explicit_padding(conv: nn.Conv2d | nn.Conv3d, where: str) -> tuple[int, ...]:
        if conv.padding == "valid":
            return (0,) * len(conv.kernel_size)
        if conv.padding == "same":
            if any((d * (k - 1)) % 2 for k, d in zip(conv.kernel_size, conv.dilation)):
                raise ValueError(f"{where} uses padding='same' with an even kernel; give explicit padding")
            return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
        return tuple(conv.padding)

    # ---------------------------------------------------------------- an absorbed affine (folded BatchNorm)
    def absorb_affine(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Make the layer output ``y·scale + shift`` (per output channel) instead of ``y``.

        This is how an eval-mode BatchNorm that follows the layer is folded into it (`fuse_batchnorm`):
        every part of the output — computed channels and frames, rebuilt channels, rebuilt frames, the zeros
        of a skipped clip — gets the affine while it is written, so it costs no pass of its own. Repeated
        calls compose.
        """
        scale = scale.detach().to(self.weight.dtype).reshape(-1)
        shift = shift.detach().to(self.weight.dtype).reshape(-1)
        if scale.numel() != self.out_channels or shift.numel() != self.out_channels:
            raise ValueError(f"module '{self.name}': an absorbed affine needs {self.out_channels} channels, "
                             f"got {scale.numel()} scales and {shift.numel()} shifts")
        if self.post_scale is None:
            self.post_scale, self.post_shift = scale.clone(), shift.clone()
        else:
            self.post_scale, self.post_shift = self.post_scale * scale, self.post_shift * scale + shift
        self._cache.pop("fused", None)

    def _post5(self, channels: slice = slice(None)) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The absorbed (scale, shift) of ``channels``, shaped (1, c, 1, 1, 1); (None, None) without one."""
        if self.post_scale is None:
            return None, None
        return self.post_scale[channels].view(1, -1, 1, 1, 1), self.post_shift[channels].view(1, -1, 1, 1, 1)

    def _apply_post(self, y5: torch.Tensor) -> torch.Tensor:
        a5, b5 = self._post5()
        return y5 if a5 is None else torch.addcmul(b5, y5, a5)

    def _fused_weight(self, with_shift: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the conv with the absorbed affine folded in (cached until a tensor changes):
        ``conv(x; W·a, bias·a [+ shift])`` equals ``a·conv(x) [+ shift]``."""
        key = tuple((t.data_ptr(), t._version) for t in (self.weight, self.bias, self.post_scale, self.post_shift)
                    if t is not None)
        cached = self._cache.get("fused")
        if cached is None or cached[0] != key:
            a = self.post_scale
            weight = torch.empty_like(self.weight, requires_grad=False)  # same strides: the conv keeps its layout
            torch.mul(self.weight.detach(), a.view(-1, *([1] * (self.weight.dim() - 1))), out=weight)
            bias = (self.bias * a).detach() if self.bias is not None else torch.zeros_like(a)
            cached = self._cache["fused"] = (key, weight, bias, bias + self.post_shift)
        _, weight, bias, bias_shift = cached
        return weight, bias_shift if with_shift else bias

    # ---------------------------------------------------------------- shapes and costs
    def extra_repr(self) -> str:
        kind = "Conv2d, time folded" if self.folded else "Conv3d"
        return (f"{kind}: {self.in_channels}→{self.out_channels}, kernel={self.kernel_size}, frames {self.in_frames}→"
                f"{self.out_frames}, channels={self.channel_counts}, temporal factors={self.temporal_factors}")

    def computed_frames(self, factor: int) -> int:
        """Output frames computed for temporal factor R: ceil(T_o / R)."""
        return math.ceil(self.out_frames / factor)

    def _spatial_out(self, height: int, width: int) -> tuple[int, int]:
        k, s, p, d = self.kernel_size[-2:], self.stride[-2:], self.padding[-2:], self.dilation[-2:]
        return _out_size(height, k[0], s[0], p[0], d[0]), _out_size(width, k[1], s[1], p[1], d[1])

    def _conv_macs(self, channels: int, frames: int, hw: int) -> int:
        return channels * frames * hw * (self.in_channels // self.groups) * math.prod(self.kernel_size)

    def _policy_macs(self, alts_c: list[int], alts_t: list[int], hw_out: tuple[int, int]) -> int:
        """Inference MACs of one clip whose gate uses the alternatives ``alts_c`` / ``alts_t`` (ascending)."""
        gate = self.gate.macs if self.gate is not None else 0
        if not alts_c or not alts_t:
            return gate
        hw = hw_out[0] * hw_out[1]
        frames = self.computed_frames(self.temporal_factors[alts_t[0]])
        macs = self._conv_macs(self.channel_counts[alts_c[0]], frames, hw) + gate
        macs += sum(self.channel_ops[i - 1].macs_per_frame(*hw_out) * frames for i in alts_c if i > 0)
        macs += sum(
            (self.out_frames - self.computed_frames(self.temporal_factors[j])) * self.out_channels * hw
            for j in alts_t if j > 0
        )
        return macs

    # ---------------------------------------------------------------- gate weights
    def _gate_weights(self, x5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, S_t) temporal and (B, S_c) channel weights, after any pinned policy."""
        b = x5.shape[0]
        ones = x5.new_ones(b, 1)
        v = self.gate(x5) if self.gate is not None else None
        vt = v[:, : self.gate.num_temporal] if v is not None and self.num_temporal > 1 else ones
        vc = v[:, v.shape[1] - self.gate.num_channel:] if v is not None and self.num_channel > 1 else ones
        if self.forced_temporal is not None:
            vt = self._one_hot(self.forced_temporal, b, self.num_temporal, x5)
        if self.forced_channel is not None:
            vc = self._one_hot(self.forced_channel, b, self.num_channel, x5)
        if not self.spec.skip_layers:  # a dimension weighted all zero takes its cheapest alternative
            vt, vc = self._no_skip(vt), self._no_skip(vc)
        if self.spec.normalize_weights:  # a clip's weights sum to 1 per dimension (0 stays 0: layer skipped)
            floor = self.spec.normalize_floor
            vt = vt / vt.sum(1, keepdim=True).clamp(min=floor)
            vc = vc / vc.sum(1, keepdim=True).clamp(min=floor)
        return vt, vc, v

    @staticmethod
    def _no_skip(v: torch.Tensor) -> torch.Tensor:
        """``v`` (B, S) with each all-zero row replaced by weight 1 on the last (cheapest) alternative."""
        if v.shape[1] == 1:  # an ungated dimension: its single weight is 1
            return v
        dead = v.amax(1, keepdim=True) <= 0
        if not bool(dead.any()):
            return v
        cheapest = torch.zeros_like(v[:1])
        cheapest[0, -1] = 1
        return torch.where(dead, cheapest, v)

    @staticmethod
    def _one_hot(choice: torch.Tensor | int, b: int, n: int, like: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(choice, device=like.device).long().expand(b) if not isinstance(choice, torch.Tensor) or choice.dim() == 0 else choice.to(like.device).long()
        if idx.shape[0] != b:
            raise ValueError(f"a per-clip pinned policy has {idx.shape[0]} entries for a batch of {b} clips")
        return F.one_hot(idx, n).to(like.dtype)

    # ---------------------------------------------------------------- layout helpers
    def _as_clips(self, x: torch.Tensor) -> torch.Tensor:
        """Native input → logical (B, C, T, H, W) view (no copy)."""
        return x.unflatten(0, (-1, self.in_frames)).transpose(1, 2) if self.folded else x

    def _to_native(self, y5: torch.Tensor) -> torch.Tensor:
        return y5.transpose(1, 2).flatten(0, 1) if self.folded else y5

    @staticmethod
    def _fold(y5: torch.Tensor) -> torch.Tensor:
        return y5.transpose(1, 2).flatten(0, 1)

    @staticmethod
    def _unfold(y4: torch.Tensor, b: int) -> torch.Tensor:
        return y4.unflatten(0, (b, -1)).transpose(1, 2)

    # ---------------------------------------------------------------- computation
    def _reduced_conv(
        self, x: torch.Tensor, channels: int, factor: int, params: tuple[torch.Tensor, torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """The conv computing only ``channels`` outputs at every ``factor``-th output frame.

        ``x`` is the native input of the clips concerned; returns logical (b, channels, T_o/R, H_o, W_o).
        ``params`` replaces (weight, bias) (the fused ones of `_fused_weight`).
        """
        weight, bias = params if params is not None else (self.weight, self.bias)
        weight = weight[:channels]
        bias = bias[:channels] if bias is not None else None
        groups = self.groups
        if groups > 1:
            groups = channels // (self.out_channels // self.groups)
            x = x[:, : groups * (self.in_channels // self.groups)]
        if self.folded:
            b = x.shape[0] // self.in_frames
            if factor > 1:
                x = x.unflatten(0, (b, self.in_frames))[:, ::factor].flatten(0, 1)
            y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)
            return self._unfold(y, b)
        stride = (self.stride[0] * factor, *self.stride[1:])
        return F.conv3d(x, weight, bias, stride, self.padding, self.dilation, groups)

    def _assemble(
        self, y5: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, alts_c: list[int], alts_t: list[int], base: int
    ) -> torch.Tensor:
        """Form Σ_j V_t[j]·f^t(Σ_i V_c[i]·f^c(Y', i), j) from the computed block ``y5``.

        ``y5``: (b, k, T', H, W), the outputs of the largest alternative in use (frames 0, base, 2·base…).
        """
        b = y5.shape[0]
        yc = None
        for i in alts_c:
            k = self.channel_counts[i]
            if k == self.out_channels:
                term = y5[:, :k]
            else:
                part = y5[:, :k]
                rebuilt = self._unfold(self.channel_ops[i - 1](self._fold(part)), b)
                term = torch.cat([part, rebuilt], dim=1)
            term = term if self.num_channel == 1 else term * vc[:, i].view(b, 1, 1, 1, 1)
            yc = term if yc is None else yc + term
        if self.num_temporal == 1:
            return yc
        y = None
        for j in alts_t:
            factor = self.temporal_factors[j]
            v = vt[:, j]
            if factor == 1:
                term = yc * v.view(b, 1, 1, 1, 1)
            else:
                t = torch.arange(self.out_frames, device=y5.device)
                src = (t // factor) * (factor // base)
                offset = t % factor
                scale, shift = self.temporal_ops[j - 1].tables()  # (R, C)
                scale = scale[offset].t()[None] * v.view(b, 1, 1)  # (b, C, T_o)
                shift = shift[offset].t()[None] * v.view(b, 1, 1)
                term = torch.addcmul(shift[..., None, None], yc.index_select(2, src), scale[..., None, None])
            y = term if y is None else y + term
        return y

    def _hard_group(
        self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, alts_c: list[int], alts_t: list[int],
        out: torch.Tensor | None = None, rows: list[int] | None = None,
    ) -> torch.Tensor:
        """Hard-mode output (logical 5D) of clips that all use the alternatives ``alts_c`` / ``alts_t``.

        With ``out`` (the logical output of the whole batch) and ``rows`` (the batch indices of these clips),
        the parts are written straight into those clips' slices of ``out``, which is returned.
        Several alternatives in a dimension, or a forward that records gradients, go through `_assemble`
        (`_hard_assembled`); one alternative per dimension writes its parts directly (`_hard_direct`).
        """
        grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if len(alts_c) > 1 or len(alts_t) > 1 or grad:
            return self._hard_assembled(x, vc, vt, alts_c, alts_t, out, rows)
        return self._hard_direct(x, vc, vt, alts_c[0], alts_t[0], out, rows)

    def _hard_assembled(
        self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, alts_c: list[int], alts_t: list[int],
        out: torch.Tensor | None, rows: list[int] | None,
    ) -> torch.Tensor:
        """`_hard_group` through `_assemble`: the conv at the largest alternative in use, then eq. 3.5."""
        factor = self.temporal_factors[alts_t[0]]
        y5 = self._reduced_conv(x, self.channel_counts[alts_c[0]], factor)
        y5 = self._apply_post(self._assemble(y5, vc, vt, alts_c, alts_t, factor))
        if out is None:
            return y5
        _emit(y5, None, None, out, rows)
        return out

    def _hard_direct(
        self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, ic: int, it: int,
        out: torch.Tensor | None, rows: list[int] | None,
    ) -> torch.Tensor:
        """`_hard_group` for one alternative per dimension (``ic``, ``it``), without autograd: the computed
        and rebuilt parts are written straight into the output, the gate weights and any absorbed affine
        (a, s) applied on the way.

        Eq. 3.5 with one alternative each is ``V_t·f^t(V_c·f^c(Y'))``: the computed and channel-rebuilt
        maps are scaled by ``a·V_c·V_t``; a temporally rebuilt frame is ``w·(computed frame) + b`` inside
        ``f^t``, so its bias ``b`` is scaled by ``a·V_t`` alone.
        """
        k, factor = self.channel_counts[ic], self.temporal_factors[it]
        b = vc.shape[0]
        v = vc[:, ic] * vt[:, it]
        v5 = None if bool((v == 1).all()) else v.view(b, 1, 1, 1, 1)
        a5, s5 = self._post5()
        if k == self.out_channels and factor == 1:
            if out is None and a5 is not None:  # the affine rides in the conv's weights
                y5 = self._reduced_conv(x, k, 1, self._fused_weight(with_shift=v5 is None))
                return y5 if v5 is None else torch.addcmul(s5, y5, v5, out=y5)
            y5 = self._reduced_conv(x, k, 1)
            if out is None:
                return y5 if v5 is None else y5.mul_(v5)
            _emit(y5, _mul(a5, v5), s5, out, rows)
            return out
        y5 = self._reduced_conv(x, k, factor)
        if out is None:
            out = self._new_output(y5)
        computed = out[:, :, ::factor]
        scale = _mul(a5, v5)
        _emit(y5, _channels(scale, slice(k)), _channels(s5, slice(k)), computed[:, :k], rows)
        if k < self.out_channels:
            op = self.channel_ops[ic - 1]
            rebuilt = self._unfold(op.conv(self._fold(y5)), b)
            if op.bn.training:  # batch statistics: BN has to see the maps
                rebuilt, bn_scale, bn_shift = self._unfold(op.bn(self._fold(rebuilt)), b), None, None
            else:
                bn_scale, bn_shift = (t.view(1, -1, 1, 1, 1) for t in op.bn_affine())
            scale_k = _channels(scale, slice(k, None))
            shift_r = _add(None if bn_shift is None else _mul(bn_shift, scale_k), _channels(s5, slice(k, None)))
            scale_r = _mul(bn_scale, scale_k)
            _emit(rebuilt, scale_r, shift_r, computed[:, k:], rows)
        if factor > 1:
            weights, shifts = self.temporal_ops[it - 1].tables()
            vt_1 = vt[:, it]
            vt5 = None if bool((vt_1 == 1).all()) else vt_1.view(b, 1, 1, 1, 1)
            shift_scale = _mul(a5, vt5)  # Φ^t's bias sits outside V_c (eq. 3.5): a·V_t, not a·V_c·V_t
            for j in range(1, factor):
                n = len(range(j, self.out_frames, factor))
                if n == 0:
                    continue
                w5 = weights[j].view(1, -1, 1, 1, 1)
                # rebuilt frame = w·(computed frame before any absorbed shift s) + b·(a·V_t), then + s
                shift = _mul(shifts[j].view(1, -1, 1, 1, 1), shift_scale)
                if s5 is not None:
                    shift = shift + s5 * (1 - w5)
                _emit(computed[:, :, :n], w5, shift, out[:, :, j::factor], rows, src_in_batch=True)
        return out

    @staticmethod
    def _memory_format(native: torch.Tensor) -> torch.memory_format:
        """channels_last(_3d) when ``native`` is laid out that way (and not plainly contiguous)."""
        fmt = torch.channels_last_3d if native.dim() == 5 else torch.channels_last
        if native.is_contiguous(memory_format=fmt) and not native.is_contiguous():
            return fmt
        return torch.contiguous_format

    def _new_output(self, like5: torch.Tensor) -> torch.Tensor:
        """An uninitialised output in the native layout and memory format of ``like5``'s native form,
        returned as its logical (b, C, T_o, H, W) view."""
        b, _, _, ho, wo = like5.shape
        native = torch.empty(self._native_shape(b, ho, wo), device=like5.device, dtype=like5.dtype,
                             memory_format=self._memory_format(self._to_native(like5)))
        return self._as_output_clips(native, b)

    def _native_shape(self, b: int, ho: int, wo: int) -> tuple[int, ...]:
        if self.folded:
            return (b * self.out_frames, self.out_channels, ho, wo)
        return (b, self.out_channels, self.out_frames, ho, wo)

    def _output_shape(self, b: int, height: int, width: int) -> tuple[int, ...]:
        """Native output shape for ``b`` clips of input size ``height``×``width``."""
        return self._native_shape(b, *self._spatial_out(height, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x5 = self._as_clips(x)
        b, height, width = x5.shape[0], x5.shape[3], x5.shape[4]
        vt, vc, v = self._gate_weights(x5)
        used_t, used_c = vt > 0, vc > 0
        hard = self.mode == "hard" or (self.mode == "auto" and not self.training)
        # which alternatives each clip uses, as one bit code (channel alternatives first)
        codes = (torch.cat([used_c, used_t], 1).long() * self._bit_values(x.device)).sum(1)
        self._record(vt, vc, codes, v, self._spatial_out(height, width))

        if not hard:  # soft: one full conv, every alternative in use anywhere in the batch sliced from it
            alts_c = [i for i in range(self.num_channel) if bool(used_c[:, i].any())]
            alts_t = [j for j in range(self.num_temporal) if bool(used_t[:, j].any())]
            if not alts_c or not alts_t:
                return self._skipped_output(b, height, width, x)
            y5 = self._assemble(self._reduced_conv(x, self.out_channels, 1), vc, vt, alts_c, alts_t, 1)
            skipped = ~(used_c.any(1) & used_t.any(1))
            if bool(skipped.any()):  # a clip whose gate zeroes a whole dimension skips the layer (outputs 0)
                y5 = y5 * (~skipped).to(y5.dtype).view(b, 1, 1, 1, 1)
            return self._to_native(self._apply_post(y5))

        # hard: clips that use the same alternatives run together, at their own reduced size
        uniq = torch.unique(codes).tolist()
        if len(uniq) == 1:
            alts_c, alts_t = self._decode(uniq[0])
            if not alts_c or not alts_t:
                return self._skipped_output(b, height, width, x)
            return self._to_native(self._hard_group(x, vc, vt, alts_c, alts_t))
        return self._hard_mixed(x, vc, vt, codes, uniq, height, width)

    def _hard_mixed(self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, codes: torch.Tensor, uniq: list[int],
                    height: int, width: int) -> torch.Tensor:
        """Hard-mode native output of a batch whose clips use different alternatives (bit ``codes``, the
        distinct ones ``uniq``): each group of clips runs at its own reduced size into its rows of the output,
        a clip that skips the layer gets `_fill_skipped`."""
        b = vc.shape[0]
        native = torch.empty(self._output_shape(b, height, width), device=x.device, dtype=x.dtype,
                             memory_format=self._memory_format(x))
        out = self._as_output_clips(native, b)
        x_clips = x.unflatten(0, (b, self.in_frames)) if self.folded else x
        for code in uniq:
            alts_c, alts_t = self._decode(code)
            idx = (codes == code).nonzero().squeeze(1)
            rows = idx.tolist()
            if not alts_c or not alts_t:
                for r in rows:
                    self._fill_skipped(out[r : r + 1])
                continue
            xg = _take(x_clips, rows)
            if self.folded:
                xg = xg.flatten(0, 1)
            self._hard_group(xg, vc.index_select(0, idx), vt.index_select(0, idx), alts_c, alts_t, out=out, rows=rows)
        return native

    def _decode(self, code: int) -> tuple[list[int], list[int]]:
        """Channel and temporal alternatives in use, from a bit code of `forward`."""
        alts_c = [i for i in range(self.num_channel) if code >> i & 1]
        alts_t = [j for j in range(self.num_temporal) if code >> (self.num_channel + j) & 1]
        return alts_c, alts_t

    def _as_output_clips(self, native: torch.Tensor, b: int) -> torch.Tensor:
        """Logical (b, C, T_o, H, W) view of a native output."""
        return native.unflatten(0, (b, self.out_frames)).transpose(1, 2) if self.folded else native

    def _skipped_output(self, b: int, height: int, width: int, x: torch.Tensor) -> torch.Tensor:
        """Native output of a batch whose every clip skips the layer."""
        native = torch.empty(self._output_shape(b, height, width), device=x.device, dtype=x.dtype,
                             memory_format=self._memory_format(x))  # the layout every other path returns
        self._fill_skipped(self._as_output_clips(native, b))
        return native

    def _fill_skipped(self, dst5: torch.Tensor) -> None:
        """What a clip whose gate zeroed a whole dimension outputs: zeros, or the absorbed shift."""
        _, s5 = self._post5()
        if s5 is None:
            dst5.zero_()
        else:
            dst5.copy_(s5.expand_as(dst5))

    def _bit_values(self, device: torch.device) -> torch.Tensor:
        """2**i for each gate output (channel alternatives, then temporal ones), cached per device."""
        key = ("bits", device)
        if key not in self._cache:
            self._cache[key] = 2 ** torch.arange(self.num_channel + self.num_temporal, device=device)
        return self._cache[key]

    def _code_tables(self, hw_out: tuple[int, int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Per bit code of `forward`: inference MACs (CPU float64), channel and temporal choice (-1: none in
        use), and the hard cost fraction; plus the channel and temporal fractions of each alternative.
        Built once per output size and device, so recording a forward is a few table lookups."""
        key = (hw_out, device, dtype)
        if key not in self._cache:
            ch_frac = [k / self.out_channels for k in self.channel_counts]
            t_frac = [self.computed_frames(r) / self.out_frames for r in self.temporal_factors]
            macs, choice_c, choice_t, hard = [], [], [], []
            for code in range(2 ** (self.num_channel + self.num_temporal)):
                alts_c, alts_t = self._decode(code)
                ic, it = (alts_c[0] if alts_c else -1), (alts_t[0] if alts_t else -1)
                macs.append(self._policy_macs(alts_c, alts_t, hw_out))
                choice_c.append(ic)
                choice_t.append(it)
                hard.append(0.0 if ic < 0 or it < 0 else ch_frac[ic] * t_frac[it])
            self._cache[key] = (
                torch.tensor(macs, dtype=torch.float64),
                torch.tensor(choice_c, device=device), torch.tensor(choice_t, device=device),
                torch.tensor(hard, device=device, dtype=dtype),
                torch.tensor(ch_frac, device=device, dtype=dtype), torch.tensor(t_frac, device=device, dtype=dtype),
            )
        return self._cache[key]

    def _record(self, vt, vc, codes, v, hw_out) -> None:
        """Store this forward's per-clip decisions and costs in ``self.last``."""
        macs, choice_c, choice_t, hard, ch_frac, t_frac = self._code_tables(hw_out, vc.device, vc.dtype)
        # differentiable stand-in: expected fraction under the normalised gate weights (method doc §5)
        soft_c = (vc * ch_frac).sum(1) / vc.sum(1).clamp(min=1e-12)
        soft_t = (vt * t_frac).sum(1) / vt.sum(1).clamp(min=1e-12)
        soft = soft_c * soft_t
        hw = hw_out[0] * hw_out[1]
        self.last = LayerRecord(
            clip_macs=macs[codes.cpu()],
            full_macs=float(self._conv_macs(self.out_channels, self.out_frames, hw)),
            cost_fraction=soft + (hard[codes] - soft).detach(),
            channel_choice=choice_c[codes],
            temporal_choice=choice_t[codes],
            gate=None if v is None else torch.cat([vt, vc], 1).detach(),
        )
