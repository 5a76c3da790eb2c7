"""Pair statistics of feature maps: CC, RMSE and the redundancy rule of the seed's Table B.1.

The numbers `vared_core.analysis.redundancy` averages over clips, layers and models, defined for one
layer's output (where the seed is silent, the choice is marked **Decision**):

* **Feature map.** A layer's output for one clip is ``Y`` of shape ``(C, T, H, W)``. A feature map is one
  2-D slice ``Y[c, t]`` of ``H·W`` values (what Figure B-1 draws: one filter at one frame).
* **Compared pairs** (**Decision**; the seed says "each feature map to each other"). With
  ``pairs="adjacent"`` (default):

  - *time*: ``Y[c, t]`` vs ``Y[c, t+1]`` for every channel c and t = 0..T-2: ``C·(T-1)`` pairs, pair
    ``p = c·(T-1) + t``. Neighbouring frames are what the temporal cheap operation rebuilds from.
  - *channel*: ``Y[c, t]`` vs ``Y[c+1, t]`` for every frame t and c = 0..C-2: ``T·(C-1)`` pairs, pair
    ``p = t·(C-1) + c``. Channel order is arbitrary in a conv layer, so consecutive channels are an
    unbiased sample of all channel pairs; their mean CC / RP estimate the all-pairs values at O(C) cost.

  ``pairs="all"`` compares every unordered pair instead (the literal reading of "each feature map to each
  other"): per channel all ``T(T-1)/2`` frame pairs, per frame all ``C(C-1)/2`` channel pairs, in
  row-major upper-triangle order within each channel (time) or frame (channel).
* **CC** of a pair ``(a, b)`` of maps: Pearson's correlation over their ``H·W`` positions, in float64.
  **Decision (constant maps):** a map whose standard deviation is at most ``1e-5`` × its root mean square
  (constant up to float32 rounding, e.g. a dead all-zero map) has no defined correlation; its CC with
  any map, even an identical one, is taken as **0** (no linear evidence of redundancy), never NaN, so such
  pairs lower the mean CC and are never counted in RP. Maps with ``H·W == 1`` are constant by this rule.
* **RMSE** of a pair: ``sqrt(mean((a - b)²))`` over the ``H·W`` positions, on the raw feature values
  (**Decision**: no normalisation; the seed does not say whether its RMSEs of ~0.1 were normalised).
* **RP** (redundancy proportion): the share of compared pairs with ``CC > cc_threshold`` **and**
  ``RMSE > rmse_threshold`` (both strict, defaults 0.85 and 0.001), as Table B.1 states. The RMSE
  criterion reads oddly (similar maps have a *low* RMSE) but it is what the seed writes, and it matches
  its numbers: with mean RMSEs near 0.1, "RMSE below 0.001" could hardly give RPs of 0.4-0.7. In effect it
  only drops pairs that are *exactly* alike (duplicated frames, dead channels), so two identical maps are
  not counted as redundant. ``rmse_threshold=None`` drops the RMSE condition (RP = share with high CC).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["CC_THRESHOLD", "DIMS", "RMSE_THRESHOLD", "check_choice", "num_pairs", "pair_blocks", "pairwise_stats",
           "redundancy_proportion", "redundant"]

Dim = Literal["time", "channel"]
Pairs = Literal["adjacent", "all"]

DIMS: tuple[Dim, ...] = ("time", "channel")
CC_THRESHOLD = 0.85  # Table B.1: a pair is redundant when CC is above this ...
RMSE_THRESHOLD = 1e-3  # ... and RMSE is above this (sic, see the module doc)

_CONSTANT_RTOL = 1e-5  # a map with std <= this × its RMS counts as constant (CC := 0)
_BLOCK_ELEMENTS = 1 << 23  # float64 elements per block of pair computations (64 MiB)


def check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _maps(features: Tensor, dim: Dim) -> Tensor:
    """``(B, C, T, H, W)`` → ``(B, G, N, H·W)`` float64: N maps compared within each of G groups."""
    if features.dim() != 5:
        raise ValueError(f"feature maps must have shape (B, C, T, H, W), got {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    if dim == "channel":
        x = x.transpose(1, 2)  # groups = frames, compared maps = channels
    return x.flatten(3)


def _cc(cov: Tensor, var_a: Tensor, var_b: Tensor, ms_a: Tensor, ms_b: Tensor) -> Tensor:
    """Pearson CC from (co)variances; 0 where either map is constant (var <= rtol² · mean square)."""
    constant = (var_a <= _CONSTANT_RTOL**2 * ms_a) | (var_b <= _CONSTANT_RTOL**2 * ms_b)
    cc = cov / (var_a * var_b).sqrt().clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(constant, torch.zeros_like(cc), cc).clamp(-1.0, 1.0)


def _adjacent_block(m: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, g, N, L)`` maps → CC and RMSE ``(B, g·(N-1))`` of maps n and n+1."""
    a, b = m[:, :, :-1], m[:, :, 1:]
    mean_a, mean_b = a.mean(-1, keepdim=True), b.mean(-1, keepdim=True)
    ac, bc = a - mean_a, b - mean_b
    var_a, var_b, cov = (ac * ac).mean(-1), (bc * bc).mean(-1), (ac * bc).mean(-1)
    cc = _cc(cov, var_a, var_b, var_a + mean_a.squeeze(-1) ** 2, var_b + mean_b.squeeze(-1) ** 2)
    rmse = (a - b).square().mean(-1).sqrt()
    return cc.flatten(1), rmse.flatten(1)


def _all_pairs_block(m: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, g, N, L)`` maps → CC and RMSE ``(B, g·N(N-1)/2)`` of every pair i < j within each group."""
    n, length = m.shape[2], m.shape[3]
    mean = m.mean(-1, keepdim=True)
    centred = m - mean
    cov = centred @ centred.transpose(-1, -2) / length  # (B, g, N, N)
    var, mean = cov.diagonal(dim1=-2, dim2=-1), mean.squeeze(-1)  # (B, g, N)
    ms = var + mean**2
    i, j = torch.triu_indices(n, n, offset=1, device=m.device)
    cov_ij = cov[..., i, j]
    cc = _cc(cov_ij, var[..., i], var[..., j], ms[..., i], ms[..., j])
    # mean squared difference from moments: (μ_i − μ_j)² + σ_i² + σ_j² − 2 cov_ij (well conditioned)
    msd = (mean[..., i] - mean[..., j]) ** 2 + var[..., i] + var[..., j] - 2 * cov_ij
    return cc.flatten(1), msd.clamp_min(0).sqrt().flatten(1)


def pair_blocks(features: Tensor, dim: Dim, pairs: Pairs) -> Iterator[tuple[Tensor, Tensor]]:
    """CC and RMSE of the compared pairs, ``(B, P_block)`` blocks in pair order, bounded in memory."""
    m = _maps(features, dim)
    b, groups, n, length = m.shape
    if n < 2 or b == 0:
        return
    per_group = 3 * (n - 1) * length if pairs == "adjacent" else n * length + 4 * n * n
    step = max(1, _BLOCK_ELEMENTS // max(1, b * per_group))
    block = _adjacent_block if pairs == "adjacent" else _all_pairs_block
    for g in range(0, groups, step):
        yield block(m[:, g : g + step])


def num_pairs(channels: int, frames: int, dim: Dim, pairs: Pairs = "adjacent") -> int:
    """How many pairs of maps one clip's ``(C, T, H, W)`` output has along ``dim`` (0: not applicable)."""
    groups, n = (channels, frames) if dim == "time" else (frames, channels)
    if n < 2:
        return 0
    return groups * ((n - 1) if pairs == "adjacent" else n * (n - 1) // 2)


def pairwise_stats(features: Tensor, dim: Dim, *, pairs: Pairs = "adjacent") -> tuple[Tensor, Tensor]:
    """Pearson CC and RMSE of every compared pair of feature maps, per clip.

    Args:
        features: ``(B, C, T, H, W)`` layer outputs (any float dtype; computed in float64).
        dim: ``"time"`` (the same channel at two frames) or ``"channel"`` (two channels at one frame).
        pairs: ``"adjacent"`` (frames t, t+1 / channels c, c+1) or ``"all"`` (every unordered pair);
            the module doc gives the pair order.

    Returns:
        ``(cc, rmse)``, each float64 ``(B, P)``: P = C·(T−1) pairs for adjacent time, T·(C−1) for adjacent
        channels (P = 0 when the dimension has a single map). CC is 0 for pairs with a constant map.

    Example:
        >>> x = torch.randn(2, 4, 1, 5, 5).expand(2, 4, 3, 5, 5)    # every frame the same
        >>> cc, rmse = pairwise_stats(x, "time")
        >>> cc.shape, bool(torch.allclose(cc, torch.ones_like(cc))), float(rmse.abs().max())
        (torch.Size([2, 8]), True, 0.0)
    """
    check_choice(dim, DIMS, "pairwise_stats: dim")
    check_choice(pairs, ("adjacent", "all"), "pairwise_stats: pairs")
    blocks = list(pair_blocks(features, dim, pairs))
    if not blocks:
        empty = features.new_zeros((features.shape[0], 0), dtype=torch.float64)
        return empty, empty.clone()
    return torch.cat([c for c, _ in blocks], 1), torch.cat([r for _, r in blocks], 1)


def redundancy_proportion(
    cc: Tensor, rmse: Tensor, *, cc_threshold: float = CC_THRESHOLD, rmse_threshold: float | None = RMSE_THRESHOLD
) -> Tensor:
    """Share of pairs (last axis) with ``CC > cc_threshold`` and ``RMSE > rmse_threshold`` (Table B.1).

    ``rmse_threshold=None`` drops the RMSE condition. Returns float64 of shape ``cc.shape[:-1]``; NaN when
    there are no pairs.

    Example:
        >>> redundancy_proportion(torch.tensor([[0.9, 0.9, 0.5, 1.0]]), torch.tensor([[0.1, 0.0, 0.1, 0.1]]))
        tensor([0.5000], dtype=torch.float64)
    """
    return redundant(cc, rmse, cc_threshold, rmse_threshold).to(torch.float64).mean(-1)


def redundant(cc: Tensor, rmse: Tensor, cc_threshold: float, rmse_threshold: float | None) -> Tensor:
    """The redundancy rule of Table B.1, pair by pair: ``CC > cc_threshold`` and ``RMSE > rmse_threshold``
    (the RMSE condition dropped when ``rmse_threshold`` is None); a NaN CC is never redundant."""
    flagged = cc > cc_threshold
    if rmse_threshold is not None:
        flagged = flagged & (rmse > rmse_threshold)
    return flagged
