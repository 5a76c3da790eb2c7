"""Small conv nets shared by the dynamic-engine tests: a 3D net and a TSN-style 2D net that folds time."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vared_core.dynamic import DynamicConv, dynamic_layers


class Net3d(nn.Module):
    """R(2+1)D-like: spatial 1×3×3 and temporal 3×1×1 convs with BN/ReLU, a strided stage, linear head."""

    def __init__(self, num_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv3d(3, w, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(w), nn.ReLU(),
            nn.Conv3d(w, w, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(w), nn.ReLU(),
            nn.Conv3d(w, 2 * w, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(2 * w), nn.ReLU(),
            nn.Conv3d(2 * w, 2 * w, (3, 3, 3), stride=(2, 1, 1), padding=1), nn.BatchNorm3d(2 * w), nn.ReLU(),
        )
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


class Net2dFolded(nn.Module):
    """TSN-like: (B, C, T, H, W) → frames folded into the batch → 2D convs → average consensus over T."""

    def __init__(self, num_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
        )
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        logits = self.head(self.features(frames).mean(dim=(2, 3)))
        return logits.view(b, t, -1).mean(dim=1)


def randomize_gates(model: nn.Module, seed: int = 0) -> None:
    """Gate weights that differ across clips and are often exactly zero, plus non-trivial cheap ops."""
    g = torch.Generator().manual_seed(seed)
    for _, m in dynamic_layers(model):
        assert isinstance(m, DynamicConv)
        if m.gate is not None:
            m.gate.fc1.weight.data = torch.randn(m.gate.fc1.weight.shape, generator=g) * 3.0
            m.gate.fc2.weight.data = torch.randn(m.gate.fc2.weight.shape, generator=g) * 2.0
            m.gate.beta.data = torch.randn(m.gate.beta.shape, generator=g) * 0.5
            m.gate.bn.running_mean.normal_(0, 0.5, generator=g)
        for op in m.temporal_ops:
            op.weight.data = 1 + 0.3 * torch.randn(op.weight.shape, generator=g)
            op.bias.data = 0.1 * torch.randn(op.bias.shape, generator=g)
        for op in m.channel_ops:
            op.bn.running_mean.normal_(0, 0.2, generator=g)
            op.bn.running_var.uniform_(0.5, 2.0, generator=g)
            op.bn.bias.data.normal_(0, 0.1, generator=g)


def randomize_bn(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics so eval outputs are not near-constant."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


NETS = {"net3d": Net3d, "net2d_folded": Net2dFolded}


@pytest.fixture
def make_net():
    """``make_net(kind, **kw)`` builds one of the test nets ("net3d", "net2d_folded") in eval mode."""
    return lambda kind, **kw: NETS[kind](**kw).eval()


@pytest.fixture(name="randomize_gates")
def _randomize_gates_fixture():
    return randomize_gates


@pytest.fixture(name="randomize_bn")
def _randomize_bn_fixture():
    return randomize_bn
