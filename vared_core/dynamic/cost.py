"""Per-clip cost: what each clip of the last forward really cost, and static FLOP counting.

"GFLOPs" in this project is the seed's unit: conv + linear multiply-accumulates (in 10⁹) for one clip.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .conv import DynamicConv
from .policy import dynamic_layers

__all__ = ["track_costs", "clip_gflops", "static_gflops"]

_TRACKER_ATTR = "_vared_cost_tracker"


class _CostTracker:
    """Forward hooks summing the MACs of every static Conv/Linear outside the dynamic layers."""

    def __init__(self, model: nn.Module) -> None:
        self.clips = 0
        self.static_macs = 0.0
        model.register_forward_pre_hook(self._start)
        inside_dynamic = {id(sub) for m in model.modules() if isinstance(m, DynamicConv) for sub in m.modules()}
        for m in model.modules():
            if id(m) not in inside_dynamic and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                m.register_forward_hook(self._count)

    def _start(self, module: nn.Module, args: tuple) -> None:
        self.clips = int(args[0].shape[0])
        self.static_macs = 0.0

    def _count(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(module, nn.Linear):
            self.static_macs += out.numel() * module.in_features
        else:
            per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
            self.static_macs += out.numel() * per_output


def _remove_trackers(model: nn.Module) -> None:
    """Drop every cost-tracker hook from ``model``'s modules. Done through the modules' own hook tables,
    not the tracker's handles: in a deep copy those handles still point at the original model's tables."""
    for m in model.modules():
        for hooks in (m._forward_hooks, m._forward_pre_hooks):
            for key in [k for k, h in hooks.items() if isinstance(getattr(h, "__self__", None), _CostTracker)]:
                del hooks[key]


def has_cost_tracker(model: nn.Module) -> bool:
    """Whether `track_costs` (or `dynamize`) installed per-clip cost tracking on ``model``."""
    return getattr(model, _TRACKER_ATTR, None) is not None


def track_costs(model: nn.Module) -> nn.Module:
    """Install (or refresh) the per-clip cost tracker `clip_gflops` reads. `dynamize` calls it; call it
    yourself to get per-clip costs of a static model. Returns ``model``."""
    _remove_trackers(model)
    object.__setattr__(model, _TRACKER_ATTR, _CostTracker(model))
    return model


def clip_gflops(model: nn.Module) -> torch.Tensor:
    """(B,) float64 GFLOPs (10⁹ multiply-accumulates) each clip of the last forward costs.

    Reduced dynamic convs, their cheap ops and gates, plus the static rest of the network (every Conv
    and Linear outside the dynamic layers). In hard mode this is what was computed; in soft mode
    (training) it is what the same gate decisions cost at inference.

    Example:
        >>> from vared_core.dynamic import DynamicSpec, dynamize, force_policy
        >>> net = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
        ...                     nn.Conv3d(8, 16, (1, 3, 3), padding=(0, 1, 1)))
        >>> model = dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 4, 16, 16)).eval()
        >>> clips = torch.randn(2, 3, 4, 16, 16)
        >>> with torch.no_grad(), force_policy(model, temporal=[0, 1], channel=0):
        ...     logits = model(clips)
        >>> full, half_frames = clip_gflops(model).tolist()    # GFLOPs of each clip of this batch
        >>> round(half_frames / full, 2)       # the second clip: every other frame, plus gates and copies
        0.51
    """
    tracker = getattr(model, _TRACKER_ATTR, None)
    if tracker is None:
        raise ValueError("clip_gflops: the model has no cost tracker; call vared_core.dynamize or track_costs first")
    if tracker.clips == 0:
        raise ValueError("clip_gflops: run a forward pass first")
    total = torch.full((tracker.clips,), tracker.static_macs / tracker.clips, dtype=torch.float64)
    for name, layer in dynamic_layers(model):
        if layer.last is None:
            continue
        if layer.last.clip_macs.shape[0] != tracker.clips:
            raise ValueError(f"clip_gflops: layer '{name}' saw {layer.last.clip_macs.shape[0]} clips, the model {tracker.clips}")
        total += layer.last.clip_macs
    return total / 1e9


def zero_clip(model: nn.Module, clip_shape: Sequence[int]) -> torch.Tensor:
    """A zero clip (batch 1) of ``clip_shape`` = (C, T, H, W) on the model's device and dtype."""
    param = next(model.parameters(), None)
    return torch.zeros(1, *clip_shape, device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None else None)


def forward_zero_clip(model: nn.Module, clip_shape: Sequence[int]) -> torch.Tensor:
    """One forward of a `zero_clip` in eval mode without grad; the model's training mode is restored afterwards."""
    x = zero_clip(model, clip_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.train(was_training)


def static_gflops(model: nn.Module, clip_shape: Sequence[int]) -> float:
    """GFLOPs of one clip of ``clip_shape`` = (C, T, H, W) through ``model``, counted by
    `torch.utils.flop_counter.FlopCounterMode` (its FLOPs / 2 = multiply-accumulates). Eval mode, no grad.

    Example:
        >>> static_gflops(nn.Conv3d(3, 8, 3), (3, 4, 16, 16))   # doctest: +ELLIPSIS
        0.000...
    """
    with FlopCounterMode(display=False) as counter:
        forward_zero_clip(model, clip_shape)
    return counter.get_total_flops() / 2 / 1e9
