"""`dynamize`: turn chosen convs of any conv net into `DynamicConv` layers (model-agnostic plugin)."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

from torch import nn

from .conv import DynamicConv
from .cost import forward_zero_clip, track_costs
from .spec import DynamicSpec

__all__ = ["dynamize", "Include"]

Include = Sequence[str] | Callable[[str, nn.Module], bool] | None
_CONVS = (nn.Conv2d, nn.Conv3d)


def _select(model: nn.Module, include: Include) -> list[str]:
    """Module names to make dynamic; explicit names that are not convs raise ``ValueError``."""
    modules = dict(model.named_modules())
    if include is None:
        return [n for n, m in modules.items() if isinstance(m, _CONVS)]
    if callable(include):
        chosen = [n for n, m in modules.items() if n and include(n, m)]
        for n in chosen:
            if not isinstance(modules[n], _CONVS):
                raise ValueError(f"dynamize: module '{n}' is {type(modules[n]).__name__}, not nn.Conv2d or nn.Conv3d")
        return chosen
    if isinstance(include, str):
        include = [include]
    chosen: list[str] = []
    for pattern in include:
        if not any(c in pattern for c in "*?["):
            if pattern not in modules:
                raise ValueError(f"dynamize: no module named '{pattern}' in {type(model).__name__}")
            if not isinstance(modules[pattern], _CONVS):
                raise ValueError(
                    f"dynamize: module '{pattern}' is {type(modules[pattern]).__name__}, not nn.Conv2d or nn.Conv3d"
                )
            hits = [pattern]
        else:
            hits = [n for n, m in modules.items() if fnmatch.fnmatchcase(n, pattern) and isinstance(m, _CONVS)]
            if not hits:
                raise ValueError(f"dynamize: pattern '{pattern}' matches no Conv2d/Conv3d in {type(model).__name__}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _probe_frames(model: nn.Module, names: list[str], clip_shape: Sequence[int]) -> dict[str, int]:
    """Frames per clip entering each chosen conv, from one forward of a zero clip (batch 1)."""
    frames: dict[str, int] = {}
    modules = dict(model.named_modules())
    handles = []
    for n in names:
        def hook(module: nn.Module, args: tuple, n: str = n) -> None:
            x = args[0]
            frames[n] = int(x.shape[0]) if isinstance(module, nn.Conv2d) else int(x.shape[2])
        handles.append(modules[n].register_forward_pre_hook(hook))
    try:
        forward_zero_clip(model, clip_shape)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in frames]
    if missing:
        raise ValueError(f"dynamize: module '{missing[0]}' was not called by a forward of a {tuple(clip_shape)} clip")
    return frames


def dynamize(model: nn.Module, spec: DynamicSpec, *, clip_shape: Sequence[int], include: Include = None) -> nn.Module:
    """Replace chosen convs of ``model`` by `DynamicConv` layers, in place, and install cost tracking.

    The original conv weights stay the same Parameter objects under the same state-dict keys, so a
    trained base model can be dynamized and fine-tuned. One probe forward of a zero clip learns how many
    frames each conv sees (gates pool a fixed C_in·T vector, so the dynamized model keeps that clip length).

    Args:
        model: any network taking clips (B, C, T, H, W); Conv2d layers are taken to see time folded into
            the batch (TSN style), Conv3d layers to see (B, C, T, H, W).
        spec: what is dynamic; ``spec.layers`` (fnmatch patterns) chooses the convs, ``None`` takes ``include``.
        clip_shape: (C, T, H, W) of one clip.
        include: the network's own default choice, used when ``spec.layers`` is ``None``: ``None`` (every
            Conv2d/Conv3d), fnmatch patterns over module names, or a callable ``(name, module) -> bool``.
            `build_model` passes a backbone's ``ModelCfg.dynamic_include``. Names without wildcards must be convs.
    Returns:
        ``model``, now dynamic (for ``search_space == 1`` or both dimensions off it computes exactly as before).
    Raises:
        ValueError: naming the module path, for a non-conv, a conv whose groups cannot be sliced, a
            padding mode other than zeros, or a conv the probe forward never reached.

    Example:
        >>> net = nn.Sequential(nn.Conv3d(3, 16, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(), nn.Conv3d(16, 32, (1, 3, 3)))
        >>> net = dynamize(net, DynamicSpec(search_space=2), clip_shape=(3, 8, 32, 32))
        >>> [type(m).__name__ for m in net]
        ['DynamicConv', 'ReLU', 'DynamicConv']
    """
    if not isinstance(spec, DynamicSpec):
        raise ValueError(f"dynamize: spec must be a DynamicSpec, got {type(spec).__name__}")
    if len(clip_shape) != 4:
        raise ValueError(f"dynamize: clip_shape must be (C, T, H, W), got {tuple(clip_shape)}")
    if any(isinstance(m, DynamicConv) for m in model.modules()):
        raise ValueError(f"dynamize: {type(model).__name__} is already dynamic")
    names = _select(model, spec.layers if spec.layers is not None else include)
    frames = _probe_frames(model, names, clip_shape)
    modules = dict(model.named_modules())
    if "" in names:
        raise ValueError("dynamize: the model itself is a conv; wrap it in a container first")
    # build every dynamic layer before touching the model, so a bad layer leaves the model unchanged
    built = {n: DynamicConv.build(modules[n], spec, in_frames=frames[n], name=n).train(modules[n].training) for n in names}
    for name, dyn in built.items():
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, dyn)
    return track_costs(model)
