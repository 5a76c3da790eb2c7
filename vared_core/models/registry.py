"""The backbone registry: one name per builder function, its defaults beside it, one way in.

A backbone module defines ``default_cfgs`` (variant name → `ModelCfg`) and then one short builder per
variant decorated with `register_model`; the decorator files the builder under its own function name
together with that variant's cfg. `build_model` is the front door: it looks the name up, builds the static
network and, given a `DynamicSpec`, dynamizes it in place with the variant's default selection of convs.

Example:
    >>> from vared_core.models import build_model, get_model_cfg, list_models
    >>> "r2plus1d_18_tiny" in list_models()
    True
    >>> net = build_model("r2plus1d_18_tiny", num_classes=5)
    >>> get_model_cfg("r2plus1d_18_tiny").num_frames
    8
"""
from __future__ import annotations

import dataclasses
import fnmatch
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from torch import nn

from vared_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # one definition, re-exported here

if TYPE_CHECKING:
    from vared_core.dynamic import DynamicSpec

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "ModelCfg",
    "build_model",
    "get_model_cfg",
    "list_models",
    "register_model",
]

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's video models (R(2+1)D Kinetics-400 weights)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

UNKNOWN_MODEL = "unknown model {name!r}; known models: {known}"

_Builder = TypeVar("_Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelCfg:
    """Defaults of one registered variant: what data builders, cost counters and `build_model` read.

    Attributes:
        num_frames: clip length T the variant is built for (frames per clip, or segments for TSN).
        crop_size: square training crop, pixels.
        test_crop_size: square center crop of one test view, pixels; the seed's GFLOPs are counted at it
            (one clip, this crop).
        sampling: ``"dense"`` (T frames ``frame_stride`` apart) or ``"segment"`` (TSN: one frame from each
            of T equal segments of the video).
        frame_stride: frames between two sampled frames for dense sampling (source frame rate); ``None``
            for segment sampling.
        mean / std: per-channel RGB normalisation of inputs in [0, 1].
        classifier: module name of the final ``nn.Linear`` (``model.get_submodule(classifier)``).
        dynamic_include: fnmatch patterns over module names selecting the convs `build_model` makes
            dynamic by default (``None`` = every Conv2d/Conv3d); a `DynamicSpec`'s ``layers`` choose others.
        paper: reference of the architecture.
        lr: SGD learning rate of a run from scratch (a base model, or a dynamic model trained from epoch 0) at
            a total batch of ``total_batch`` clips; the seed's appendix A.2: 0.18 R(2+1)D, 1.8 I3D and X3D.
        finetune_lr: learning rate of a fine-tune that starts from a checkpoint (seed §4.3: 0.01 R(2+1)D,
            0.1 I3D and X3D), at the same total batch.
        weight_decay: 5e-4 R(2+1)D, 1e-4 I3D, 5e-5 X3D (A.2); TSN's own 5e-4.
        warmup_epochs: linear warm-up of a run from scratch (A.2: 15 on Kinetics); fine-tunes take none.
        total_batch: the total batch (clips per step over every worker) ``lr`` and ``finetune_lr`` belong to:
            the seed's 96 GPUs × 12 clips = 1152. A run's lr scales linearly with its own total batch
            (`vared_core.engine.resolve_optim`); ``None`` (the tiny presets) leaves the lr as it is.
        test_clips / test_crops: the test protocol, K-LeftCenterRight with K = 10 (seed §4.3; K = 3 for
            Moments-in-Time, `DataConfig.protocol`); the tiny presets test one centre-cropped clip.
    """

    num_frames: int
    crop_size: int
    test_crop_size: int
    sampling: Literal["dense", "segment"] = "dense"
    frame_stride: int | None = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classifier: str = "fc"
    dynamic_include: tuple[str, ...] | None = None
    paper: str = ""
    lr: float = 1.8
    finetune_lr: float = 0.1
    weight_decay: float = 1e-4
    warmup_epochs: float = 15.0
    total_batch: int | None = 1152
    test_clips: int = 10
    test_crops: Literal[1, 3] = 3

    def __post_init__(self) -> None:
        if self.sampling not in ("dense", "segment"):
            raise ValueError(f"ModelCfg.sampling must be 'dense' or 'segment', got {self.sampling!r}")
        if (self.sampling == "dense") != (self.frame_stride is not None):
            raise ValueError(
                "ModelCfg.frame_stride must be set for dense sampling and None for segment sampling, "
                f"got sampling={self.sampling!r}, frame_stride={self.frame_stride!r}"
            )
        for field in ("num_frames", "crop_size", "test_crop_size", "test_clips"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelCfg.{field} must be a positive integer, got {value!r}")

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one training clip."""
        return (3, self.num_frames, self.crop_size, self.crop_size)

    @property
    def test_clip_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one test view: the clip the seed's GFLOPs are counted on."""
        return (3, self.num_frames, self.test_crop_size, self.test_crop_size)


_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_cfgs: dict[str, ModelCfg] = {}
_model_modules: dict[str, str] = {}


def register_model(fn: _Builder) -> _Builder:
    """Decorator filing a builder under its own function name, with its module's ``default_cfgs[name]``.

    The builder's module must define ``default_cfgs`` (a dict of `ModelCfg`) above the builder and add
    nothing else: the name is added to the module's ``__all__``.

    Raises:
        ValueError: the module has no cfg for the builder's name, or the name is already registered.
    """
    name = fn.__name__
    module = sys.modules[fn.__module__]
    cfgs = getattr(module, "default_cfgs", {})
    if name not in cfgs:
        raise ValueError(
            f"register_model: {fn.__module__}.default_cfgs has no entry {name!r}; define the variant's "
            "ModelCfg there, above its builder"
        )
    if name in _model_entrypoints and _model_modules[name] != fn.__module__:
        raise ValueError(f"register_model: {name!r} is already registered by {_model_modules[name]}")
    _model_entrypoints[name] = fn
    _model_cfgs[name] = cfgs[name]
    _model_modules[name] = fn.__module__
    exported = getattr(module, "__all__", None)
    if isinstance(exported, list) and name not in exported:
        exported.append(name)
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered backbones matching an fnmatch ``pattern``.

    Example:
        >>> list_models("x3d*")
        ['x3d_m', 'x3d_m_tiny']
    """
    return sorted(n for n in _model_entrypoints if fnmatch.fnmatchcase(n, pattern))


def _check_name(name: str) -> None:
    if name not in _model_entrypoints:
        raise ValueError(UNKNOWN_MODEL.format(name=name, known=", ".join(list_models())))


def get_model_cfg(name: str) -> ModelCfg:
    """The registered defaults of variant ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).

    Example:
        >>> cfg = get_model_cfg("x3d_m")
        >>> cfg.num_frames, cfg.frame_stride, cfg.crop_size, cfg.test_clip_shape
        (16, 5, 224, (3, 16, 256, 256))
    """
    _check_name(name)
    return _model_cfgs[name]


def build_model(
    name: str,
    num_classes: int,
    *,
    num_frames: int | None = None,
    dynamic: DynamicSpec | None = None,
    width: float = 1.0,
    crop_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build backbone ``name``: the static network, or already dynamized when ``dynamic`` is given.

    Args:
        name: a registered builder name (`list_models`), e.g. ``"r2plus1d_18"`` or ``"x3d_m_tiny"``.
        num_classes: size of the classifier output.
        num_frames: clip length T; ``None`` takes the variant's ``cfg.num_frames``. A static model accepts
            any T; a dynamic one keeps this T (each gate pools a C_in·T vector).
        dynamic: the dynamic engine's spec; ``None`` builds the static network. Its ``layers`` choose the convs
            to make dynamic; ``None`` takes the variant's ``cfg.dynamic_include``.
        width: channel multiplier on top of the variant's own widths (tiny variants are already narrow).
        crop_size: H = W of the probe clip `dynamize` runs; ``None`` takes ``cfg.crop_size``. Gates pool
            over space, so the dynamized model still accepts any H, W.
        **kwargs: architecture options passed to the builder by name (``dropout``, ...); options left at
            ``None`` are dropped, so they never override the variant's defaults.

    Returns:
        The network (``nn.Module``), clips (B, 3, T, H, W) → logits (B, num_classes), with ``model.cfg``
        set to the variant's `ModelCfg` (``num_frames`` / ``crop_size`` as built).

    Raises:
        ValueError: unknown ``name`` (listing the known names), or a non-positive ``num_classes``,
            ``num_frames``, ``width`` or ``crop_size``.

    Example:
        >>> net = build_model("x3d_m_tiny", num_classes=10, num_frames=8)
        >>> import torch
        >>> net(torch.zeros(2, 3, 8, 64, 64)).shape
        torch.Size([2, 10])
    """
    _check_name(name)
    cfg = _model_cfgs[name]
    for field, value in (("num_classes", num_classes), ("num_frames", num_frames), ("crop_size", crop_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"build_model({name!r}): {field} must be a positive integer, got {value!r}")
    if not width > 0:
        raise ValueError(f"build_model({name!r}): width must be > 0, got {width!r}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cfg = dataclasses.replace(cfg, num_frames=num_frames or cfg.num_frames, crop_size=crop_size or cfg.crop_size)

    model = _model_entrypoints[name](num_classes=num_classes, width=width, **kwargs)
    if dynamic is not None:
        from vared_core.dynamic import dynamize  # the engine is only needed for dynamic builds

        dynamize(model, dynamic, clip_shape=cfg.clip_shape, include=cfg.dynamic_include)
    model.cfg = cfg
    return model
