"""The model a run trains: the backbone, dynamized for a dynamic stage, started from the run's
``base_checkpoint`` (checked to fit it), and rebuilt from any checkpoint of a run (`load_model`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from vared_core.dynamic import dynamize, track_costs
from vared_core.models import build_model, get_model_cfg

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .data import clip_geometry
from .dotted import flatten_dotted

__all__ = ["build_run_model", "load_model", "start_state"]

#: DynamicSpec fields that only set how a fresh dynamic layer starts, so a run that continues a dynamic
#: checkpoint may state them differently
_SPEC_INIT_ONLY = {"gate.bias_full", "gate.bias_reduced", "cheap_ops.zero_init"}


def build_run_model(config: TrainConfig, num_classes: int, *, load_base: bool = True) -> nn.Module:
    """The model of a run: the static backbone, and for stage ``dynamic`` that backbone dynamized with the
    run's spec. With ``load_base`` the run's ``base_checkpoint`` starts it: a base run's static weights are
    loaded before dynamizing, a dynamic run's whole model (gates and cheap ops too) after. Costs are tracked
    either way."""
    mcfg = get_model_cfg(config.model)
    geo = clip_geometry(config.data, mcfg)
    model = build_model(
        config.model, num_classes, num_frames=geo.num_frames, crop_size=geo.crop_size, width=config.width,
        dropout=config.dropout,
    )
    start = start_state(config) if config.base_checkpoint is not None and load_base else None
    if start is not None and start["config"].get("stage") == "base":
        _load_start(model, config, num_classes, start)
    if config.stage == "dynamic":
        spec = config.spec
        assert spec is not None
        if not spec.is_static:  # a static spec (S = 1, or both dims off) is the fine-tuned base itself
            dynamize(model, spec, clip_shape=geo.clip_shape, include=mcfg.dynamic_include)
    if start is not None and start["config"].get("stage") == "dynamic":
        _load_start(model, config, num_classes, start)
    track_costs(model)
    return model


def start_state(config: TrainConfig) -> dict[str, Any]:
    """The ``base_checkpoint`` a run starts from, checked to fit it: the same backbone and width, and for a
    dynamic checkpoint (the seed's second stage) the same dynamic layers."""
    path = config.base_checkpoint
    state = load_checkpoint(path)  # type: ignore[arg-type]
    start = state["config"]
    stage = start.get("stage")
    if stage not in ("base", "dynamic"):
        raise CheckpointError(f"base_checkpoint {path}: config.stage is {stage!r}, not 'base' or 'dynamic'")
    wanted = {"model": config.model, "width": config.width}
    found = {k: start.get(k) for k in wanted}
    if found != wanted:
        raise CheckpointError(f"base_checkpoint {path}: trained as {found}, this run needs {wanted}")
    if stage == "dynamic":
        if config.stage != "dynamic":
            raise CheckpointError(f"base_checkpoint {path}: a dynamic run's checkpoint cannot start a base run")
        mine = flatten_dotted(config.spec.to_dict())  # type: ignore[union-attr]
        theirs = flatten_dotted(TrainConfig.model_validate(start).spec.to_dict())  # type: ignore[union-attr]
        diffs = [f"dynamic.{k}: {theirs[k]!r} there, {mine[k]!r} here" for k in mine
                 if k not in _SPEC_INIT_ONLY and mine[k] != theirs.get(k)]
        if diffs:
            raise CheckpointError(f"base_checkpoint {path}: its dynamic layers differ from this run's: " + "; ".join(diffs))
    return state


def _load_start(model: nn.Module, config: TrainConfig, num_classes: int, state: dict[str, Any]) -> None:
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"base_checkpoint {config.base_checkpoint}: weights do not fit {config.model} with {num_classes} classes: "
            f"{str(e).splitlines()[0]} …"
        ) from None


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild a trained model (static or dynamic) from any checkpoint of a run."""
    state = load_checkpoint(path)
    config = TrainConfig.model_validate(state["config"])
    model = build_run_model(config, int(state["num_classes"]), load_base=False)
    model.load_state_dict(state["model"])
    return model.to(device), config
