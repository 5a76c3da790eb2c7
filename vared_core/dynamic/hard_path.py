"""Hard mode of `DynamicConv` (evaluation): clips grouped by policy, each group's conv at its reduced size.

Four branches, each reached by the equivalence tests (`tests/vared_core/dynamic/test_equivalence.py`):

* ``_hard_assembled`` — a forward that records gradients (or a cheap op's BatchNorm in training mode): the
  conv at the largest alternative in use, then eq. 3.5 through `DynamicConv._assemble`, as soft mode.
* ``_hard_mixture`` — several alternatives in a dimension without autograd (a gate that keeps more than one
  open): the same conv, then eq. 3.5 written part by part into one output buffer, every factor folded in.
* ``_hard_direct`` — one alternative per dimension without autograd (pinned policies, hard-gated
  inference): computed and rebuilt parts written straight into one output buffer, the gate weights
  and any absorbed BatchNorm affine applied while writing (`writes.emit`).
* ``_hard_mixed`` — a batch whose clips use different policies: every group written into its own rows
  of the batch output; a clip that skips the layer gets ``_fill_skipped``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .derived import batchnorm_sources, derived, parameter
from .writes import add, affine_into, channels, emit, fold, memory_format_of, mul, take, unfold

__all__ = ["HardPath"]


def _gated(shift: torch.Tensor | None, v5: torch.Tensor) -> torch.Tensor | None:
    """A shift scaled by per-clip gate weights (None, a zero shift, stays None)."""
    return None if shift is None else shift * v5


def _on_channels(t: torch.Tensor, band: slice, channels: int) -> torch.Tensor:
    """A factor ``t`` (n, c or 1, 1, 1, 1) of the channels in ``band`` as one over all ``channels``, zero elsewhere."""
    full = t.new_zeros(t.shape[0], channels, 1, 1, 1)
    full[:, band] = t
    return full


class _DirectParts(NamedTuple):
    """The per-channel factors `HardPath._hard_direct` writes with that do not depend on the gate weights.

    With the absorbed affine (a, s), the channel op's eval BatchNorm (β_s, β_b) and Φ^t's (w_j, b_j), eq. 3.5
    for one alternative each writes, with V = V_c·V_t:

    * computed maps: ``y·(a·V) + s`` (``scale_k``, ``shift_k``);
    * channel-rebuilt maps: ``r·(β_s·a·V) + (β_b·a·V + s)``: ``rebuilt_scale`` (β_s·a), ``rebuilt_gated_shift``
      (β_b·a), ``shift_r`` (s), and ``rebuilt_shift`` = β_b·a + s for V = 1;
    * frame j of each temporal step: ``w_j·(computed frame) + (b_j·a·V_t + s·(1 - w_j))`` (Φ^t's bias sits
      outside V_c): ``frames`` holds (j, w_j, its shift for V_t = 1, b_j·a, s·(1 - w_j)).

    Every factor is shaped (1, c, 1, 1, 1), or None for 1 (a scale) or 0 (a shift).
    """

    scale_k: torch.Tensor | None
    shift_k: torch.Tensor | None
    rebuilt_scale: torch.Tensor | None
    rebuilt_gated_shift: torch.Tensor | None
    shift_r: torch.Tensor | None
    rebuilt_shift: torch.Tensor | None
    frames: list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]]

    @classmethod
    def make(cls, layer: HardPath, ic: int, it: int) -> _DirectParts:
        k, factor = layer.channel_counts[ic], layer.temporal_factors[it]
        a5, s5 = layer._post5()
        rebuilt_scale = rebuilt_gated_shift = shift_r = rebuilt_shift = None
        if k < layer.out_channels:
            op = layer.channel_ops[ic - 1]
            a_r, shift_r = channels(a5, slice(k, None)), channels(s5, slice(k, None))
            rebuilt_scale = a_r
            if not op.bn.training:
                bn_scale, bn_shift = (t.view(1, -1, 1, 1, 1) for t in op.bn_affine())
                rebuilt_scale, rebuilt_gated_shift = mul(bn_scale, a_r), mul(bn_shift, a_r)
            rebuilt_shift = add(rebuilt_gated_shift, shift_r)
        frames = []
        if factor > 1:
            frame_scales, shifts = layer.temporal_ops[it - 1].tables()
            for j in range(1, factor):
                w5 = frame_scales[j].view(1, -1, 1, 1, 1)
                bias_a = mul(shifts[j].view(1, -1, 1, 1, 1), a5)
                shift_s = None if s5 is None else s5 * (1 - w5)
                frames.append((j, w5, add(bias_a, shift_s), bias_a, shift_s))
        return cls(channels(a5, slice(k)), channels(s5, slice(k)), rebuilt_scale, rebuilt_gated_shift, shift_r,
                   rebuilt_shift, frames)


class HardPath:
    """The hard-mode forward of `DynamicConv` (a mixin).

    Uses the layer's shapes (``out_channels``, ``out_frames``, ``in_frames``, ``folded``,
    ``channel_counts``, ``temporal_factors``), its cheap ops, ``weight`` and the methods
    ``_reduced_conv``, ``_assemble``, ``_apply_post``, ``_post5``, ``_fused_weight``, ``_to_native``,
    ``_spatial_out`` and ``_decode``.
    """

    def _hard_group(
        self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, alts_c: list[int], alts_t: list[int],
        weights: list[list[float]], out: torch.Tensor | None = None, rows: list[int] | None = None,
    ) -> torch.Tensor:
        """Hard-mode output (logical 5D) of clips that all use the alternatives ``alts_c`` / ``alts_t``.

        ``weights`` holds these clips' gate weights as Python rows ``[V_c..., V_t...]``. With ``out`` (the
        logical output of the whole batch) and ``rows`` (the batch indices of these clips), the parts are
        written straight into those clips' slices of ``out``, which is returned.
        """
        grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        if len(alts_c) > 1 or len(alts_t) > 1 or grad:
            batch_stats = any(self.channel_ops[i - 1].bn.training for i in alts_c if i > 0)
            if grad or batch_stats:
                return self._hard_assembled(x, vc, vt, alts_c, alts_t, out, rows)
            return self._hard_mixture(x, vc, vt, alts_c, alts_t, out, rows)
        return self._hard_direct(x, vc, vt, alts_c[0], alts_t[0], weights, out, rows)

    def _hard_mixture(
        self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, alts_c: list[int], alts_t: list[int],
        out: torch.Tensor | None, rows: list[int] | None,
    ) -> torch.Tensor:
        """`_hard_group` for several alternatives in a dimension, without autograd: eq. 3.5 written part by part
        into the output instead of assembled term by term (what a gate that keeps more than one alternative open
        costs at inference).

        The conv runs once at the largest alternative in use: k₀ channels at every R₀-th frame (``y``). Channel c
        of the channel mixture is ``Σ_{i: k_i > c} V_c[i]·y[c] + Σ_{i: k_i ≤ c} V_c[i]·Φ^c_i(y[:k_i])[c - k_i]``;
        output frame t is ``Σ_j V_t[j]·(w_j[t mod R_j]·Y_c[t - t mod R_j] + b_j[t mod R_j])``. Each Φ^c's
        BatchNorm, Φ^t's biases and the absorbed affine ride in per-channel factors, so every part of the output
        is written once and each further term added to it in place.
        """
        b = vc.shape[0]
        k0, r0 = self.channel_counts[alts_c[0]], self.temporal_factors[alts_t[0]]
        y5 = self._reduced_conv(x, k0, r0)
        target = out
        if out is not None and rows is not None:  # consecutive rows are a slice of the batch output
            target = out[rows[0] : rows[0] + b] if rows == list(range(rows[0], rows[0] + b)) else None
        result = target if target is not None else self._new_output(y5)
        a5, s5 = self._post5()
        v_c = {i: vc[:, i].view(b, 1, 1, 1, 1) if self.num_channel > 1 else None for i in alts_c}
        if len(alts_t) == 1 and r0 == 1:  # time keeps every frame: the channel mixture is the output
            gain = a5 if self.num_temporal == 1 else mul(a5, vt[:, alts_t[0]].view(b, 1, 1, 1, 1))
            self._write_channel_mixture(y5, v_c, alts_c, result, gain, s5)
        else:
            mixed = self._new_output(y5)[:, :, : y5.shape[2]]  # Y_c at the computed frames
            self._write_channel_mixture(y5, v_c, alts_c, mixed, None, None)
            self._write_temporal_mixture(mixed, vt, alts_t, r0, result, a5, s5)
        if out is None:
            return result
        if target is None:
            emit(result, None, None, out, rows)
        return out

    def _write_channel_mixture(self, y5: torch.Tensor, v_c: dict[int, torch.Tensor | None], alts_c: list[int],
                               dst: torch.Tensor, gain: torch.Tensor | None, shift: torch.Tensor | None) -> None:
        """``dst`` (b, C, T', H, W) = gain·Y_c + shift, Y_c the gate-weighted sum of the channel alternatives
        ``alts_c`` (weights ``v_c``, None = 1) built from the computed block ``y5`` (b, k₀, T', H, W)."""
        k0, c_out = y5.shape[1], self.out_channels
        coef = None  # per channel of y: the summed weights of the alternatives that computed that channel
        shift_all = shift
        rebuilds = []
        for i in alts_c:
            k = self.channel_counts[i]
            if i == alts_c[0]:
                coef = v_c[i]  # the first alternative computed every channel of y
            elif k == k0:  # (tiny layers: a smaller alternative can round up to the same count)
                coef = coef + v_c[i]
            else:  # a later one computed only y's first k channels
                coef = coef + _on_channels(v_c[i], slice(k), k0)
            if k < c_out:
                op = self.channel_ops[i - 1]
                bn_scale, bn_shift = derived(self._cache, ("rebuild_bn", i), batchnorm_sources(op.bn),
                                             lambda op=op: [t.view(1, -1, 1, 1, 1) for t in op.bn_affine()])
                g = channels(gain, slice(k, None))
                rebuilds.append((i, k, op, mul(mul(bn_scale, v_c[i]), g)))
                shift_all = add(shift_all, _on_channels(mul(mul(bn_shift, v_c[i]), g), slice(k, None), c_out))
        affine_into(y5, mul(coef, channels(gain, slice(k0))), channels(shift_all, slice(k0)), dst[:, :k0])
        b = y5.shape[0]
        for i, k, op, scale in rebuilds:
            rebuilt = unfold(op.conv(fold(y5[:, :k])), b)
            if i == alts_c[0]:  # its rebuild writes channels k₀.., which nothing has written yet
                affine_into(rebuilt, scale, channels(shift_all, slice(k, None)), dst[:, k:])
            else:
                dst[:, k:].addcmul_(rebuilt, scale)

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
        emit(y5, None, None, out, rows)
        return out

    def _hard_direct(
        self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, ic: int, it: int, weights: list[list[float]],
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
        b, it_w = vc.shape[0], self.num_channel + it  # V_t[it]'s place in a row of ``weights``
        unit_t = all(w[it_w] == 1 for w in weights)
        unit = all(w[ic] * w[it_w] == 1 for w in weights)
        v5 = None if unit else (vc[:, ic] * vt[:, it]).view(b, 1, 1, 1, 1)
        a5, s5 = self._post5()
        if k == self.out_channels and factor == 1:
            if out is None and a5 is not None:  # the affine rides in the conv's weights
                y5 = self._reduced_conv(x, k, 1, self._fused_weight(with_shift=v5 is None))
                return y5 if v5 is None else torch.addcmul(s5, y5, v5, out=y5)
            y5 = self._reduced_conv(x, k, 1)
            if out is None:
                return y5 if v5 is None else y5.mul_(v5)
            emit(y5, mul(a5, v5), s5, out, rows)
            return out
        y5 = self._reduced_conv(x, k, factor)
        if out is None:
            out = self._new_output(y5)
        computed = out[:, :, ::factor]
        parts = self._direct_parts(ic, it)
        emit(y5, mul(parts.scale_k, v5), parts.shift_k, computed[:, :k], rows)
        if k < self.out_channels:
            op = self.channel_ops[ic - 1]
            rebuilt = unfold(op.conv(fold(y5)), b)
            if op.bn.training:  # batch statistics: BN has to see the maps
                rebuilt = unfold(op.bn(fold(rebuilt)), b)
            if v5 is None:
                scale_r, shift_r = parts.rebuilt_scale, parts.rebuilt_shift
            else:
                scale_r, shift_r = mul(parts.rebuilt_scale, v5), add(_gated(parts.rebuilt_gated_shift, v5), parts.shift_r)
            emit(rebuilt, scale_r, shift_r, computed[:, k:], rows)
        if factor > 1:
            vt5 = None if unit_t else vt[:, it].view(b, 1, 1, 1, 1)
            for j, frame_scale, shift_unit, gated_shift, shift_s in parts.frames:
                n = len(range(j, self.out_frames, factor))
                if n == 0:
                    continue
                shift = shift_unit if vt5 is None else add(_gated(gated_shift, vt5), shift_s)
                emit(computed[:, :, :n], frame_scale, shift, out[:, :, j::factor], rows, src_in_batch=True)
        return out

    def _write_temporal_mixture(self, mixed: torch.Tensor, vt: torch.Tensor, alts_t: list[int], r0: int,
                                dst: torch.Tensor, a5: torch.Tensor | None, s5: torch.Tensor | None) -> None:
        """``dst`` (b, C, T_o, H, W) = a·Σ_j V_t[j]·f^t(Y_c, j) + s, from ``mixed`` = Y_c at every ``r0``-th frame.

        Output frames t ≡ ρ (mod R_max) read, for alternative j, the computed frame t - (ρ mod R_j) with Φ^t_j's
        weight and bias of offset ρ mod R_j: a strided view each, so a residue class is one write plus one
        in-place multiply-add per further frame offset."""
        b = vt.shape[0]
        r_max = self.temporal_factors[alts_t[-1]]
        tables = {j: self.temporal_ops[j - 1].tables() for j in alts_t if j > 0}
        for rho in range(r_max):
            n = len(range(rho, self.out_frames, r_max))
            if n == 0:
                continue
            coefs: dict[int, torch.Tensor] = {}  # frame offset back → its per-clip, per-channel weight
            const = None
            for j in alts_t:
                v = vt[:, j].view(b, 1, 1, 1, 1)
                offset = rho % self.temporal_factors[j]
                if j == 0 or offset == 0:
                    w, bias = v, None
                else:
                    scale, shift = tables[j]
                    w, bias = scale[offset].view(1, -1, 1, 1, 1) * v, shift[offset].view(1, -1, 1, 1, 1) * v
                coefs[offset] = add(coefs.get(offset), w)
                const = add(const, bias)
            view = dst[:, :, rho::r_max]
            for m, (offset, w) in enumerate(coefs.items()):
                src = mixed[:, :, (rho - offset) // r0 :: r_max // r0][:, :, :n]
                if m == 0:
                    affine_into(src, mul(a5, w), add(None if const is None else mul(a5, const), s5), view)
                else:
                    view.addcmul_(src, mul(a5, w))

    def _direct_parts(self, ic: int, it: int) -> _DirectParts:
        """`_DirectParts` of the alternatives (``ic``, ``it``); under ``no_grad`` kept until a tensor they
        are made from changes (a fine-tune step, `absorb_affine`, loading a state dict)."""
        k, factor = self.channel_counts[ic], self.temporal_factors[it]
        op = self.channel_ops[ic - 1] if k < self.out_channels else None
        t_op = self.temporal_ops[it - 1] if factor > 1 else None
        if torch.is_grad_enabled():
            return _DirectParts.make(self, ic, it)
        sources = [parameter(self, "post_scale"), parameter(self, "post_shift")]
        if op is not None and not op.bn.training:
            sources += batchnorm_sources(op.bn)
        if t_op is not None:
            sources += [parameter(t_op, "weight"), parameter(t_op, "bias")]
        key = ("direct", ic, it, op is not None and op.bn.training)
        return derived(self._cache, key, sources, lambda: _DirectParts.make(self, ic, it))

    def _hard_mixed(self, x: torch.Tensor, vc: torch.Tensor, vt: torch.Tensor, codes: list[int],
                    weights: list[list[float]], uniq: list[int], height: int, width: int) -> torch.Tensor:  # fmt: skip
        """Hard-mode native output of a batch whose clips use different alternatives (bit ``codes``, the
        distinct ones ``uniq``; gate weights as Python rows ``weights``): each group of clips runs at its own
        reduced size into its rows of the output, a clip that skips the layer gets `_fill_skipped`."""
        b = vc.shape[0]
        native = torch.empty(self._output_shape(b, height, width), device=x.device, dtype=x.dtype,
                             memory_format=memory_format_of(x))
        out = self._as_output_clips(native, b)
        x_clips = x.unflatten(0, (b, self.in_frames)) if self.folded else x
        for code in uniq:
            alts_c, alts_t = self._decode(code)
            rows = [i for i, c in enumerate(codes) if c == code]
            if not alts_c or not alts_t:
                for r in rows:
                    self._fill_skipped(out[r : r + 1])
                continue
            xg = take(x_clips, rows)
            if self.folded:
                xg = xg.flatten(0, 1)
            idx = torch.tensor(rows, device=vc.device)
            self._hard_group(xg, vc.index_select(0, idx), vt.index_select(0, idx), alts_c, alts_t,
                             [weights[r] for r in rows], out=out, rows=rows)
        return native

    def _skipped_output(self, b: int, height: int, width: int, x: torch.Tensor) -> torch.Tensor:
        """Native output of a batch whose every clip skips the layer."""
        native = torch.empty(self._output_shape(b, height, width), device=x.device, dtype=x.dtype,
                             memory_format=memory_format_of(x))  # the layout every other path returns
        self._fill_skipped(self._as_output_clips(native, b))
        return native

    def _fill_skipped(self, dst5: torch.Tensor) -> None:
        """What a clip whose gate zeroed a whole dimension outputs: zeros, or the absorbed shift."""
        _, s5 = self._post5()
        if s5 is None:
            dst5.zero_()
        else:
            dst5.copy_(s5.expand_as(dst5))

    # ---------------------------------------------------------------- output buffers
    def _new_output(self, like5: torch.Tensor) -> torch.Tensor:
        """An uninitialised output in the native layout and memory format of ``like5``'s native form,
        returned as its logical (b, C, T_o, H, W) view."""
        b, _, _, ho, wo = like5.shape
        native = torch.empty(self._native_shape(b, ho, wo), device=like5.device, dtype=like5.dtype,
                             memory_format=memory_format_of(self._to_native(like5)))
        return self._as_output_clips(native, b)

    def _native_shape(self, b: int, ho: int, wo: int) -> tuple[int, ...]:
        if self.folded:
            return (b * self.out_frames, self.out_channels, ho, wo)
        return (b, self.out_channels, self.out_frames, ho, wo)

    def _output_shape(self, b: int, height: int, width: int) -> tuple[int, ...]:
        """Native output shape for ``b`` clips of input size ``height``×``width``."""
        return self._native_shape(b, *self._spatial_out(height, width))

    def _as_output_clips(self, native: torch.Tensor, b: int) -> torch.Tensor:
        """Logical (b, C, T_o, H, W) view of a native output."""
        return native.unflatten(0, (b, self.out_frames)).transpose(1, 2) if self.folded else native
