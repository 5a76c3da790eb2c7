"""Confidence intervals and the paired test, on cases worked out by hand."""
from __future__ import annotations

import math

import pytest

from vared_core.analysis.compare import paired_comparison, wilson_interval


def test_wilson_interval_matches_the_closed_form() -> None:
    # 0 of 10: centre = (z²/20)/(1 + z²/10), half-width the same, so the interval is [0, z²/(10 + z²)]
    z = 1.959963984540054
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z * z / (10 + z * z))
    # symmetric around 1/2 at half right
    lo, hi = wilson_interval(60, 120)
    assert lo + hi == pytest.approx(1.0)
    # narrows as the test set grows, and always contains the observed accuracy
    widths = []
    for n in (120, 480, 1920):
        lo, hi = wilson_interval(round(0.7 * n), n)
        assert lo < 0.7 < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] == pytest.approx(0.16, abs=0.01)  # ±8 points at 120 videos


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="3 of 2"):
        wilson_interval(3, 2)
    with pytest.raises(ValueError, match="total > 0"):
        wilson_interval(0, 0)


def test_paired_comparison_counts_flips_and_gives_mcnemar_exact_p() -> None:
    a = [True] * 6 + [False] * 2 + [True] * 10 + [False] * 2
    b = [False] * 6 + [True] * 2 + [True] * 10 + [False] * 2
    r = paired_comparison(a, b)
    assert (r.total, r.lost, r.gained) == (20, 6, 2)
    assert r.delta_points == pytest.approx(-20.0)
    # 8 discordant videos, 2 the rarer way: p = 2·(C(8,0) + C(8,1) + C(8,2)) / 2^8 = 2·37/256
    assert r.p_value == pytest.approx(2 * 37 / 256)
    # all six flips one way: p = 2 / 2^6
    assert paired_comparison([True] * 6, [False] * 6).p_value == pytest.approx(2 / 64)
    # identical predictions: nothing to test
    same = paired_comparison(a, a)
    assert (same.lost, same.gained, same.p_value, same.delta_points) == (0, 0, 1.0, 0.0)
    # a balanced disagreement is as unremarkable as it gets
    assert paired_comparison([True, False] * 5, [False, True] * 5).p_value == 1.0
    assert math.isclose(r.to_dict()["p_value"], r.p_value)


def test_paired_comparison_needs_the_same_videos() -> None:
    with pytest.raises(ValueError, match="3 videos for A but 2 for B"):
        paired_comparison([True] * 3, [True] * 2)
    with pytest.raises(ValueError, match="no videos"):
        paired_comparison([], [])


def test_mean_difference_separates_a_real_gap_from_chance() -> None:
    from vared_core.analysis.compare import mean_difference

    # every value of A below every value of B, 10 each: the observed split is the most extreme of C(20, 10)
    # relabellings (two of them, by symmetry), so p ≈ 2 / 184756 and only the +1 of the observed one is left
    r = mean_difference([float(i) for i in range(10)], [float(i) for i in range(10, 20)], permutations=2000)
    assert (r.n_a, r.n_b, r.mean_a, r.mean_b) == (10, 10, 4.5, 14.5)
    assert r.relative == pytest.approx(4.5 / 14.5 - 1)
    assert r.p_value == pytest.approx(1 / 2001, abs=2 / 2001)
    # the same values split alternately: the means differ by 1, which a random split reaches most of the time
    alt = mean_difference([float(i) for i in range(0, 20, 2)], [float(i) for i in range(1, 20, 2)], permutations=2000)
    assert alt.mean_b - alt.mean_a == 1.0 and alt.p_value > 0.5
    # equal groups: every relabelling reaches a difference of 0
    assert mean_difference([1.0, 2.0], [2.0, 1.0], permutations=50).p_value == 1.0
    # seeded: the same inputs give the same p-value
    a, b = [0.0, 1.0, 2.0, 3.0], [1.5, 2.5, 3.5, 4.5]
    assert mean_difference(a, b, seed=3).p_value == mean_difference(a, b, seed=3).p_value


def test_mean_difference_matches_the_exact_test_on_a_small_case() -> None:
    import itertools

    from vared_core.analysis.compare import mean_difference

    a, b = [0.1, 0.4, 0.35], [0.5, 0.9, 0.45, 0.7]
    pooled = a + b
    observed = abs(sum(a) / 3 - sum(b) / 4)
    splits = list(itertools.combinations(range(7), 3))
    exact = sum(
        abs(sum(pooled[i] for i in s) / 3 - (sum(pooled) - sum(pooled[i] for i in s)) / 4) >= observed - 1e-12
        for s in splits
    ) / len(splits)
    # 20,000 relabellings estimate the exact p within a few standard errors (sd ≈ sqrt(p(1-p)/20000) < 0.004)
    assert mean_difference(a, b, permutations=20_000).p_value == pytest.approx(exact, abs=0.012)


def test_mean_difference_refuses_empty_groups() -> None:
    from vared_core.analysis.compare import mean_difference

    with pytest.raises(ValueError, match="non-empty"):
        mean_difference([], [1.0])
    with pytest.raises(ValueError, match="permutations"):
        mean_difference([1.0], [2.0], permutations=0)


def test_variance_explained_is_the_between_group_share() -> None:
    from vared_core.analysis.compare import variance_explained

    # groups decide the value: all variance is between them; groups with equal means: none is
    assert variance_explained([1.0, 1.0, 3.0, 3.0], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert variance_explained([1.0, 3.0, 1.0, 3.0], ["a", "a", "b", "b"]) == pytest.approx(0.0)
    # by hand: values 0, 2 | 4, 10, mean 4, total SS 16 + 4 + 0 + 36 = 56; group means 1 and 7, between SS
    # 2·9 + 2·9 = 36, so η² = 36 / 56
    assert variance_explained([0.0, 2.0, 4.0, 10.0], [0, 0, 1, 1]) == pytest.approx(36 / 56)
    # each value its own group explains everything; constant values have nothing to explain
    assert variance_explained([0.5, 1.5, 4.0], [0, 1, 2]) == pytest.approx(1.0)
    assert variance_explained([2.0, 2.0, 2.0], [0, 1, 0]) == 0.0
    with pytest.raises(ValueError, match="3 values but 2"):
        variance_explained([1.0, 2.0, 3.0], [0, 1])
