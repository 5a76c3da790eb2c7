"""The efficiency loss of eq. 3.6 (method doc §5)."""
from __future__ import annotations

import torch
from torch import nn

from .policy import dynamic_layers

__all__ = ["efficiency_loss"]


def efficiency_loss(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_e = mean over clips of (μ₀ · Σ_l [C(f_l) / Σ_k C(f_k)] · r_l^s / R_l^s)², from the last forward.

    μ₀ is 1 for a correctly classified clip, else 0. The per-layer factor r^s/R^s is the hard cost fraction
    of the largest alternative in use; its gradient comes from the expected fraction under the normalised
    gate weights (straight-through), so the gates learn to drop expensive alternatives. Add it as
    ``loss = cross_entropy + λ_e · efficiency_loss(model, logits, labels)``.

    Args:
        model: a dynamized model after a forward pass.
        logits: (B, num_classes) from that pass.
        labels: (B,) class indices.
    Returns:
        A scalar tensor (0 when the model has no dynamic layers).
    """
    layers = [m for _, m in dynamic_layers(model) if m.last is not None]
    if not layers:
        return logits.new_zeros(())
    full = torch.tensor([m.last.full_macs for m in layers], dtype=logits.dtype, device=logits.device)
    weights = full / full.sum()
    fractions = torch.stack([m.last.cost_fraction.to(logits.dtype) for m in layers], dim=1)  # (B, L)
    correct = (logits.argmax(dim=1) == labels).to(logits.dtype)
    return ((correct * (fractions * weights).sum(dim=1)) ** 2).mean()
