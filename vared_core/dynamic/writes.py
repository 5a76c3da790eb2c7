"""How a dynamic conv writes its output: optional per-clip factors, clip rows, one-pass affine writes, layouts.

The hard path (`hard_path`) assembles a layer's output from parts — computed channels and frames,
rebuilt channels, rebuilt frames — each written once into its slice of one output buffer with its
scale and shift applied on the way. These helpers are those writes. A factor is a tensor broadcast
over (clips, channels, frames, H, W) or ``None`` (1 for a scale, 0 for a shift), so the common case
of no gate scaling and no absorbed BatchNorm costs no arithmetic at all.
"""
from __future__ import annotations

import torch

__all__ = ["add", "affine_into", "channels", "emit", "fold", "memory_format_of", "mul", "rows_of", "take", "unfold"]


def mul(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Product of two optional broadcastable factors (None = 1)."""
    return b if a is None else a if b is None else a * b


def add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Sum of two optional terms (None = 0)."""
    return b if a is None else a if b is None else a + b


def rows_of(t: torch.Tensor | None, r: int) -> torch.Tensor | None:
    """Row ``r`` of a per-clip factor (leading size > 1), or the shared factor itself."""
    return t if t is None or t.shape[0] == 1 else t[r : r + 1]


def channels(t: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    """Channels ``sl`` of a per-channel factor (size > 1 along dim 1), or a channel-shared one itself."""
    return t if t is None or t.shape[1] == 1 else t[:, sl]


def take(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
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


def affine_into(src: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None, dst: torch.Tensor) -> None:
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


def emit(src: torch.Tensor, scale: torch.Tensor | None, shift: torch.Tensor | None, dst: torch.Tensor,
         rows: list[int] | None, *, src_in_batch: bool = False) -> None:
    """Write ``src·scale + shift`` into ``dst`` — the group's own output (``rows`` None) or the batch output,
    clip ``i`` of the group going to clip ``rows[i]``. ``src`` holds the group's clips, or with
    ``src_in_batch`` is itself a slice of the batch output (read at ``rows[i]`` too)."""
    if rows is None:
        affine_into(src, scale, shift, dst)
        return
    for i, r in enumerate(rows):
        j = r if src_in_batch else i
        affine_into(src[j : j + 1], rows_of(scale, i), rows_of(shift, i), dst[r : r + 1])


def fold(y5: torch.Tensor) -> torch.Tensor:
    """Logical clips (B, C, T, H, W) → frames as a batch (B·T, C, H, W), a view."""
    return y5.transpose(1, 2).flatten(0, 1)


def unfold(y4: torch.Tensor, b: int) -> torch.Tensor:
    """Frames as a batch (B·T, C, H, W) → logical clips (B, C, T, H, W), a view."""
    return y4.unflatten(0, (b, -1)).transpose(1, 2)


def memory_format_of(native: torch.Tensor) -> torch.memory_format:
    """channels_last(_3d) when ``native`` is laid out that way (and not plainly contiguous)."""
    fmt = torch.channels_last_3d if native.dim() == 5 else torch.channels_last
    if native.is_contiguous(memory_format=fmt) and not native.is_contiguous():
        return fmt
    return torch.contiguous_format
