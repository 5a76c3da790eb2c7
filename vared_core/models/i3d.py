"""I3D-InceptionV2: BN-Inception (Inception-v2) inflated to 3D as in I3D.

References: Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset",
CVPR 2017 (inflation: 3×3 → 3×3×3, 7×7 stem → 7×7×7 with temporal stride 2, first two max pools 1×3×3);
Ioffe & Szegedy, "Batch Normalization", ICML 2015 (the BN-Inception network, its Figure 5 widths);
Xie et al., "Rethinking Spatiotemporal Feature Learning", ECCV 2018 (cited by the seed for its I3D baseline).
The two reduction modules (3c, 4e) stride 2 in time as well as space, so time is divided by 8 overall, as
in I3D. Expected clip: (B, 3, 16, 224, 224) for training; the seed counts GFLOPs at 16×256² and 32×256².

Cost: 43.1 / 86.3 GFLOPs at 16 / 32 × 256² here, against the seed's 56.0 / 112.0. The seed's figures are
reproduced to 0.2% (55.9 / 111.9) by a different "I3D": GoogLeNet (Inception-v1) widths with BN, a single 3×3×3
in the 5×5 branch, no temporal stride in conv1 and temporal stride 2 in the max pools before 3a, 4a and 5a,
the layout of the MIT-IBM codebase ``IBM/action-recognition-pytorch`` (``models/threed_models/i3d.py``,
network name ``i3d_v2``). Its stem sees all 16 frames (39.3 GFLOPs against 19.6 here) while its lighter
Inception-v1 modules cost 16.7 against 23.5.

VA-RED² default: every Conv3d is dynamic (seed §3.1: a gate for each 3D convolution layer); the seed notes the
many parallel branches leave its dynamic I3D little per-clip variation.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ._base import VideoBackbone, init_weights, scale_channels
from .registry import ModelCfg, register_model

__all__ = ["I3DInceptionV2", "InceptionBlock", "InceptionI3D", "InceptionSpec", "Unit3D"]


class Unit3D(nn.Module):
    """Conv3d ─► BN ─► ReLU.

    Args:
        in_channels / out_channels: channels in and out.
        kernel_size / stride: of the conv; padding is ``kernel_size // 2`` per dimension.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InceptionSpec(NamedTuple):
    """Widths of one BN-Inception module (Ioffe & Szegedy, Figure 5); 0 = branch absent.

    ``pool`` is ``"avg"`` or ``"max"``; ``pool_proj == 0`` passes the pooled input through (reduction modules).
    """

    b0: int
    b1_reduce: int
    b1: int
    b2_reduce: int
    b2: int
    pool: str
    pool_proj: int
    stride: int = 1

    def scaled(self, width: float) -> InceptionSpec:
        """The same module with every width multiplied by ``width`` (absent branches stay absent)."""

        def s(channels: int) -> int:
            return scale_channels(channels, width) if channels else 0

        return self._replace(
            b0=s(self.b0), b1_reduce=s(self.b1_reduce), b1=s(self.b1), b2_reduce=s(self.b2_reduce), b2=s(self.b2),
            pool_proj=s(self.pool_proj),
        )

    def out_channels(self, in_channels: int) -> int:
        return self.b0 + self.b1 + self.b2 + (self.pool_proj or in_channels)


class InceptionBlock(nn.Module):
    """BN-Inception module inflated to 3D; branch outputs are concatenated along channels.

    ::

        x ─┬─► branch0: 1×1×1                                      ─┐
           ├─► branch1: 1×1×1 ─► 3×3×3 /s                           ├─► concat
           ├─► branch2: 1×1×1 ─► 3×3×3 ─► 3×3×3 /s                  │
           └─► branch3: pool 3×3×3 /s ─► [1×1×1]                   ─┘

    Args:
        in_channels: channels in.
        spec: the module's widths, pooling and stride s (2 in the reduction modules 3c and 4e, in space and
            time; those have no branch0 and pass the max-pooled input through).
    """

    def __init__(self, in_channels: int, spec: InceptionSpec) -> None:
        super().__init__()
        k3, s = (3, 3, 3), (spec.stride,) * 3
        self.branch0 = Unit3D(in_channels, spec.b0) if spec.b0 else None
        self.branch1 = nn.Sequential(Unit3D(in_channels, spec.b1_reduce), Unit3D(spec.b1_reduce, spec.b1, k3, s))
        self.branch2 = nn.Sequential(
            Unit3D(in_channels, spec.b2_reduce), Unit3D(spec.b2_reduce, spec.b2, k3), Unit3D(spec.b2, spec.b2, k3, s)
        )
        if spec.pool == "avg":  # explicit zero padding: AvgPool3d refuses inputs shorter than its kernel
            pool: nn.Module = nn.Sequential(nn.ConstantPad3d(1, 0.0), nn.AvgPool3d(3, stride=s))
        elif spec.pool == "max":
            pool = nn.MaxPool3d(3, stride=s, padding=1)
        else:
            raise ValueError(f"InceptionBlock: pool must be 'avg' or 'max', got {spec.pool!r}")
        self.branch3 = nn.Sequential(pool, Unit3D(in_channels, spec.pool_proj)) if spec.pool_proj else pool
        self.out_channels = spec.out_channels(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [] if self.branch0 is None else [self.branch0(x)]
        outs += [self.branch1(x), self.branch2(x), self.branch3(x)]
        return torch.cat(outs, dim=1)


# BN-Inception modules (Ioffe & Szegedy 2015, Figure 5): name -> widths
BN_INCEPTION: dict[str, InceptionSpec] = {
    "mixed_3a": InceptionSpec(64, 64, 64, 64, 96, "avg", 32),
    "mixed_3b": InceptionSpec(64, 64, 96, 64, 96, "avg", 64),
    "mixed_3c": InceptionSpec(0, 128, 160, 64, 96, "max", 0, stride=2),
    "mixed_4a": InceptionSpec(224, 64, 96, 96, 128, "avg", 128),
    "mixed_4b": InceptionSpec(192, 96, 128, 96, 128, "avg", 128),
    "mixed_4c": InceptionSpec(160, 128, 160, 128, 160, "avg", 128),
    "mixed_4d": InceptionSpec(96, 128, 192, 160, 192, "avg", 128),
    "mixed_4e": InceptionSpec(0, 128, 192, 192, 256, "max", 0, stride=2),
    "mixed_5a": InceptionSpec(352, 192, 320, 160, 224, "avg", 128),
    "mixed_5b": InceptionSpec(352, 192, 320, 192, 224, "max", 128),
}


class InceptionI3D(VideoBackbone):
    """What the Inception I3Ds share: the stem and modules are the subclass's; the head is global average
    pooling, dropout and ``fc``, set up by `_add_head` once the body's width is known."""

    classifier_name = "fc"

    def _add_head(self, channels: int, num_classes: int, dropout: float) -> None:
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Feature map (B, C, T', H', W') → logits (B, num_classes)."""
        return self.fc(self.dropout(self.avgpool(feats).flatten(1)))


class I3DInceptionV2(InceptionI3D):
    """I3D with a BN-Inception body.

    ::

        clip (B, 3, T, H, W) ─► conv1 7×7×7 /2 ─► pool1 1×3×3 /(1,2,2) ─► conv2 1×1×1 ─► conv3 3×3×3
            ─► pool2 1×3×3 /(1,2,2) ─► mixed_3a ─► 3b ─► 3c /2 ─► 4a … 4d ─► 4e /2 ─► 5a ─► 5b
            (features, T/8 × H/32) ─► avgpool ─► dropout ─► fc ─► logits (B, num_classes)

    Args:
        num_classes: classifier outputs.
        stem_channels: (conv1, conv2, conv3) widths; (64, 64, 192).
        stem_temporal_stride: temporal stride of conv1 (2, as in I3D).
        blocks: the Inception modules in order, by name (`BN_INCEPTION`).
        dropout: dropout probability before ``fc`` (0.5).

    Example:
        >>> from vared_core.models import build_model
        >>> net = build_model("i3d_inception_v2_tiny", num_classes=10)
        >>> net.forward_features(torch.zeros(2, 3, 8, 64, 64)).shape
        torch.Size([2, 256, 1, 2, 2])
    """

    def __init__(
        self,
        *,
        num_classes: int = 400,
        # stem
        stem_channels: tuple[int, int, int] = (64, 64, 192),
        stem_temporal_stride: int = 2,
        # stages
        blocks: dict[str, InceptionSpec] | None = None,
        # head
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        blocks = BN_INCEPTION if blocks is None else blocks
        c1, c2, c3 = stem_channels
        self.conv1 = Unit3D(3, c1, (7, 7, 7), (stem_temporal_stride, 2, 2))
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.conv2 = Unit3D(c1, c2)
        self.conv3 = Unit3D(c2, c3, (3, 3, 3))
        self.pool2 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        channels = c3
        self.block_names = tuple(blocks)
        for name, spec in blocks.items():
            block = InceptionBlock(channels, spec)
            self.add_module(name, block)
            channels = block.out_channels
        self._add_head(channels, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) → feature map (B, 1024, T/8, H/32, W/32) (rounded up)."""
        x = self.pool2(self.conv3(self.conv2(self.pool1(self.conv1(x)))))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x


def _create_i3d_inception_v2(*, num_classes: int, width: float = 1.0, **kwargs: Any) -> I3DInceptionV2:
    """Scale every BN-Inception width by ``width`` and build the network (other kwargs go to the class)."""
    return I3DInceptionV2(
        num_classes=num_classes,
        stem_channels=tuple(scale_channels(c, width) for c in (64, 64, 192)),
        blocks={name: spec.scaled(width) for name, spec in BN_INCEPTION.items()},
        **kwargs,
    )


_PAPER = (
    "Carreira & Zisserman, Quo Vadis, Action Recognition?, CVPR 2017; "
    "Ioffe & Szegedy, Batch Normalization, ICML 2015"
)
_DYNAMIC = ("conv?.conv", "mixed_*.conv")  # every Conv3d: stem and all Inception branches (seed §3.1)

default_cfgs: dict[str, ModelCfg] = {
    "i3d_inception_v2": ModelCfg(
        num_frames=16, crop_size=224, test_crop_size=256, frame_stride=1, classifier="fc",
        dynamic_include=_DYNAMIC, paper=_PAPER,
    ),
    "i3d_inception_v2_tiny": ModelCfg(
        num_frames=8, crop_size=64, test_crop_size=64, frame_stride=1, classifier="fc",
        dynamic_include=_DYNAMIC, paper=_PAPER, lr=0.1, warmup_epochs=0.0, total_batch=None, test_clips=1, test_crops=1,
    ),
}


@register_model
def i3d_inception_v2(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> I3DInceptionV2:
    """I3D-InceptionV2 (BN-Inception inflated to 3D)."""
    model_args = dict(width=width)
    return _create_i3d_inception_v2(num_classes=num_classes, **dict(model_args, **kwargs))


@register_model
def i3d_inception_v2_tiny(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> I3DInceptionV2:
    """I3D-InceptionV2 at a quarter of the width (same modules), for tests and smoke runs on 8×64² clips."""
    model_args = dict(width=0.25 * width)
    return _create_i3d_inception_v2(num_classes=num_classes, **dict(model_args, **kwargs))
