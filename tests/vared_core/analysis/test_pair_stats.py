"""Pair statistics: CC and RMSE of compared feature maps, their order, constant maps, the Table B.1 rule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vared_core.analysis import num_pairs, pairwise_stats, redundancy_proportion


def test_identical_frames_give_cc_one_and_rmse_zero() -> None:
    x = torch.randn(2, 4, 1, 6, 6).expand(2, 4, 3, 6, 6)
    cc, rmse = pairwise_stats(x, "time")
    assert cc.shape == rmse.shape == (2, 4 * 2) and cc.dtype == torch.float64
    torch.testing.assert_close(cc, torch.ones_like(cc))
    assert float(rmse.abs().max()) == 0.0


def test_identical_channels_give_cc_one_and_rmse_zero() -> None:
    x = torch.randn(2, 1, 3, 6, 6).expand(2, 5, 3, 6, 6)
    cc, rmse = pairwise_stats(x, "channel")
    assert cc.shape == (2, 3 * 4)
    torch.testing.assert_close(cc, torch.ones_like(cc))
    assert float(rmse.abs().max()) == 0.0
    # the same tensor along time: frames differ, CC well below 1
    assert float(pairwise_stats(x, "time")[0].mean()) < 0.5


def test_independent_noise_has_cc_near_zero() -> None:
    x = torch.randn(1, 64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for dim in ("time", "channel"):
        cc, rmse = pairwise_stats(x, dim)
        assert abs(float(cc.mean())) < 0.02 and float(cc.abs().max()) < 0.2
        assert abs(float(rmse.mean()) - math.sqrt(2)) < 0.05  # two unit-variance maps: E(a−b)² = 2


def test_hand_computed_cc_and_rmse() -> None:
    # frame 0 = [1, 2, 3, 4], frame 1 = [1, 3, 2, 4]: centred (∓1.5, ∓0.5, ...), cov 4/4, var 5/4 → CC 0.8;
    # differences (0, 1, −1, 0) → RMSE sqrt(0.5)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 3.0], [2.0, 4.0]]).reshape(1, 1, 2, 2, 2)
    cc, rmse = pairwise_stats(x, "time")
    assert cc.tolist() == [[pytest.approx(0.8)]] and rmse.tolist() == [[pytest.approx(math.sqrt(0.5))]]
    # the same two maps as two channels of one frame
    cc_c, rmse_c = pairwise_stats(x.transpose(1, 2), "channel")
    torch.testing.assert_close((cc_c, rmse_c), (cc, rmse))


def test_pair_order_matches_numpy_for_adjacent_and_all_pairs() -> None:
    x = torch.randn(2, 3, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    b, c, t = 1, 3, 4
    xn = x.double().numpy()
    corr = lambda u, v: np.corrcoef(u.ravel(), v.ravel())[0, 1]  # noqa: E731
    rms = lambda u, v: np.sqrt(np.mean((u - v) ** 2))  # noqa: E731

    cc, rmse = pairwise_stats(x, "time")  # p = c·(T−1) + t: channel c, frames t, t+1
    assert cc.shape == (2, c * (t - 1)) == (2, num_pairs(c, t, "time"))
    assert cc[b, 2 * (t - 1) + 1].item() == pytest.approx(corr(xn[b, 2, 1], xn[b, 2, 2]))
    assert rmse[b, 2 * (t - 1) + 1].item() == pytest.approx(rms(xn[b, 2, 1], xn[b, 2, 2]))
    cc, rmse = pairwise_stats(x, "channel")  # p = t·(C−1) + c: frame t, channels c, c+1
    assert cc.shape == (2, t * (c - 1))
    assert cc[b, 3 * (c - 1) + 1].item() == pytest.approx(corr(xn[b, 1, 3], xn[b, 2, 3]))

    cc, rmse = pairwise_stats(x, "channel", pairs="all")  # per frame, upper triangle (0,1), (0,2), (1,2)
    assert cc.shape == (2, t * c * (c - 1) // 2) == (2, num_pairs(c, t, "channel", "all"))
    expected = [corr(xn[b, i, f], xn[b, j, f]) for f in range(t) for i in range(c) for j in range(i + 1, c)]
    np.testing.assert_allclose(cc[b].numpy(), expected, rtol=1e-9, atol=1e-12)
    expected = [rms(xn[b, i, f], xn[b, j, f]) for f in range(t) for i in range(c) for j in range(i + 1, c)]
    np.testing.assert_allclose(rmse[b].numpy(), expected, rtol=1e-9, atol=1e-12)
    cc, _ = pairwise_stats(x, "time", pairs="all")
    expected = [corr(xn[b, ch, i], xn[b, ch, j]) for ch in range(c) for i in range(t) for j in range(i + 1, t)]
    np.testing.assert_allclose(cc[b].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_constant_maps_have_cc_zero_not_nan() -> None:
    x = torch.zeros(1, 1, 3, 4, 4)
    x[0, 0, 1] = 5.0  # frames: all zeros, all fives, random
    x[0, 0, 2] = torch.randn(4, 4)
    for pairs in ("adjacent", "all"):
        cc, rmse = pairwise_stats(x, "time", pairs=pairs)
        assert not cc.isnan().any() and not rmse.isnan().any()
        assert cc.abs().max().item() == 0.0  # every pair has a constant map: CC := 0
        assert rmse[0, 0].item() == pytest.approx(5.0)
    # a map constant up to float32 rounding counts as constant too; a single-pixel map always does
    near = torch.full((1, 1, 2, 4, 4), 3.0)
    near[0, 0, 0, 0, 0] += 1e-6
    assert pairwise_stats(near, "time")[0].item() == 0.0
    assert pairwise_stats(torch.randn(2, 3, 4, 1, 1), "time")[0].abs().max().item() == 0.0


def test_single_frame_has_no_time_pairs() -> None:
    cc, rmse = pairwise_stats(torch.randn(2, 3, 1, 4, 4), "time")
    assert cc.shape == rmse.shape == (2, 0)
    assert num_pairs(3, 1, "time") == 0 and num_pairs(1, 5, "channel", "all") == 0


def test_redundancy_proportion_counts_both_rules() -> None:
    cc = torch.tensor([[0.9, 0.9, 0.85, 0.99, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0]])
    rmse = torch.tensor([[0.1, 0.0, 0.1, 0.002, 0.1], [0.0, 0.0, 0.0, 0.0, 0.5]])
    # row 0: pairs 0 and 3 pass (pair 1 RMSE not above 0.001, pair 2 CC not above 0.85); row 1: only pair 4
    assert redundancy_proportion(cc, rmse).tolist() == [pytest.approx(0.4), pytest.approx(0.2)]
    assert redundancy_proportion(cc, rmse, rmse_threshold=None).tolist() == [pytest.approx(0.6), 1.0]
    assert redundancy_proportion(cc, rmse, cc_threshold=0.1, rmse_threshold=0.05).tolist() == [0.6, 0.2]
