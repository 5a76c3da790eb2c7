"""The I3D whose cost the seed's tables give (56.0 GFLOPs at 16×256², Table 4.10; 112.0 at 32 frames).

`i3d_inception_v2` builds I3D as Carreira & Zisserman describe it, on BN-Inception: 43.1 GFLOPs at 16×256².
The seed's I3D-InceptionV2 is another network. Its figures are those of the I3D of the MIT-IBM codebase the
seed's authors published, ``IBM/action-recognition-pytorch`` (``models/threed_models/i3d.py``, network name
``i3d_v2``): GoogLeNet's Inception-v1 widths (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015,
Table 1) with BatchNorm after every conv, a single 3×3×3 conv in place of the 5×5 branch, no temporal stride
in conv1 and a temporal stride of 2 in the max pools before 3a, 4a and 5a (time ÷ 8 overall). Its stem sees
all 16 frames, which is where the extra cost is: about 39 GFLOPs in the stem, 17 in the Inception modules.

Registered as ``i3d_inception_v2_seed`` beside the textbook network, so a study can reproduce the seed's
cost column (`vared flops i3d_inception_v2_seed`) and compare the two.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ._base import scale_channels
from .i3d import InceptionI3D, Unit3D
from .registry import ModelCfg, register_model

__all__ = ["I3DInceptionV1BN", "InceptionV1Block", "InceptionV1Spec"]


class InceptionV1Spec(NamedTuple):
    """Widths of one GoogLeNet Inception module (Szegedy et al., Table 1): 1×1, 3×3 reduce, 3×3, "5×5"
    reduce, "5×5" (a 3×3×3 here), pool projection."""

    b0: int
    b1_reduce: int
    b1: int
    b2_reduce: int
    b2: int
    pool_proj: int

    def scaled(self, width: float) -> InceptionV1Spec:
        return InceptionV1Spec(*(scale_channels(c, width) for c in self))

    @property
    def out_channels(self) -> int:
        return self.b0 + self.b1 + self.b2 + self.pool_proj


class InceptionV1Block(nn.Module):
    """GoogLeNet's Inception module inflated to 3D, BN after every conv.

    ::

        x ─┬─► branch0: 1×1×1                        ─┐
           ├─► branch1: 1×1×1 ─► 3×3×3                ├─► concat
           ├─► branch2: 1×1×1 ─► 3×3×3                │
           └─► branch3: max pool 3×3×3 ─► 1×1×1      ─┘
    """

    def __init__(self, in_channels: int, spec: InceptionV1Spec) -> None:
        super().__init__()
        k3 = (3, 3, 3)
        self.branch0 = Unit3D(in_channels, spec.b0)
        self.branch1 = nn.Sequential(Unit3D(in_channels, spec.b1_reduce), Unit3D(spec.b1_reduce, spec.b1, k3))
        self.branch2 = nn.Sequential(Unit3D(in_channels, spec.b2_reduce), Unit3D(spec.b2_reduce, spec.b2, k3))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), Unit3D(in_channels, spec.pool_proj))
        self.out_channels = spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


# GoogLeNet's modules (Szegedy et al. 2015, Table 1); None marks a 3×3×3 max pool of stride 2 in time and space
GOOGLENET: dict[str, InceptionV1Spec | None] = {
    "pool3": None,
    "mixed_3a": InceptionV1Spec(64, 96, 128, 16, 32, 32),
    "mixed_3b": InceptionV1Spec(128, 128, 192, 32, 96, 64),
    "pool4": None,
    "mixed_4a": InceptionV1Spec(192, 96, 208, 16, 48, 64),
    "mixed_4b": InceptionV1Spec(160, 112, 224, 24, 64, 64),
    "mixed_4c": InceptionV1Spec(128, 128, 256, 24, 64, 64),
    "mixed_4d": InceptionV1Spec(112, 144, 288, 32, 64, 64),
    "mixed_4e": InceptionV1Spec(256, 160, 320, 32, 128, 128),
    "pool5": None,
    "mixed_5a": InceptionV1Spec(256, 160, 320, 32, 128, 128),
    "mixed_5b": InceptionV1Spec(384, 192, 384, 48, 128, 128),
}


class I3DInceptionV1BN(InceptionI3D):
    """The seed's I3D: an Inception-v1 body with BN, full temporal resolution in the stem.

    ::

        clip (B, 3, T, H, W) ─► conv1 7×7×7 /(1,2,2) ─► pool1 1×3×3 /(1,2,2) ─► conv2 1×1×1 ─► conv3 3×3×3
            ─► pool3 /2 ─► mixed_3a ─► 3b ─► pool4 /2 ─► 4a … 4e ─► pool5 /2 ─► 5a ─► 5b
            (features, T/8 × H/32) ─► avgpool ─► dropout ─► fc ─► logits (B, num_classes)

    Example:
        >>> from vared_core.models import build_model, get_model_cfg
        >>> from vared_core.dynamic import static_gflops
        >>> net = build_model("i3d_inception_v2_seed", num_classes=400)
        >>> round(static_gflops(net, get_model_cfg("i3d_inception_v2_seed").test_clip_shape), 1)   # seed: 56.0
        55.9
    """

    def __init__(self, *, num_classes: int = 400, width: float = 1.0, dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3 = (scale_channels(c, width) for c in (64, 64, 192))
        self.conv1 = Unit3D(3, c1, (7, 7, 7), (1, 2, 2))
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.conv2 = Unit3D(c1, c2)
        self.conv3 = Unit3D(c2, c3, (3, 3, 3))
        channels = c3
        self.block_names = tuple(GOOGLENET)
        for name, spec in GOOGLENET.items():
            if spec is None:
                self.add_module(name, nn.MaxPool3d(3, stride=2, padding=1))
                continue
            block = InceptionV1Block(channels, spec.scaled(width))
            self.add_module(name, block)
            channels = block.out_channels
        self._add_head(channels, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) → feature map (B, 1024, T/8, H/32, W/32) (rounded up)."""
        x = self.conv3(self.conv2(self.pool1(self.conv1(x))))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x


_PAPER = (
    "Carreira & Zisserman, Quo Vadis, Action Recognition?, CVPR 2017; Szegedy et al., Going Deeper with "
    "Convolutions, CVPR 2015; layout of IBM/action-recognition-pytorch i3d_v2 (the seed's I3D)"
)

default_cfgs: dict[str, ModelCfg] = {
    "i3d_inception_v2_seed": ModelCfg(
        num_frames=16, crop_size=224, test_crop_size=256, frame_stride=1, classifier="fc",
        dynamic_include=("conv?.conv", "mixed_*.conv"), paper=_PAPER,
    ),
}


@register_model
def i3d_inception_v2_seed(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> I3DInceptionV1BN:
    """The seed's I3D-InceptionV2 (56.0 GFLOPs at 16×256²): Inception-v1 widths with BN (see the module doc)."""
    return I3DInceptionV1BN(num_classes=num_classes, width=width, **kwargs)
