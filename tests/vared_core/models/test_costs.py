"""Base cost and size of the full-size backbones, counted on the meta device (shapes only, no arithmetic).

GFLOPs = conv + linear multiply-accumulates of one clip (the seed's unit): FlopCounterMode's FLOPs / 2.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vared_core.models import build_model


def _gflops(name: str, frames: int, side: int, num_classes: int = 400) -> float:
    with torch.device("meta"):
        net = build_model(name, num_classes=num_classes).eval()
        clip = torch.zeros(1, 3, frames, side, side)
    with FlopCounterMode(display=False) as counter:
        net(clip)
    return counter.get_total_flops() / 2 / 1e9


def _params(name: str, num_classes: int = 400) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(name, num_classes=num_classes).parameters())


@pytest.mark.parametrize("frames, seed", [(8, 27.7), (16, 55.2), (32, 110.5)])
def test_r2plus1d_18_within_5_percent_of_the_seed(frames: int, seed: float) -> None:
    assert _gflops("r2plus1d_18", frames, 128) == pytest.approx(seed, rel=0.05)


def test_r2plus1d_18_matches_torchvision_published_cost() -> None:
    assert _gflops("r2plus1d_18", 16, 112) == pytest.approx(40.52, rel=0.001)  # torchvision docs, 16×112²


def test_x3d_m_cost_and_size_match_the_paper() -> None:
    assert _gflops("x3d_m", 16, 256) == pytest.approx(6.2, rel=0.05)  # paper's inference figure, 256² crop
    assert _gflops("x3d_m", 16, 224) == pytest.approx(4.73, rel=0.01)  # paper's training-resolution figure
    assert _params("x3d_m") == pytest.approx(3.8e6, rel=0.05)


def test_i3d_inception_v2_cost() -> None:
    g16 = _gflops("i3d_inception_v2", 16, 256)
    assert g16 == pytest.approx(43.14, rel=0.01)  # seed: 56.0, see the i3d module docstring
    assert _gflops("i3d_inception_v2", 32, 256) == pytest.approx(2 * g16, rel=0.001)


def test_tsn_resnet50_cost_and_size() -> None:
    assert _gflops("tsn_resnet50", 1, 224) == pytest.approx(4.09, rel=0.01)  # ResNet-50 per 224² frame
    assert _gflops("tsn_resnet50", 16, 224) == pytest.approx(16 * 4.09, rel=0.01)
    assert _params("tsn_resnet50", num_classes=200) == pytest.approx(23.9e6, rel=0.01)  # seed Table 4.4
