"""What every backbone shares: the `VideoBackbone` surface, channel scaling and weight initialisation."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["VideoBackbone", "check_clip", "init_weights", "scale_channels"]


def scale_channels(channels: int, width: float, divisor: int = 1) -> int:
    """``channels · width`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``).

    ``width == 1`` returns ``channels`` unchanged, so full-width variants keep their published shapes.
    """
    if width == 1.0:
        return channels
    return max(divisor, int(math.floor(channels * width / divisor + 0.5)) * divisor)


def init_weights(module: nn.Module, *, linear_std: float = 0.01) -> None:
    """Kaiming-normal (fan-out, ReLU) convs with zero bias, BatchNorm γ = 1 / β = 0, Linear N(0, std²)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


def check_clip(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of clips (B, C, T, H, W)."""
    if x.dim() != 5:
        raise ValueError(f"{name} takes clips of shape (B, C, T, H, W), got a tensor of shape {tuple(x.shape)}")


class VideoBackbone(nn.Module):
    """Common surface of the backbones: clips (B, C, T, H, W) → logits (B, num_classes).

    Subclasses implement `forward_features` (clips → last feature map) and `forward_head` (feature map →
    logits) and name their final ``nn.Linear`` in ``classifier_name``.
    """

    classifier_name: str = "fc"
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, type(self).__name__)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` layer."""
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised ``Linear(num_features, num_classes)``."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        init_weights(new)
        parent_name, _, attr = self.classifier_name.rpartition(".")
        setattr(self.get_submodule(parent_name) if parent_name else self, attr, new)
