"""vared_core: VA-RED² input-dependent redundancy reduction for video CNNs (plain PyTorch).

The public surface the orchestrator and users build on::

    from vared_core import DynamicSpec, dynamize, force_policy, clip_gflops, static_gflops, efficiency_loss

    model = dynamize(model, DynamicSpec(search_space=2), clip_shape=(3, 8, 112, 112))
    logits = model(clips)                  # soft mode in training, hard (really reduced) in eval
    loss = ce + 0.8 * efficiency_loss(model, logits, labels)
    clip_gflops(model)                     # (B,) GFLOPs each clip cost

Training and evaluation (`TrainConfig`, `fit`, `evaluate`, `load_config`) are importable from here
too; they load on first use, so importing vared_core does not start the video decoder.
"""
from typing import Any

from .dynamic import (
    CheapOpsSpec,
    DynamicConv,
    DynamicSpec,
    GateSpec,
    LayerRecord,
    SoftModulationGate,
    StabilitySpec,
    clip_gflops,
    dynamic_layers,
    dynamic_mode,
    dynamize,
    efficiency_loss,
    force_layer_policies,
    force_policy,
    fuse_batchnorm,
    static_gflops,
    track_costs,
)

from .models import ModelCfg, build_model, get_model_cfg, list_models, register_model

__version__ = "0.1.0"

_ENGINE = ("DataConfig", "OptimConfig", "SyntheticData", "TrainConfig", "evaluate", "fit", "load_config", "load_model")


def __getattr__(name: str) -> Any:
    if name in _ENGINE:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'vared_core' has no attribute {name!r}")

__all__ = [
    "CheapOpsSpec",
    "DataConfig",
    "DynamicConv",
    "DynamicSpec",
    "GateSpec",
    "LayerRecord",
    "ModelCfg",
    "OptimConfig",
    "SoftModulationGate",
    "StabilitySpec",
    "SyntheticData",
    "TrainConfig",
    "__version__",
    "build_model",
    "clip_gflops",
    "dynamic_layers",
    "dynamic_mode",
    "dynamize",
    "efficiency_loss",
    "evaluate",
    "fit",
    "force_layer_policies",
    "force_policy",
    "fuse_batchnorm",
    "get_model_cfg",
    "list_models",
    "load_config",
    "load_model",
    "register_model",
    "static_gflops",
    "track_costs",
]
