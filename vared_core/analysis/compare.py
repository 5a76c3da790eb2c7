"""How sure a video-1 difference is: confidence intervals and a paired test of two models on one test set.

With a few hundred test videos one video moves top-1 by a fraction of a point, so "within 1 point of the
base" can sit below what a test set resolves. `wilson_interval` gives the 95% interval of one model's
accuracy; `paired_comparison` counts the videos that a second model gets wrong where the first was right
(``lost``) and the reverse (``gained``), with McNemar's exact two-sided p-value for "the two are equally
accurate" (a binomial test on the videos they disagree on). `mean_difference` asks the same of two groups of
one model's clips, e.g. whether static clips really cost less than fast ones or the gap is within chance
(a two-sided permutation test on the difference of the means). `variance_explained` says which annotation
a per-clip quantity follows: the share of its variance that lies between the groups' means (η²), e.g. of the
GFLOPs each clip cost, grouped by class or by motion level.

Example::

    from vared_core.analysis.compare import paired_comparison, wilson_interval
    lo, hi = wilson_interval(correct=85, total=120)                    # (0.62, 0.78)
    paired_comparison(base_correct, dynamic_correct)                   # PairedComparison(lost=5, gained=3, ...)
    mean_difference(static_clip_gflops, fast_clip_gflops)              # MeanDifference(..., p_value=0.31)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "MeanDifference", "PairedComparison", "mean_difference", "paired_comparison", "variance_explained", "wilson_interval",
]

_Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(correct: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval (default 95%) of an accuracy ``correct / total``, as fractions in [0, 1]."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"wilson_interval: need 0 ≤ correct ≤ total and total > 0, got {correct} of {total}")
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PairedComparison:
    """Model B against model A on the same videos.

    Attributes:
        total: videos compared.
        lost: right under A, wrong under B.
        gained: wrong under A, right under B.
        delta_points: B's top-1 minus A's, in percentage points (``100 · (gained − lost) / total``).
        p_value: McNemar's exact two-sided p-value on the ``lost + gained`` discordant videos (1 when there are none).
    """

    total: int
    lost: int
    gained: int
    delta_points: float
    p_value: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> PairedComparison:
    """Compare two models' per-video correctness (same videos, same order)."""
    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired_comparison: {len(a_correct)} videos for A but {len(b_correct)} for B")
    if not a_correct:
        raise ValueError("paired_comparison: no videos")
    lost = sum(1 for a, b in zip(a_correct, b_correct) if a and not b)
    gained = sum(1 for a, b in zip(a_correct, b_correct) if b and not a)
    total = len(a_correct)
    return PairedComparison(
        total=total, lost=lost, gained=gained, delta_points=100.0 * (gained - lost) / total,
        p_value=_binomial_two_sided(lost, lost + gained),
    )


@dataclass(frozen=True)
class MeanDifference:
    """Group A's mean against group B's (unpaired: different items, e.g. static and fast clips).

    Attributes:
        n_a / n_b: group sizes.
        mean_a / mean_b: the group means.
        relative: ``mean_a / mean_b − 1`` (negative: A is smaller).
        p_value: two-sided permutation p-value for "both groups come from one distribution": the share of
            random relabellings of the pooled values whose |difference of means| reaches the observed one,
            counting the observed labelling itself (so never below ``1 / (permutations + 1)``).
        permutations: relabellings drawn.
    """

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    relative: float
    p_value: float
    permutations: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def mean_difference(
    a: Sequence[float], b: Sequence[float], *, permutations: int = 10_000, seed: int = 0
) -> MeanDifference:
    """Compare the means of two groups of values with a two-sided permutation test (seeded: same inputs, same
    p-value)."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.ndim != 1 or xb.ndim != 1 or not xa.size or not xb.size:
        raise ValueError(f"mean_difference: need two non-empty 1-D groups, got sizes {xa.shape} and {xb.shape}")
    if permutations < 1:
        raise ValueError(f"mean_difference: permutations must be ≥ 1, got {permutations}")
    pooled = np.concatenate([xa, xb])
    observed = abs(xa.mean() - xb.mean())
    rng = np.random.default_rng(seed)
    tol = 1e-12 * max(1.0, float(np.abs(pooled).max()))  # ties with the observed split count as reaching it
    reached, rows = 0, max(1, 2_000_000 // pooled.size)  # relabellings per block: bounded memory
    for start in range(0, permutations, rows):
        # each row a random relabelling: the first n_a of a permutation of the pooled values form group A
        order = np.argsort(rng.random((min(rows, permutations - start), pooled.size)), axis=1)
        sum_a = pooled[order[:, : xa.size]].sum(axis=1)
        diffs = np.abs(sum_a / xa.size - (pooled.sum() - sum_a) / xb.size)
        reached += int((diffs >= observed - tol).sum())
    return MeanDifference(
        n_a=int(xa.size), n_b=int(xb.size), mean_a=float(xa.mean()), mean_b=float(xb.mean()),
        relative=float(xa.mean() / xb.mean() - 1) if xb.mean() else math.nan,
        p_value=(reached + 1) / (permutations + 1), permutations=permutations,
    )


def variance_explained(values: Sequence[float], groups: Sequence[object]) -> float:
    """Share of the variance of ``values`` that lies between the means of their ``groups`` (η², in [0, 1]):
    1 when the group alone decides the value, 0 when every group has the same mean (and for constant values)."""
    if len(values) != len(groups):
        raise ValueError(f"variance_explained: {len(values)} values but {len(groups)} group labels")
    if not values:
        raise ValueError("variance_explained: no values")
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    total = float(((x - mean) ** 2).sum())
    members: dict[object, list[float]] = {}
    for v, g in zip(x.tolist(), groups):
        members.setdefault(g, []).append(v)
    between = sum(len(m) * (sum(m) / len(m) - mean) ** 2 for m in members.values())
    return min(1.0, between / total) if total > 0 else 0.0
