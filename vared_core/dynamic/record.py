"""What a dynamic layer decided and cost in its last forward: `LayerRecord`, and the per-policy cost tables.

A clip's policy in one layer is the set of alternatives its gate uses, written as one bit code
(channel alternatives first, then temporal ones). Everything a forward records — inference MACs,
the largest alternative in use per dimension, the hard cost fraction of eq. 3.6 — depends on the
code alone, so `LayerCosts` tabulates it once per output size and device and a forward records its
batch with a few lookups.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LayerCosts", "LayerRecord"]


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


class LayerCosts:
    """The cost side of `DynamicConv` (a mixin): policy bit codes, their MACs and fractions, and `_record`.

    Reads the layer's shape attributes (``in_channels``, ``out_channels``, ``groups``, ``kernel_size``,
    ``out_frames``, ``channel_counts``, ``temporal_factors``, ``num_channel``, ``num_temporal``), its
    ``gate`` and ``channel_ops`` (their MACs), ``computed_frames`` and the ``_cache`` dict; provides ``last``.
    """

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

    def _decode(self, code: int) -> tuple[list[int], list[int]]:
        """Channel and temporal alternatives in use, from a policy bit code; kept per code (every forward asks,
        and the lists are only read)."""
        table = self.__dict__.setdefault("_decoded", {})
        found = table.get(code)
        if found is None:
            alts_c = [i for i in range(self.num_channel) if code >> i & 1]
            alts_t = [j for j in range(self.num_temporal) if code >> (self.num_channel + j) & 1]
            found = table[code] = (alts_c, alts_t)
        return found

    def _code_tables(self, hw_out: tuple[int, int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Per bit code: inference MACs (CPU float64), channel and temporal choice (-1: none in use), and
        the hard cost fraction; plus the channel and temporal fractions of each alternative. Built once per
        output size and device, so recording a forward is a few table lookups."""
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

    def _record(self, vt: torch.Tensor, vc: torch.Tensor, codes: list[int], v: torch.Tensor | None,
                hw_out: tuple[int, int]) -> None:  # fmt: skip
        """Keep what this forward decided. Without autograd, `last` builds its `LayerRecord` when it is first
        read, so an inference forward whose costs nobody asks for pays no table lookups; a forward that records
        gradients builds it now, so its cost fraction joins the graph where it always did (the backward's order of
        accumulation, and with it the training's float results, stay as they were)."""
        if torch.is_grad_enabled() and (vt.requires_grad or vc.requires_grad):
            self.last = self._build_record(vt, vc, codes, v, hw_out)
            return
        self.__dict__["_last"] = None
        self.__dict__["_pending"] = (vt, vc, codes, v, hw_out)

    @property
    def last(self) -> LayerRecord | None:
        """What the last forward decided and cost (`LayerRecord`), or None before any forward."""
        pending = self.__dict__.get("_pending")
        if pending is not None:
            self.__dict__["_last"] = self._build_record(*pending)
            self.__dict__["_pending"] = None
        return self.__dict__.get("_last")

    @last.setter
    def last(self, record: LayerRecord | None) -> None:
        self.__dict__["_pending"] = None
        self.__dict__["_last"] = record

    def _build_record(self, vt: torch.Tensor, vc: torch.Tensor, codes: list[int], v: torch.Tensor | None,
                      hw_out: tuple[int, int]) -> LayerRecord:  # fmt: skip
        macs, choice_c, choice_t, hard, ch_frac, t_frac = self._code_tables(hw_out, vc.device, vc.dtype)
        codes_cpu = torch.tensor(codes)  # the MACs table is on the CPU; the others on the gate's device
        codes_t = codes_cpu.to(vc.device)
        # differentiable stand-in: expected fraction under the normalised gate weights (method doc §5)
        soft_c = (vc * ch_frac).sum(1) / vc.sum(1).clamp(min=1e-12)
        soft_t = (vt * t_frac).sum(1) / vt.sum(1).clamp(min=1e-12)
        soft = soft_c * soft_t
        hw = hw_out[0] * hw_out[1]
        return LayerRecord(
            clip_macs=macs[codes_cpu],
            full_macs=float(self._conv_macs(self.out_channels, self.out_frames, hw)),
            cost_fraction=soft + (hard[codes_t] - soft).detach(),
            channel_choice=choice_c[codes_t],
            temporal_choice=choice_t[codes_t],
            gate=None if v is None else torch.cat([vt, vc], 1).detach(),
        )
