"""`DynamicConv`: the VA-RED² dynamic convolution wrapped around an existing Conv3d / Conv2d.

The per-layer mechanism (method doc §1–4):

::

    X ─► gate ─► V_t, V_c (per clip)
    X ─► conv at the largest alternative in use (fewer output channels / frames)
       ─► channel alternatives: [Y'[:k_i], Φ^c_i(Y'[:k_i])], weighted by V_c[i], summed   (eq. 3.5, left)
       ─► temporal alternatives: frames kept every R_j, rest rebuilt by Φ^t_j, weighted by V_t[j], summed
       ─► Y (same shape as the original conv's output)

Soft mode (training) computes the full conv once and slices every alternative from it (shared weights).
Hard mode (eval) groups the clips of a batch by the alternatives they use and runs each group's conv at its
own reduced size. Both give the same numbers because Φ^c works frame by frame (method doc §4).

This module holds the layer itself: its parts, the absorbed BatchNorm affine, the gate weights with any
pinned policy, the reduced conv, eq. 3.5 (`_assemble`) and the forward that picks a mode. The hard path
lives in `hard_path`, the cost records in `record`, the write helpers in `writes`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .cheap_ops import ChannelCheapOp, TemporalCheapOp
from .derived import derived, parameter
from .gate import SoftModulationGate
from .hard_path import HardPath
from .record import LayerCosts, LayerRecord
from .spec import DynamicSpec
from .writes import fold, unfold

__all__ = ["DynamicConv", "LayerRecord", "Mode"]

Mode = Literal["auto", "soft", "hard"]


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _channel_counts(conv: nn.Conv2d | nn.Conv3d, spec: DynamicSpec) -> list[int]:
    """Output channels each channel alternative computes: ceil(C_out / 2**i)."""
    return [spec.channel_count(conv.out_channels, i) for i in range(spec.num_channel)]


def _check_conv(conv: nn.Module, spec: DynamicSpec, where: str) -> None:
    """Refuse, naming the module, a conv this spec cannot make dynamic."""
    if not isinstance(conv, (nn.Conv2d, nn.Conv3d)):
        raise ValueError(f"{where} is {type(conv).__name__}, not nn.Conv2d or nn.Conv3d: only convs can be made dynamic")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{where} uses padding_mode={conv.padding_mode!r}; dynamic convs support only 'zeros'")
    if spec.num_channel > 1:
        if conv.out_channels < 2:
            raise ValueError(f"{where} has {conv.out_channels} output channel; channel reduction needs at least 2")
        per_group = conv.out_channels // conv.groups
        bad = [k for k in _channel_counts(conv, spec) if conv.groups > 1 and k % per_group]
        if bad:
            raise ValueError(
                f"{where} has groups={conv.groups} ({per_group} output channels per group): computing "
                f"{bad[0]} of {conv.out_channels} channels would split a group; use channel=False for it, "
                f"a smaller search_space, or leave it static"
            )


def _check_parts(layer: DynamicConv, gate: SoftModulationGate | None, channel_ops: Sequence[ChannelCheapOp],
                 temporal_ops: Sequence[TemporalCheapOp], where: str) -> None:  # fmt: skip
    """Refuse parts that do not fit the layer and its spec (wrong count, size or gated dimensions)."""
    gated_t = layer.num_temporal if layer.num_temporal > 1 else 0
    gated_c = layer.num_channel if layer.num_channel > 1 else 0
    if layer.spec.is_static:
        if gate is not None:
            raise ValueError(f"{where}: a static spec takes no gate")
    elif gate is None or (gate.num_temporal, gate.num_channel) != (gated_t, gated_c) or \
            (gate.in_channels, gate.in_frames) != (layer.in_channels, layer.in_frames):
        got = "none" if gate is None else (f"{gate.num_temporal} temporal + {gate.num_channel} channel outputs over "
                                           f"{gate.in_channels}×{gate.in_frames} inputs")  # fmt: skip
        raise ValueError(f"{where}: the gate must have {gated_t} temporal + {gated_c} channel outputs over "
                         f"{layer.in_channels}×{layer.in_frames} inputs; got {got}")  # fmt: skip
    want_c = [(k, layer.out_channels - k) for k in layer.channel_counts[1:]]
    got_c = [(op.in_channels, op.out_channels) for op in channel_ops]
    if got_c != want_c:
        raise ValueError(f"{where}: channel cheap ops must map (computed, rebuilt) channels {want_c}; got {got_c}")
    want_t = layer.temporal_factors[1:]
    got_t = [(op.factor, op.weight.shape[1]) for op in temporal_ops]
    if got_t != [(r, layer.out_channels) for r in want_t]:
        raise ValueError(f"{where}: temporal cheap ops must have factors {want_t} over {layer.out_channels} "
                         f"channels; got {got_t}")  # fmt: skip


class DynamicConv(HardPath, LayerCosts, nn.Module):
    """A Conv3d (or a Conv2d in a net that folds time into the batch) made input-dependent.

    The layer receives its parts built: the gate and the cheap ops (`build` makes them from a
    `DynamicSpec`, as `dynamize` does). The original ``weight`` and ``bias`` Parameters are kept as the
    same tensors under the same names, so a static state dict loads into the dynamized model (new gate
    and cheap-op entries aside).

    Args:
        conv: the ``nn.Conv3d`` or ``nn.Conv2d`` to wrap (padding mode ``zeros``).
        spec: what is dynamic, the search space and the mixing options.
        in_frames: frames per clip entering the conv (for a Conv2d: how many consecutive batch entries
            form one clip).
        gate: the soft modulation gate (eq. 3.4) with the spec's gated dimensions, or ``None`` for a
            static spec.
        channel_ops: Φ^c for each reduced channel alternative, in order (``search_space - 1`` of them when
            channels are dynamic, else none).
        temporal_ops: Φ^t for each reduced temporal alternative, in order.
        name: module path, for error messages.

    Example:
        >>> conv = nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1))
        >>> dyn = DynamicConv.build(conv, DynamicSpec(search_space=2), in_frames=4).eval()
        >>> dyn(torch.randn(2, 8, 4, 10, 10)).shape
        torch.Size([2, 16, 4, 10, 10])
    """

    def __init__(self, conv: nn.Conv2d | nn.Conv3d, spec: DynamicSpec, *, in_frames: int,
                 gate: SoftModulationGate | None, channel_ops: Sequence[ChannelCheapOp],
                 temporal_ops: Sequence[TemporalCheapOp], name: str = "") -> None:  # fmt: skip
        super().__init__()
        where = f"module '{name}'" if name else "conv"
        _check_conv(conv, spec, where)
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
        self.channel_counts = _channel_counts(conv, spec)
        self.temporal_factors = [2**j for j in range(self.num_temporal)]
        _check_parts(self, gate, channel_ops, temporal_ops, where)
        self.gate = gate
        self.channel_ops = nn.ModuleList(channel_ops)
        self.temporal_ops = nn.ModuleList(temporal_ops)
        # y ← y·post_scale + post_shift per output channel after the layer: a following eval BatchNorm
        # absorbed by `absorb_affine` (see `fuse_batchnorm`); None for a plain layer
        self.register_buffer("post_scale", None)
        self.register_buffer("post_shift", None)
        self._cache: dict = {}  # the fused weight, per-device constants and per-size cost tables
        self.mode: Mode = "auto"
        self.forced_temporal: torch.Tensor | int | None = None
        self.forced_channel: torch.Tensor | int | None = None
        self.last: LayerRecord | None = None

    @classmethod
    def build(cls, conv: nn.Conv2d | nn.Conv3d, spec: DynamicSpec, *, in_frames: int, name: str = "") -> DynamicConv:
        """The dynamic conv of ``spec`` around ``conv``: its gate and cheap ops made from the spec, on the
        conv's device."""
        _check_conv(conv, spec, f"module '{name}'" if name else "conv")
        device = conv.weight.device
        num_t, num_c = spec.num_temporal, spec.num_channel
        gate = None
        if not spec.is_static:
            gate = SoftModulationGate(
                conv.in_channels, in_frames, hidden=spec.gate.hidden,
                num_temporal=num_t if num_t > 1 else 0, num_channel=num_c if num_c > 1 else 0,
                bias_full=spec.gate.bias_full, bias_reduced=spec.gate.bias_reduced,
                detach_input=spec.stability.detach_gate_input,
            ).to(device=device)  # fmt: skip
        channel_ops = [
            ChannelCheapOp(k, conv.out_channels - k, kernel_size=spec.cheap_ops.kernel, weight_ndim=conv.weight.dim(),
                           zero_init=spec.cheap_ops.zero_init).to(device=device)
            for k in _channel_counts(conv, spec)[1:]
        ]  # fmt: skip
        temporal_ops = [TemporalCheapOp(2**j, conv.out_channels).to(device=device) for j in range(1, num_t)]
        return cls(conv, spec, in_frames=in_frames, gate=gate, channel_ops=channel_ops, temporal_ops=temporal_ops,
                   name=name)  # fmt: skip

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

    def _post5(self, channels: slice = slice(None)) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The absorbed (scale, shift) of ``channels``, shaped (1, c, 1, 1, 1); (None, None) without one."""
        scale, shift = parameter(self, "post_scale"), parameter(self, "post_shift")
        if scale is None:
            return None, None
        if channels == slice(None):  # every forward of a layer with an absorbed affine asks for these
            return derived(self._cache, "post5", (scale, shift),
                           lambda: (scale.view(1, -1, 1, 1, 1), shift.view(1, -1, 1, 1, 1)))
        return scale[channels].view(1, -1, 1, 1, 1), shift[channels].view(1, -1, 1, 1, 1)

    def _apply_post(self, y5: torch.Tensor) -> torch.Tensor:
        a5, b5 = self._post5()
        return y5 if a5 is None else torch.addcmul(b5, y5, a5)

    def _fused_weight(self, with_shift: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the conv with the absorbed affine folded in (cached until a tensor changes):
        ``conv(x; W·a, bias·a [+ shift])`` equals ``a·conv(x) [+ shift]``."""
        def fuse() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            a = self.post_scale
            weight = torch.empty_like(self.weight, requires_grad=False)  # same strides: the conv keeps its layout
            torch.mul(self.weight.detach(), a.view(-1, *([1] * (self.weight.dim() - 1))), out=weight)
            bias = (self.bias * a).detach() if self.bias is not None else torch.zeros_like(a)
            return weight, bias, bias + self.post_shift

        sources = [parameter(self, n) for n in ("weight", "bias", "post_scale", "post_shift")]
        weight, bias, bias_shift = derived(self._cache, "fused", sources, fuse)
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

    # ---------------------------------------------------------------- gate weights
    def _gate_weights(self, x5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[list[float]]]:
        """(B, S_t) temporal and (B, S_c) channel weights after any pinned policy, the gate's own output, and
        the weights as Python rows ``[V_c..., V_t...]`` (one host read: the policy decisions are made on them)."""
        b = x5.shape[0]
        gate = self._modules.get("gate")  # None (an attribute) for a static spec
        v = gate(x5) if gate is not None else None
        gated_t, gated_c = v is not None and self.num_temporal > 1, v is not None and self.num_channel > 1
        ones = None if gated_t and gated_c else self._constant(("ones", b), x5, lambda: x5.new_ones(b, 1))
        if self.forced_temporal is not None:
            vt, gated_t = self._one_hot(self.forced_temporal, b, self.num_temporal, x5), False
        else:
            vt = v[:, : gate.num_temporal] if gated_t else ones
        if self.forced_channel is not None:
            vc, gated_c = self._one_hot(self.forced_channel, b, self.num_channel, x5), False
        else:
            vc = v[:, v.shape[1] - gate.num_channel:] if gated_c else ones
        if self.spec.stability.normalize_weights:  # a clip's weights sum to 1 per dimension (0 stays 0: layer skipped)
            floor = self.spec.stability.normalize_floor
            vt = vt / vt.sum(1, keepdim=True).clamp(min=floor)
            vc = vc / vc.sum(1, keepdim=True).clamp(min=floor)
        rows = [c + t for c, t in zip(vc.tolist(), vt.tolist())]
        if not self.spec.stability.skip_layers and (gated_t or gated_c):
            # a gated dimension weighted all zero takes its cheapest alternative (pinned ones never are)
            nc = self.num_channel
            dead_c = gated_c and any(max(r[:nc]) <= 0 for r in rows)
            dead_t = gated_t and any(max(r[nc:]) <= 0 for r in rows)
            if dead_c or dead_t:
                vt, vc = (self._no_skip(vt) if dead_t else vt), (self._no_skip(vc) if dead_c else vc)
                rows = [c + t for c, t in zip(vc.tolist(), vt.tolist())]
        return vt, vc, v, rows

    @staticmethod
    def _no_skip(v: torch.Tensor) -> torch.Tensor:
        """``v`` (B, S) with each all-zero row replaced by weight 1 on the last (cheapest) alternative."""
        dead = v.amax(1, keepdim=True) <= 0
        cheapest = torch.zeros_like(v[:1])
        cheapest[0, -1] = 1
        return torch.where(dead, cheapest, v)

    def _constant(self, key: tuple, like: torch.Tensor, make) -> torch.Tensor:
        """A small constant tensor made once per key, device and dtype (pinned one-hots, ones): a `derived`
        value with nothing it could go stale on."""
        return derived(self._cache, (*key, like.device, like.dtype), (), make)

    def _pin(self, temporal: torch.Tensor | int | None, channel: torch.Tensor | int | None) -> None:
        """Set the pinned (temporal, channel) choices, already checked (`force_policy` and its kin check them).

        Written to the instance dict directly: they are plain attributes, and ``nn.Module.__setattr__`` costs
        microseconds each, which pinning the 52 layers of X3D-M around a timed forward would notice."""
        self.__dict__["forced_temporal"] = temporal
        self.__dict__["forced_channel"] = channel

    def _one_hot(self, choice: torch.Tensor | int, b: int, n: int, like: torch.Tensor) -> torch.Tensor:
        if isinstance(choice, int) or (isinstance(choice, torch.Tensor) and choice.dim() == 0):
            i = int(choice)
            return self._constant(("one_hot", i, b, n), like, lambda: F.one_hot(
                torch.full((b,), i, dtype=torch.long, device=like.device), n).to(like.dtype))
        idx = torch.as_tensor(choice).to(like.device).long()
        if idx.shape[0] != b:
            raise ValueError(f"a per-clip pinned policy has {idx.shape[0]} entries for a batch of {b} clips")
        return F.one_hot(idx, n).to(like.dtype)

    def _codes(self, rows: list[list[float]]) -> list[int]:
        """Each clip's policy as one bit code (bit i: gate output i of ``[V_c..., V_t...]`` is in use)."""
        return [sum(1 << i for i, w in enumerate(row) if w > 0) for row in rows]

    # ---------------------------------------------------------------- layout helpers
    def _as_clips(self, x: torch.Tensor) -> torch.Tensor:
        """Native input → logical (B, C, T, H, W) view (no copy)."""
        return x.unflatten(0, (-1, self.in_frames)).transpose(1, 2) if self.folded else x

    def _to_native(self, y5: torch.Tensor) -> torch.Tensor:
        return y5.transpose(1, 2).flatten(0, 1) if self.folded else y5

    # ---------------------------------------------------------------- computation
    def _reduced_conv(
        self, x: torch.Tensor, channels: int, factor: int, params: tuple[torch.Tensor, torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """The conv computing only ``channels`` outputs at every ``factor``-th output frame.

        ``x`` is the native input of the clips concerned; returns logical (b, channels, T_o/R, H_o, W_o).
        ``params`` replaces (weight, bias) (the fused ones of `_fused_weight`).
        """
        weight, bias = params if params is not None else (parameter(self, "weight"), parameter(self, "bias"))
        if channels < self.out_channels:
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
            return unfold(y, b)
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
                rebuilt = unfold(self.channel_ops[i - 1](fold(part)), b)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x5 = self._as_clips(x)
        b, height, width = x5.shape[0], x5.shape[3], x5.shape[4]
        vt, vc, v, rows = self._gate_weights(x5)
        codes = self._codes(rows)  # which alternatives each clip uses (channel alternatives first)
        hard = self.mode == "hard" or (self.mode == "auto" and not self.training)
        self._record(vt, vc, codes, v, self._spatial_out(height, width))

        if not hard:  # soft: one full conv, every alternative in use anywhere in the batch sliced from it
            in_use = 0
            for code in codes:
                in_use |= code
            alts_c, alts_t = self._decode(in_use)
            if not alts_c or not alts_t:
                return self._skipped_output(b, height, width, x)
            y5 = self._assemble(self._reduced_conv(x, self.out_channels, 1), vc, vt, alts_c, alts_t, 1)
            kept = [all(self._decode(code)) for code in codes]
            if not all(kept):  # a clip whose gate zeroes a whole dimension skips the layer (outputs 0)
                y5 = y5 * torch.tensor(kept, dtype=y5.dtype, device=y5.device).view(b, 1, 1, 1, 1)
            return self._to_native(self._apply_post(y5))

        # hard: clips that use the same alternatives run together, at their own reduced size
        uniq = sorted(set(codes))
        if len(uniq) == 1:
            alts_c, alts_t = self._decode(uniq[0])
            if not alts_c or not alts_t:
                return self._skipped_output(b, height, width, x)
            return self._to_native(self._hard_group(x, vc, vt, alts_c, alts_t, rows))
        return self._hard_mixed(x, vc, vt, codes, rows, uniq, height, width)
