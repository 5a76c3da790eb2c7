"""R(2+1)D-18: an 18-layer video ResNet whose 3×3×3 convs are factorised into 1×3×3 spatial + 3×1×1 temporal.

Reference: Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018
(arXiv:1711.11248). The module layout and parameter names are exactly those of torchvision's
``torchvision.models.video.r2plus1d_18`` (224 state-dict tensors, 31,505,325 parameters at 400 classes), so
its Kinetics-400 weights load with ``strict=True`` into the static model, before it is dynamized.

Expected clip: (B, 3, T, H, W), T = 8 / 16 / 32 frames, 112×112 training crop; time is halved by layer2,
layer3 and layer4, space by the stem and the same layers. Cost (conv + linear multiply-accumulates, one clip):
26.5 / 52.9 / 105.8 GFLOPs at 8 / 16 / 32 × 128², 4.1-4.5% under the seed's 27.7 / 55.2 / 110.5 at every
length, and 40.52 at 16×112², torchvision's own published figure for this network.

VA-RED² (seed, A.2): only the 2D spatial convs (1×3×3) of the residual blocks are made dynamic by default,
since they carry most of the cost; a spec's ``layers`` picks others.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._base import VideoBackbone, init_weights, scale_channels
from .registry import KINETICS_MEAN, KINETICS_STD, ModelCfg, register_model

__all__ = ["BasicBlock", "Conv2Plus1D", "R2Plus1D", "R2Plus1dStem"]


def _midplanes(inplanes: int, planes: int) -> int:
    """Channels between the spatial and temporal conv, chosen so that (2+1)D has the parameters of 3×3×3."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


class Conv2Plus1D(nn.Sequential):
    """A 3×3×3 conv factorised in space then time (torchvision's ``Conv2Plus1D``, same indices).

    ::

        x ─► [0] Conv 1×3×3, stride (1, s, s) ─► [1] BN ─► [2] ReLU ─► [3] Conv 3×1×1, stride (s, 1, 1)

    Args:
        in_planes / out_planes: channels in and out.
        midplanes: channels between the two convs.
        stride: s, applied in space by the spatial conv and in time by the temporal conv.
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_planes, midplanes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class R2Plus1dStem(nn.Sequential):
    """Factorised stem (torchvision indices).

    ::

        x ─► [0] Conv 1×7×7 /(1,2,2) ─► [1] BN ─► [2] ReLU ─► [3] Conv 3×1×1 ─► [4] BN ─► [5] ReLU

    Args:
        mid_channels: channels after the spatial conv (45 in R(2+1)D-18).
        out_channels: channels out (64).
    """

    def __init__(self, mid_channels: int = 45, out_channels: int = 64) -> None:
        super().__init__(
            nn.Conv3d(3, mid_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


class BasicBlock(nn.Module):
    """Residual block of two (2+1)D convs.

    ::

        x ─► conv1 = [(2+1)D /s ─► BN ─► ReLU] ─► conv2 = [(2+1)D ─► BN] ─► (+ downsample(x)) ─► ReLU

    Args:
        inplanes / planes: channels in and out.
        stride: s (space and time) of the first (2+1)D conv.
        downsample: projection of the shortcut when shape changes, else ``None``.
    """

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        midplanes = _midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, midplanes, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class R2Plus1D(VideoBackbone):
    """R(2+1)D video ResNet with basic blocks, in torchvision's layout.

    ::

        clip (B, 3, T, H, W) ─► stem ─► layer1 ─► layer2 /2 ─► layer3 /2 ─► layer4 /2   (features, T/8 × H/16)
            ─► avgpool ─► dropout ─► fc ─► logits (B, num_classes)

    Args:
        num_classes: classifier outputs.
        stem_channels: (mid, out) channels of the stem; (45, 64) in R(2+1)D-18.
        layers: basic blocks per stage; (2, 2, 2, 2) in R(2+1)D-18.
        stage_channels: output channels per stage; (64, 128, 256, 512).
        dropout: dropout probability before ``fc``.

    Example:
        >>> net = R2Plus1D(num_classes=10, stem_channels=(12, 16), stage_channels=(16, 32, 64, 128))
        >>> net(torch.zeros(2, 3, 8, 64, 64)).shape
        torch.Size([2, 10])
    """

    classifier_name = "fc"

    def __init__(
        self,
        *,
        num_classes: int = 400,
        # stem
        stem_channels: tuple[int, int] = (45, 64),
        # stages
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        stage_channels: tuple[int, int, int, int] = (64, 128, 256, 512),
        # head
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = R2Plus1dStem(*stem_channels)
        inplanes = stem_channels[1]
        for i, (depth, planes) in enumerate(zip(layers, stage_channels)):
            stage = self._make_layer(inplanes, planes, depth, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = planes
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    @staticmethod
    def _make_layer(inplanes: int, planes: int, depth: int, *, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )
        blocks = [BasicBlock(inplanes, planes, stride=stride, downsample=downsample)]
        blocks += [BasicBlock(planes, planes) for _ in range(1, depth)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) → feature map (B, 512, T/8, H/16, W/16) (rounded up)."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Feature map (B, C, T', H', W') → logits (B, num_classes)."""
        return self.fc(self.dropout(self.avgpool(feats).flatten(1)))


def _create_r2plus1d(
    *, num_classes: int, width: float = 1.0, layers: tuple[int, int, int, int] = (2, 2, 2, 2), **kwargs: Any
) -> R2Plus1D:
    """Scale the R(2+1)D-18 widths by ``width`` and build the network (other kwargs go to `R2Plus1D`)."""
    return R2Plus1D(
        num_classes=num_classes,
        stem_channels=(scale_channels(45, width), scale_channels(64, width)),
        layers=layers,
        stage_channels=tuple(scale_channels(c, width) for c in (64, 128, 256, 512)),
        **kwargs,
    )


_PAPER = "Tran et al., A Closer Look at Spatiotemporal Convolutions for Action Recognition, CVPR 2018"
_SPATIAL_CONVS = ("layer?.?.conv?.0.0",)  # the 1×3×3 convs of the residual blocks (seed, A.2)

default_cfgs: dict[str, ModelCfg] = {
    "r2plus1d_18": ModelCfg(
        num_frames=16, crop_size=112, test_crop_size=128, frame_stride=1, mean=KINETICS_MEAN, std=KINETICS_STD,
        classifier="fc", dynamic_include=_SPATIAL_CONVS, paper=_PAPER,
        lr=0.18, finetune_lr=0.01, weight_decay=5e-4,
    ),
    "r2plus1d_18_tiny": ModelCfg(
        num_frames=8, crop_size=64, test_crop_size=64, frame_stride=1, mean=KINETICS_MEAN, std=KINETICS_STD,
        classifier="fc", dynamic_include=_SPATIAL_CONVS, paper=_PAPER,
        lr=0.01, finetune_lr=0.01, weight_decay=5e-4, warmup_epochs=0.0, total_batch=None, test_clips=1, test_crops=1,
    ),
}


@register_model
def r2plus1d_18(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> R2Plus1D:
    """R(2+1)D-18, torchvision layout: 31.5 M parameters, 55.2 GFLOPs (seed) at 16×128²."""
    model_args = dict(layers=(2, 2, 2, 2), width=width)
    return _create_r2plus1d(num_classes=num_classes, **dict(model_args, **kwargs))


@register_model
def r2plus1d_18_tiny(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> R2Plus1D:
    """R(2+1)D-18 at a quarter of the width (same stages and blocks), for tests and smoke runs on 8×64² clips."""
    model_args = dict(layers=(2, 2, 2, 2), width=0.25 * width)
    return _create_r2plus1d(num_classes=num_classes, **dict(model_args, **kwargs))
