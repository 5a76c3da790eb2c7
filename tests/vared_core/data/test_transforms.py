"""Clip transforms on C×T×H×W tensors."""
from __future__ import annotations

import pytest
import torch

from vared_core.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MultiScaleCropCTHW,
    RandomHorizontalFlipCTHW,
    crop,
    multi_scale_crop_box,
    normalize,
    resize_short_side,
    test_transform,
    three_crop,
    train_transform,
)


def _clip(h: int = 48, w: int = 64, t: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, t, h, w), generator=g, dtype=torch.uint8)


def test_multi_scale_crop_boxes_jitter_scale_and_position() -> None:
    g = torch.Generator().manual_seed(0)
    scales = (1.0, 0.875, 0.75, 0.66)
    allowed = {int(48 * s) for s in scales}
    sizes, corners = set(), set()
    for _ in range(400):
        top, left, h, w = multi_scale_crop_box(48, 64, scales=scales, generator=g)
        assert h in allowed and w in allowed
        assert abs(sorted(allowed).index(h) - sorted(allowed).index(w)) <= 1  # max_distort = 1
        assert 0 <= top <= 48 - h and 0 <= left <= 64 - w
        sizes.add((h, w))
        corners.add((top == 0, left == 0))
    assert len(sizes) == 10  # 4 + 2·3 pairs with |i - j| ≤ 1
    assert len(corners) == 4


def test_multi_scale_crop_output_and_determinism() -> None:
    x = _clip()
    t = MultiScaleCropCTHW(32)
    a = t(x, torch.Generator().manual_seed(5))
    b = t(x, torch.Generator().manual_seed(5))
    assert a.shape == (3, 4, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b)


def test_flip_probability_and_effect() -> None:
    x = _clip()
    g = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(400):
        y = RandomHorizontalFlipCTHW(0.5)(x, g)
        if torch.equal(y, x.flip(-1)):
            flips += 1
        else:
            assert torch.equal(y, x)
    assert 160 <= flips <= 240  # p = 0.5 (binomial, 400 draws: ±4 sd)


def test_normalize_uses_imagenet_statistics_for_unit_range() -> None:
    x = torch.rand(3, 2, 5, 5)
    y = normalize(x)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    torch.testing.assert_close(y * std + mean, x)
    with pytest.raises(ValueError, match="apply to_float first"):
        normalize(x.mul(255).to(torch.uint8))
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(torch.rand(1, 2, 5, 5))


def test_three_crop_is_left_center_right_along_the_longer_side() -> None:
    x = _clip(48, 80)
    r = resize_short_side(x, 32)
    assert r.shape[-2:] == (32, 53)
    views = three_crop(r, 32)
    assert views.shape == (3, 3, 4, 32, 32)
    assert torch.equal(views[0], r[..., :, :32])
    assert torch.equal(views[1], r[..., :, 10:42])
    assert torch.equal(views[2], r[..., :, 21:])
    portrait = resize_short_side(_clip(80, 48), 32)
    pv = three_crop(portrait, 32)
    assert torch.equal(pv[0], portrait[..., :32, :]) and torch.equal(pv[2], portrait[..., -32:, :])
    with pytest.raises(ValueError, match="resize_short_side first"):
        three_crop(x, 32)


def test_presets_produce_float_clips_and_views() -> None:
    x = _clip()
    y = train_transform(32)(x, torch.Generator().manual_seed(0))
    assert y.shape == (3, 4, 32, 32) and y.dtype == torch.float32
    v = test_transform(32)(x)
    assert v.shape == (3, 3, 4, 32, 32) and v.dtype == torch.float32
    c = test_transform(32, crops=1)(x)
    torch.testing.assert_close(c, v[1])  # the single centre crop is the middle of the three views
    with pytest.raises(ValueError, match="crops must be 1"):
        test_transform(32, crops=2)


def test_crop_rejects_boxes_outside_the_frame() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        crop(_clip(), 40, 0, 16, 16)
