"""`fuse_batchnorm`: fold every eval BatchNorm that directly follows a conv into that conv, for inference.

A BatchNorm with running statistics is a per-channel affine map. Folded into a static conv it changes the
conv's weight and bias (`torch.nn.utils.fusion.fuse_conv_bn_weights`); folded into a `DynamicConv` it is
applied while the layer writes its computed and rebuilt parts (`DynamicConv.absorb_affine`). Either way
the BatchNorm's own pass over the feature map disappears, which on a CPU is a large share of a video CNN's
time (about 30% of the R(2+1)D stage network in `benchmarks/dynamic_speed.py`).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import ExitStack

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .affine import batchnorm_affine
from .conv import DynamicConv
from .cost import has_cost_tracker, track_costs, zero_clip
from .policy import dynamic_layers, dynamic_mode, force_policy

__all__ = ["fuse_batchnorm"]

_CONVS = (nn.Conv2d, nn.Conv3d, DynamicConv)
_BNS = (nn.BatchNorm2d, nn.BatchNorm3d)


def _consumers(outputs: list[torch.Tensor]) -> dict[torch.autograd.graph.Node, int]:
    """How many autograd nodes take each node's result as an input, over the graph behind ``outputs``."""
    counts: dict = {}
    seen = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                counts[nxt] = counts.get(nxt, 0) + 1
                stack.append(nxt)
    return counts


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def _pairs(model: nn.Module, clip_shape: Sequence[int]) -> list[tuple[str, str]]:
    """(conv name, BN name) pairs where the BN's input is exactly the conv's output and nothing else reads it.

    Found from one soft-mode forward of a zero clip with gradients on: module hooks see which tensor
    each conv produced and each BN received; the autograd graph says how many ops consumed it.
    """
    produced: dict[str, tuple[torch.Tensor, object]] = {}  # conv name → (its output, that output's grad_fn)
    received: dict[str, tuple[torch.Tensor, object]] = {}  # BN name → (its input, that input's grad_fn)
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(
                lambda mod, args, out, name=name: produced.__setitem__(name, (out, out.grad_fn))))
        elif isinstance(m, _BNS) and m.track_running_stats and m.running_mean is not None:
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: received.__setitem__(name, (args[0], args[0].grad_fn))))
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad(), ExitStack() as stack:
            if dynamic_layers(model):  # soft mode, every gate on the full alternative: each conv really runs
                stack.enter_context(dynamic_mode(model, "soft"))
                stack.enter_context(force_policy(model, temporal=0, channel=0))
            out = model(zero_clip(model, clip_shape))
        counts = _consumers(_tensors(out))
    finally:
        for h in handles:
            h.remove()
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    by_node = {id(node): name for name, (t, node) in produced.items() if node is not None}
    pairs = []
    for bn_name, (t, node) in received.items():
        conv_name = by_node.get(id(node)) if node is not None else None
        if conv_name is None or produced[conv_name][0] is not t or counts.get(node, 0) != 1:
            continue
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if conv.out_channels == bn.num_features:
            pairs.append((conv_name, bn_name))
    return pairs


def fuse_batchnorm(model: nn.Module, clip_shape: Sequence[int]) -> nn.Module:
    """An inference copy of ``model`` with every BatchNorm that directly follows a conv folded into it.

    Works on static and dynamized networks alike (Conv2d, Conv3d and `DynamicConv`), so a static model and
    its dynamic twin can be timed in the same, fastest inference form. A BN is folded only when its input is
    exactly a conv's output that nothing else reads; other BNs stay. The copy is in eval mode with frozen
    parameters, gives the same outputs as ``model.eval()`` (up to float rounding), keeps per-clip cost
    tracking (`clip_gflops`), and is not meant for training: fine-tune ``model`` and fuse again.

    Args:
        model: any conv net taking clips (B, C, T, H, W).
        clip_shape: (C, T, H, W) of one clip, for the probe forward that finds the conv → BN pairs.
    Returns:
        The fused copy; ``model`` itself is not changed.

    Example:
        >>> net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU())
        >>> fused = fuse_batchnorm(net, clip_shape=(3, 4, 16, 16))
        >>> [type(m).__name__ for m in fused]
        ['Conv3d', 'Identity', 'ReLU']
    """
    if len(clip_shape) != 4:
        raise ValueError(f"fuse_batchnorm: clip_shape must be (C, T, H, W), got {tuple(clip_shape)}")
    records = [(m, m.last) for _, m in dynamic_layers(model)]
    try:  # the last forward's records are not copied: after a training step they hold autograd history
        for m, _ in records:
            m.last = None
        fused = copy.deepcopy(model).eval()
    finally:
        for m, record in records:
            m.last = record
    with torch.no_grad():
        for conv_name, bn_name in _pairs(fused, clip_shape):
            conv, bn = fused.get_submodule(conv_name), fused.get_submodule(bn_name)
            if isinstance(conv, DynamicConv):
                conv.absorb_affine(*batchnorm_affine(bn))
            else:
                conv.weight, conv.bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
            parent, _, attr = bn_name.rpartition(".")
            setattr(fused.get_submodule(parent) if parent else fused, attr, nn.Identity())
    fused.requires_grad_(False)
    if has_cost_tracker(fused):
        track_costs(fused)
    return fused
