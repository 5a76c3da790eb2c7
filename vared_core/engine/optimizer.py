"""The optimiser and lr schedule of a run: SGD with weight decay on conv/linear weights only, the gates at
their own lr, a linear warm-up into a cosine decay (per optimizer step)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vared_core.dynamic import SoftModulationGate

from .config import ResolvedOptim, TrainConfig

__all__ = ["build_optimizer", "cosine_with_warmup", "gate_parameters", "param_groups"]


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every soft modulation gate in ``model``."""
    return [p for m in model.modules() if isinstance(m, SoftModulationGate) for p in m.parameters()]


def param_groups(model: nn.Module, lr: float, weight_decay: float, gate_lr_mult: float) -> list[dict[str, Any]]:
    """SGD groups: weight decay on conv/linear weights only; the gates' parameters at ``lr · gate_lr_mult``."""
    gate_params = {id(p) for p in gate_parameters(model)}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_weight = name == "weight" and isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
            groups.setdefault((is_weight, id(p) in gate_params), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": lr * (gate_lr_mult if gate else 1.0)}
        for (decay, gate), params in sorted(groups.items())
    ]


def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """The lr factor of a step: linear from 1/``warmup_steps`` to 1, then a cosine down to ``min_ratio``.

    Example:
        >>> f = cosine_with_warmup(total_steps=10, warmup_steps=2, min_ratio=0.0)
        >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(
    model: nn.Module, config: TrainConfig, recipe: ResolvedOptim, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over ``model`` with ``recipe``'s lr and weight decay, and its schedule over ``config.epochs``."""
    opt = config.optim
    optimizer = torch.optim.SGD(
        param_groups(model, recipe.lr, recipe.weight_decay, opt.gate_lr_mult),
        lr=recipe.lr, momentum=opt.momentum, nesterov=opt.nesterov,
    )  # fmt: skip
    schedule = cosine_with_warmup(steps_per_epoch * config.epochs, round(steps_per_epoch * recipe.warmup_epochs),
                                  opt.min_lr_ratio)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
