"""Backbones for VA-RED²: one architecture per module, each variant registered under its builder's name.

Importing this package imports every architecture module, which registers its variants.

Example:
    >>> from vared_core.models import build_model, list_models
    >>> list_models("*_tiny")
    ['i3d_inception_v2_tiny', 'r2plus1d_18_tiny', 'tsn_resnet50_tiny', 'x3d_m_tiny']
    >>> net = build_model("r2plus1d_18_tiny", num_classes=10)
"""
from . import i3d, i3d_seed, r2plus1d, tsn, x3d
from .registry import ModelCfg, build_model, get_model_cfg, list_models, register_model

__all__ = ["ModelCfg", "build_model", "get_model_cfg", "list_models", "register_model"]
