"""Training and evaluation: `TrainConfig` → `fit` → checkpoints and metrics; `evaluate` on any model.

Example::

    from vared_core.engine import DataConfig, SyntheticData, TrainConfig, fit
    base = fit(TrainConfig(model="r2plus1d_18_tiny", epochs=4, output_dir="runs/base",
                           data=DataConfig(synthetic=SyntheticData(root="data/synth"), flip=False)))
    dyn = fit(TrainConfig(model="r2plus1d_18_tiny", stage="dynamic", base_checkpoint=base.checkpoint,
                          lambda_e=0.8, epochs=2, output_dir="runs/dyn", data=base.config.data))
    print(dyn.metrics["video_top1"], dyn.metrics["gflops_avg"])
"""
from __future__ import annotations

from .checkpoint import CheckpointError, checkpoint_dirs, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, DataConfig, OptimConfig, ResolvedOptim, SyntheticData, TrainConfig, load_config, resolve_optim
from .data import ClipGeometry, build_datasets, clip_geometry, data_lists, ensure_synthetic
from .evaluate import EvalResult, VideoRow, centre_views, evaluate, score_views
from .run_model import build_run_model, load_model
from .train import FitResult, FitStopped, TrainingDiverged, fit

__all__ = [
    "CheckpointError",
    "ClipGeometry",
    "ConfigError",
    "DataConfig",
    "EvalResult",
    "FitResult",
    "FitStopped",
    "OptimConfig",
    "ResolvedOptim",
    "SyntheticData",
    "TrainConfig",
    "TrainingDiverged",
    "VideoRow",
    "build_datasets",
    "build_run_model",
    "centre_views",
    "checkpoint_dirs",
    "clip_geometry",
    "data_lists",
    "ensure_synthetic",
    "evaluate",
    "fit",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "load_model",
    "save_checkpoint",
    "resolve_optim",
    "score_views",
]
