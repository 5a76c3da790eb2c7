"""The VA-RED² dynamic convolution engine: gates, cheap operations, dynamic convs, policies and costs."""
from .cheap_ops import ChannelCheapOp, TemporalCheapOp
from .conv import DynamicConv, LayerRecord
from .convert import dynamize
from .fuse import fuse_batchnorm
from .cost import clip_gflops, static_gflops, track_costs
from .gate import SoftModulationGate
from .loss import efficiency_loss
from .policy import dynamic_layers, dynamic_mode, force_layer_policies, force_policy, random_policy
from .spec import CheapOpsSpec, DynamicSpec, GateSpec, StabilitySpec

__all__ = [
    "ChannelCheapOp",
    "CheapOpsSpec",
    "DynamicConv",
    "DynamicSpec",
    "GateSpec",
    "LayerRecord",
    "SoftModulationGate",
    "StabilitySpec",
    "TemporalCheapOp",
    "clip_gflops",
    "dynamic_layers",
    "dynamic_mode",
    "dynamize",
    "efficiency_loss",
    "force_layer_policies",
    "force_policy",
    "random_policy",
    "fuse_batchnorm",
    "static_gflops",
    "track_costs",
]
