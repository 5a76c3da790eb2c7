"""The optimiser of a run: which parameters decay, the gates' own lr, the warm-up and cosine schedule."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vared_core import DynamicSpec, dynamize
from vared_core.engine import DataConfig, OptimConfig, SyntheticData, TrainConfig, resolve_optim
from vared_core.engine.optimizer import build_optimizer, cosine_with_warmup, gate_parameters, param_groups
from vared_core.models import get_model_cfg


def _net() -> nn.Module:
    base = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 2))  # fmt: skip
    return dynamize(base, DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))


def test_decay_on_conv_and_linear_weights_only_and_gates_at_their_own_lr() -> None:
    model = _net()
    groups = param_groups(model, lr=0.1, weight_decay=1e-4, gate_lr_mult=0.5)
    gates = {id(p) for p in gate_parameters(model)}
    assert gates
    seen = set()
    for g in groups:
        for p in g["params"]:
            seen.add(id(p))
            assert g["lr"] == (0.05 if id(p) in gates else 0.1)
            if g["weight_decay"]:
                assert p.dim() >= 2  # a conv or linear weight, never a bias or a BatchNorm's affine
    assert seen == {id(p) for p in model.parameters()}  # every trainable parameter exactly in one group
    assert sum(len(g["params"]) for g in groups) == len(seen)
    assert any(g["weight_decay"] == 1e-4 for g in groups) and any(g["weight_decay"] == 0 for g in groups)


def test_warm_up_rises_linearly_then_the_cosine_falls_to_its_floor() -> None:
    f = cosine_with_warmup(total_steps=20, warmup_steps=4, min_ratio=0.1)
    rise = [f(s) for s in range(4)]
    assert rise == pytest.approx([0.25, 0.5, 0.75, 1.0])
    fall = [f(s) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(fall, fall[1:])) and fall[-1] == pytest.approx(0.1)
    assert f(100) == pytest.approx(0.1)  # past the end it stays at the floor


def test_build_optimizer_takes_the_resolved_lr_and_steps_the_schedule() -> None:
    config = TrainConfig(model="r2plus1d_18_tiny", output_dir="unused", data=DataConfig(synthetic=SyntheticData(root="unused"), batch_size=2), epochs=2,
                         optim=OptimConfig(lr=0.2, warmup_epochs=1, momentum=0.8))  # fmt: skip
    recipe = resolve_optim(config, get_model_cfg(config.model))
    model = _net()
    optimizer, scheduler = build_optimizer(model, config, recipe, steps_per_epoch=5)
    assert optimizer.defaults["momentum"] == 0.8
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(lrs) == pytest.approx(recipe.lr) and lrs.index(max(lrs)) == 4  # warm-up over the first epoch
    assert lrs[0] == pytest.approx(recipe.lr / 5)
    assert torch.isfinite(torch.tensor(lrs)).all()
