"""R(2+1)D-18's static state dict has exactly torchvision's ``r2plus1d_18`` layout, so its Kinetics-400 weights
load with ``strict=True``. The reference list was generated from torchvision's own source by
``make_torchvision_r2plus1d_18_keys.py`` (see its docstring), never from this implementation."""
from __future__ import annotations

from pathlib import Path

import torch

from vared_core.models import build_model

KEYS = Path(__file__).with_name("torchvision_r2plus1d_18_keys.txt")


def _torchvision_layout() -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in KEYS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split()
            rows.append((name, () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))))
    return rows


def test_reference_list_is_complete() -> None:
    rows = _torchvision_layout()
    assert len(rows) == 224
    params = [s for n, s in rows if n.endswith(("weight", "bias"))]
    assert sum(torch.Size(s).numel() for s in params) == 31_505_325


def test_state_dict_matches_torchvision_layout() -> None:
    net = build_model("r2plus1d_18", num_classes=400)
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == _torchvision_layout()  # same names, same shapes, same order
    assert sum(p.numel() for p in net.parameters()) == 31_505_325


def test_torchvision_weights_load_strictly_then_dynamize() -> None:
    from vared_core.dynamic import DynamicSpec, dynamize, force_policy

    gen = torch.Generator().manual_seed(0)
    weights = {
        name: (torch.tensor(7) if not shape else torch.rand(shape, generator=gen) + 0.5)
        for name, shape in _torchvision_layout()
    }
    net = build_model("r2plus1d_18", num_classes=400)
    net.load_state_dict(weights, strict=True)
    net.eval()
    clip = torch.randn(1, 3, 4, 32, 32, generator=gen)
    with torch.no_grad():
        want = net(clip)
    dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 4, 32, 32), include=net.cfg.dynamic_include)
    torch.testing.assert_close(net.stem[0].weight, weights["stem.0.weight"])  # loaded weights stay in place
    with torch.no_grad(), force_policy(net, temporal=0, channel=0):
        torch.testing.assert_close(net(clip), want, rtol=1e-4, atol=1e-4)
