"""TSN-ResNet50: a 2D ResNet-50 applied to every sampled frame, class scores averaged over the frames.

References: Wang et al., "Temporal Segment Networks: Towards Good Practices for Deep Action Recognition",
ECCV 2016 (segment sampling, average consensus); He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016 (ResNet-50, here in torchvision's layout and parameter names — stride on the 3×3 conv — so ImageNet
weights published for ``torchvision.models.resnet50`` load into ``model`` with ``strict=True``).
Expected clip: (B, 3, T, 224, 224), T segments (16 in the seed's comparison with AR-Net, Table 4.4). Time is
folded into the batch, (B·T, 3, H, W), through the 2D network, clip-major, as the dynamic engine expects of
Conv2d layers.

VA-RED² default: every Conv2d is dynamic (seed §3.1; the seed gives no narrower choice for TSN); the engine
treats each as a conv over the T frames of a clip.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._base import VideoBackbone, init_weights, scale_channels
from .registry import IMAGENET_MEAN, IMAGENET_STD, ModelCfg, register_model

__all__ = ["Bottleneck", "TSNResNet"]


class Bottleneck(nn.Module):
    """ResNet bottleneck block (torchvision names: conv1..3, bn1..3, downsample).

    ::

        x ─► conv1 1×1 ─► BN ─► ReLU ─► conv2 3×3 /s ─► BN ─► ReLU ─► conv3 1×1 ─► BN ─► (+ downsample(x)) ─► ReLU

    Args:
        inplanes / planes: channels in and of the bottleneck; out = 4 · planes.
        stride: s of the 3×3 conv.
        downsample: shortcut projection when the shape changes, else ``None``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class TSNResNet(VideoBackbone):
    """TSN with a 2D ResNet backbone and average consensus.

    ::

        clip (B, 3, T, H, W) ─► fold (B·T, 3, H, W) ─► conv1 7×7 /2 ─► BN ─► ReLU ─► maxpool /2
            ─► layer1 ─► layer2 /2 ─► layer3 /2 ─► layer4 /2 ─► unfold (features, B, 2048, T, H/32, W/32)
            ─► avgpool per frame ─► dropout ─► fc per frame ─► mean over T ─► logits (B, num_classes)

    Args:
        num_classes: classifier outputs.
        stem_channels: conv1 width (64).
        layers: bottleneck blocks per stage ((3, 4, 6, 3) for ResNet-50).
        stage_planes: bottleneck widths per stage ((64, 128, 256, 512); outputs are 4× these).
        dropout: dropout probability before ``fc`` (0.5).
        zero_init_residual: start the last BN of every block at γ = 0.

    Example:
        >>> from vared_core.models import build_model
        >>> net = build_model("tsn_resnet50_tiny", num_classes=10)
        >>> net.forward_features(torch.zeros(2, 3, 8, 64, 64)).shape
        torch.Size([2, 512, 8, 2, 2])
    """

    classifier_name = "fc"

    def __init__(
        self,
        *,
        num_classes: int = 400,
        # stem
        stem_channels: int = 64,
        # stages
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        stage_planes: tuple[int, int, int, int] = (64, 128, 256, 512),
        # head
        dropout: float = 0.5,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem_channels
        for i, (depth, planes) in enumerate(zip(layers, stage_planes)):
            self.add_module(f"layer{i + 1}", self._make_layer(inplanes, planes, depth, stride=1 if i == 0 else 2))
            inplanes = planes * Bottleneck.expansion
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    @staticmethod
    def _make_layer(inplanes: int, planes: int, depth: int, *, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        blocks = [Bottleneck(inplanes, planes, stride=stride, downsample=downsample)]
        blocks += [Bottleneck(out, planes) for _ in range(1, depth)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) → per-frame feature maps (B, 2048, T, H/32, W/32) (rounded up)."""
        b, c, t, h, w = x.shape
        x = x.transpose(1, 2).reshape(b * t, c, h, w)  # clip-major: frames of one clip are consecutive
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.reshape(b, t, *x.shape[1:]).transpose(1, 2)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Per-frame feature maps (B, C, T, H', W') → frame scores (B, T, num_classes) → mean over T."""
        x = feats.mean(dim=(3, 4)).transpose(1, 2)  # (B, T, C): spatial average pool of every frame
        return self.fc(self.dropout(x)).mean(dim=1)


def _create_tsn_resnet(
    *, num_classes: int, width: float = 1.0, layers: tuple[int, int, int, int] = (3, 4, 6, 3), **kwargs: Any
) -> TSNResNet:
    """Scale the ResNet widths by ``width`` and build the network (other kwargs go to `TSNResNet`)."""
    return TSNResNet(
        num_classes=num_classes,
        stem_channels=scale_channels(64, width),
        layers=layers,
        stage_planes=tuple(scale_channels(c, width) for c in (64, 128, 256, 512)),
        **kwargs,
    )


_PAPER = "Wang et al., Temporal Segment Networks, ECCV 2016; He et al., Deep Residual Learning, CVPR 2016"
_DYNAMIC = ("conv1", "layer?.*.conv?", "layer?.0.downsample.0")  # every Conv2d (seed §3.1)

default_cfgs: dict[str, ModelCfg] = {
    "tsn_resnet50": ModelCfg(
        num_frames=16, crop_size=224, test_crop_size=224, sampling="segment", frame_stride=None,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, classifier="fc", dynamic_include=_DYNAMIC, paper=_PAPER,
        lr=0.01, finetune_lr=0.01, weight_decay=5e-4, total_batch=None,  # not in the seed's A.2: the project's, unscaled
    ),
    "tsn_resnet50_tiny": ModelCfg(
        num_frames=8, crop_size=64, test_crop_size=64, sampling="segment", frame_stride=None,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, classifier="fc", dynamic_include=_DYNAMIC, paper=_PAPER,
        lr=0.01, finetune_lr=0.01, weight_decay=5e-4, warmup_epochs=0.0, total_batch=None, test_clips=1, test_crops=1,
    ),
}


@register_model
def tsn_resnet50(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> TSNResNet:
    """TSN with ResNet-50 (torchvision layout): 23.5 M parameters + the classifier, 4.1 GFLOPs per 224² frame."""
    model_args = dict(layers=(3, 4, 6, 3), width=width)
    return _create_tsn_resnet(num_classes=num_classes, **dict(model_args, **kwargs))


@register_model
def tsn_resnet50_tiny(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> TSNResNet:
    """TSN-ResNet50 at a quarter of the width (same stages and blocks), for tests and smoke runs on 8×64² clips."""
    model_args = dict(layers=(3, 4, 6, 3), width=0.25 * width)
    return _create_tsn_resnet(num_classes=num_classes, **dict(model_args, **kwargs))
