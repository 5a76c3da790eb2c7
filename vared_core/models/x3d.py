"""X3D-M: an efficient video network of inverted-bottleneck blocks (1×1×1 expand, depthwise 3×3×3, SE, 1×1×1).

Reference: Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020
(arXiv:2004.04730); structure as in PySlowFast / pytorchvideo ``create_x3d``: width factor 2.0 (stage widths
24, 48, 96, 192), depth factor 2.2 (3, 5, 11, 7 blocks), expansion 2.25, SE (ratio 1/16) on every other
block, a 5×1×1 depthwise temporal conv in the stem, conv5 to 432 channels and a 2048-wide ``lin5`` head.
X3D-M: 16 frames at temporal stride 5, 224×224 training crop, 256×256 test crop; 3.8 M parameters. The paper's
6.2 GFLOPs are per 16×256² test view (its training-resolution table gives 4.73 at 16×224²); the seed quotes the
same 6.20 at its stated 256² convention. This module counts 6.18 / 4.73 (conv + linear multiply-accumulates).

Swish: X3D puts a swish after the depthwise conv of every block. The seed "removes all the swish
non-linearity except those in SE layer": ``swish="se_blocks"`` (default) keeps the swish only in blocks that
carry SE and uses ReLU in the others; ``"all"`` is the paper's X3D, ``"none"`` uses ReLU everywhere.

VA-RED² default: the two pointwise convs of every block, ``conv_a`` and ``conv_c`` (52 convs, 80% of X3D-M's
MACs at 16×256²). The seed does not list its X3D layers; its Figure 4-1 discussion reads the policies of the
pointwise convs ("point-wise convolutions which right after the depth-wise convolutions have more variation").
What stays static, and why (measured on CPU, `docs/benchmarks/dynamic_speed.md`): the depthwise ``conv_b`` and the
stem's depthwise ``conv_t`` (14.6% of the MACs but half of the convs' memory traffic) are memory-bound, and
Φ^c's depthwise 3×3 rebuild writes as many maps as it saves, so a dynamic depthwise conv is slower than a static
one; the stem's ``conv_xy``, the 4 shortcut projections and ``conv5`` (5.6% of the MACs over 6 convs) would each
pay a gate for little. Every conv of the network remains selectable with ``DynamicSpec(layers=...)``. The SE convs
and ``lin5`` work on pooled vectors.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from ._base import VideoBackbone, init_weights
from .registry import ModelCfg, register_model

__all__ = ["SqueezeExcite", "X3D", "X3DBlock", "X3DStem", "round_width"]

SwishMode = Literal["se_blocks", "all", "none"]


def round_width(width: float, multiplier: float, *, min_width: int = 8, divisor: int = 8) -> int:
    """X3D's channel rounding: ``width · multiplier`` to a multiple of ``divisor`` (at least ``min_width``),
    never more than 10% below the unrounded value."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation on a clip feature map.

    ::

        x ─► global avg pool ─► Conv 1×1×1 (C → C_se) ─► ReLU ─► Conv 1×1×1 (C_se → C) ─► sigmoid ─► × x

    Args:
        channels: C.
        se_channels: C_se, the bottleneck width.
    """

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, se_channels, 1, bias=True)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv3d(se_channels, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class X3DStem(nn.Module):
    """Stem: a spatial conv then a depthwise temporal conv.

    ::

        x ─► conv_xy 1×3×3 /(1,2,2) ─► conv_t 5×1×1 depthwise ─► BN ─► ReLU

    Args:
        out_channels: stem width (24 in X3D-M).
        temporal_kernel: kernel of the depthwise temporal conv (5).
    """

    def __init__(self, out_channels: int, *, temporal_kernel: int = 5) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(3, out_channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(
            out_channels, out_channels, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
            groups=out_channels, bias=False,
        )
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv_t(self.conv_xy(x))))


class X3DBlock(nn.Module):
    """Inverted-bottleneck residual block.

    ::

        x ─► conv_a 1×1×1 ─► BN ─► ReLU ─► conv_b 3×3×3 depthwise /(1,s,s) ─► BN ─► [SE] ─► swish or ReLU
          ─► conv_c 1×1×1 ─► BN ─► (+ shortcut(x)) ─► ReLU

    Args:
        in_channels / inner_channels / out_channels: widths in, after expansion, out.
        stride: spatial stride s of the depthwise conv (and of the shortcut projection).
        se_channels: SE bottleneck width; 0 for no SE.
        swish: swish (True) or ReLU after the depthwise conv.
    """

    def __init__(
        self, in_channels: int, inner_channels: int, out_channels: int, *, stride: int = 1, se_channels: int = 0,
        swish: bool = True,
    ) -> None:
        super().__init__()
        if stride != 1 or in_channels != out_channels:
            self.branch1_conv = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(out_channels)
        else:
            self.branch1_conv = self.branch1_bn = None
        self.conv_a = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner_channels)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(
            inner_channels, inner_channels, 3, stride=(1, stride, stride), padding=1, groups=inner_channels,
            bias=False,
        )
        self.bn_b = nn.BatchNorm3d(inner_channels)
        self.se = SqueezeExcite(inner_channels, se_channels) if se_channels > 0 else None
        self.act_b = nn.SiLU() if swish else nn.ReLU(inplace=True)
        self.conv_c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_bn(self.branch1_conv(x))
        y = self.act_a(self.bn_a(self.conv_a(x)))
        y = self.bn_b(self.conv_b(y))
        if self.se is not None:
            y = self.se(y)
        y = self.bn_c(self.conv_c(self.act_b(y)))
        return self.act(y + shortcut)


class X3D(VideoBackbone):
    """X3D network.

    ::

        clip (B, 3, T, H, W) ─► stem /2 ─► res2 /2 ─► res3 /2 ─► res4 /2 ─► res5 /2 ─► conv5 ─► BN ─► ReLU
            (features, T × H/32) ─► avg pool ─► lin5 ─► ReLU ─► dropout ─► fc ─► logits (B, num_classes)

    Args:
        num_classes: classifier outputs.
        stem_channels: stem width (24 in X3D-M).
        stem_temporal_kernel: depthwise temporal kernel of the stem (5).
        depths: blocks per stage res2..res5 ((3, 5, 11, 7) in X3D-M).
        stage_channels: output width per stage ((24, 48, 96, 192)).
        bottleneck_factor: expansion of the inner width (2.25).
        se_ratio: SE bottleneck ratio (1/16), applied on blocks 0, 2, 4, ... of every stage; 0 disables SE.
        swish: ``"se_blocks"`` (seed), ``"all"`` (X3D paper) or ``"none"``; see the module docstring.
        conv5_channels: width of conv5 (432 = 2.25 · 192).
        head_channels: width of ``lin5`` (2048).
        dropout: dropout probability before ``fc`` (0.5).
        zero_init_residual: start the last BN of every block at γ = 0 (PySlowFast's ZERO_INIT_FINAL_BN).

    Example:
        >>> from vared_core.models import build_model
        >>> net = build_model("x3d_m_tiny", num_classes=10)
        >>> net.forward_features(torch.zeros(2, 3, 8, 64, 64)).shape
        torch.Size([2, 216, 8, 2, 2])
    """

    classifier_name = "fc"

    def __init__(
        self,
        *,
        num_classes: int = 400,
        # stem
        stem_channels: int = 24,
        stem_temporal_kernel: int = 5,
        # stages
        depths: tuple[int, int, int, int] = (3, 5, 11, 7),
        stage_channels: tuple[int, int, int, int] = (24, 48, 96, 192),
        bottleneck_factor: float = 2.25,
        se_ratio: float = 0.0625,
        swish: SwishMode = "se_blocks",
        # head
        conv5_channels: int = 432,
        head_channels: int = 2048,
        dropout: float = 0.5,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if swish not in ("se_blocks", "all", "none"):
            raise ValueError(f"X3D: swish must be 'se_blocks', 'all' or 'none', got {swish!r}")
        self.stem = X3DStem(stem_channels, temporal_kernel=stem_temporal_kernel)
        in_channels = stem_channels
        for i, (depth, out_channels) in enumerate(zip(depths, stage_channels)):
            inner = int(bottleneck_factor * out_channels)
            blocks = []
            for j in range(depth):
                use_se = se_ratio > 0 and j % 2 == 0
                blocks.append(
                    X3DBlock(
                        in_channels, inner, out_channels, stride=2 if j == 0 else 1,
                        se_channels=round_width(inner, se_ratio) if use_se else 0,
                        swish=swish == "all" or (swish == "se_blocks" and use_se),
                    )
                )
                in_channels = out_channels
            self.add_module(f"res{i + 2}", nn.Sequential(*blocks))
        self.conv5 = nn.Conv3d(in_channels, conv5_channels, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(conv5_channels)
        self.act5 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.lin5 = nn.Conv3d(conv5_channels, head_channels, 1, bias=False)
        self.act_lin5 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head_channels, num_classes)
        self.num_features = head_channels
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, X3DBlock):
                    nn.init.zeros_(m.bn_c.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, 3, T, H, W) → conv5 feature map (B, 432, T, H/32, W/32) (rounded up)."""
        x = self.res5(self.res4(self.res3(self.res2(self.stem(x)))))
        return self.act5(self.bn5(self.conv5(x)))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Feature map (B, C, T', H', W') → logits (B, num_classes)."""
        x = self.act_lin5(self.lin5(self.pool(feats))).flatten(1)
        return self.fc(self.dropout(x))


def _create_x3d(
    *, num_classes: int, width: float = 1.0, width_factor: float = 2.0, depth_factor: float = 2.2,
    bottleneck_factor: float = 2.25, **kwargs: Any,
) -> X3D:
    """Expand the X3D base network (stem 12, stages 12-24-48-96, depths 1-2-5-3) by width and depth factors.

    ``width`` multiplies ``width_factor`` (channels rounded to multiples of 8 as X3D does).
    """
    factor = width_factor * width
    base = [12, round_width(12, 2.0), round_width(12, 4.0), round_width(12, 8.0)]
    stage_channels = tuple(round_width(c, factor) for c in base)
    return X3D(
        num_classes=num_classes,
        stem_channels=round_width(12, factor),
        depths=tuple(int(math.ceil(depth_factor * d)) for d in (1, 2, 5, 3)),
        stage_channels=stage_channels,
        bottleneck_factor=bottleneck_factor,
        conv5_channels=int(bottleneck_factor * stage_channels[-1]),
        **kwargs,
    )


_PAPER = "Feichtenhofer, X3D: Expanding Architectures for Efficient Video Recognition, CVPR 2020"
_X3D_MEAN = (0.45, 0.45, 0.45)
_X3D_STD = (0.225, 0.225, 0.225)
# the blocks' pointwise convs (module docstring: why the depthwise ones, the stem, shortcuts and conv5 stay static)
_DYNAMIC = ("res?.*.conv_a", "res?.*.conv_c")

default_cfgs: dict[str, ModelCfg] = {
    "x3d_m": ModelCfg(
        num_frames=16, crop_size=224, test_crop_size=256, frame_stride=5, mean=_X3D_MEAN, std=_X3D_STD,
        classifier="fc", dynamic_include=_DYNAMIC, paper=_PAPER,
        lr=1.8, finetune_lr=0.1, weight_decay=5e-5,
    ),
    "x3d_m_tiny": ModelCfg(
        num_frames=8, crop_size=64, test_crop_size=64, frame_stride=5, mean=_X3D_MEAN, std=_X3D_STD,
        classifier="fc", dynamic_include=_DYNAMIC, paper=_PAPER,
        lr=0.1, weight_decay=5e-5, warmup_epochs=0.0, total_batch=None, test_clips=1, test_crops=1,
    ),
}


@register_model
def x3d_m(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> X3D:
    """X3D-M: 3.8 M parameters, 6.2 GFLOPs per 16×256² view (paper; 4.73 at the 16×224² training crop)."""
    model_args = dict(width=width, width_factor=2.0, depth_factor=2.2)
    return _create_x3d(num_classes=num_classes, **dict(model_args, **kwargs))


@register_model
def x3d_m_tiny(*, num_classes: int = 400, width: float = 1.0, **kwargs: Any) -> X3D:
    """X3D-M at half the width, same blocks and depths, for tests and smoke runs on 8×64² clips."""
    model_args = dict(width=0.5 * width, width_factor=2.0, depth_factor=2.2, head_channels=256)
    return _create_x3d(num_classes=num_classes, **dict(model_args, **kwargs))
