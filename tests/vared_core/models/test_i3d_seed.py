"""The seed's I3D: its cost matches the seed's tables, it dynamizes like the other backbones."""
from __future__ import annotations

import pytest
import torch

from vared_core.dynamic import DynamicSpec, clip_gflops, force_policy, static_gflops
from vared_core.models import build_model, get_model_cfg


@pytest.mark.slow
def test_cost_matches_the_seeds_table_and_the_textbook_i3d_does_not() -> None:
    shape = get_model_cfg("i3d_inception_v2_seed").test_clip_shape  # one clip, 16 × 256², centre crop
    assert shape == (3, 16, 256, 256)
    seed = static_gflops(build_model("i3d_inception_v2_seed", num_classes=400), shape)
    assert seed == pytest.approx(56.0, rel=0.03)  # Table 4.10
    assert static_gflops(build_model("i3d_inception_v2_seed", num_classes=400), (3, 32, 256, 256)) == pytest.approx(
        112.0, rel=0.03)
    textbook = static_gflops(build_model("i3d_inception_v2", num_classes=400), shape)
    assert abs(textbook / 56.0 - 1) > 0.2  # the other network, kept beside it


def test_it_dynamizes_and_pinned_full_reproduces_the_static_network() -> None:
    torch.manual_seed(0)
    static = build_model("i3d_inception_v2_seed", num_classes=5, width=0.25).eval()
    dyn = build_model("i3d_inception_v2_seed", num_classes=5, width=0.25, num_frames=8, crop_size=32,
                      dynamic=DynamicSpec(search_space=2)).eval()
    dyn.load_state_dict(static.state_dict(), strict=False)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad(), force_policy(dyn, temporal=0, channel=0):
        assert torch.allclose(dyn(x), static(x), atol=1e-5)
    with torch.no_grad(), force_policy(dyn, temporal=1, channel=1):
        dyn(x)
        half = clip_gflops(dyn)
    with torch.no_grad(), force_policy(dyn, temporal=0, channel=0):
        dyn(x)
        assert (half < 0.5 * clip_gflops(dyn)).all()
