"""`TrainConfig`: everything one training run (a base model or a dynamic fine-tune) depends on.

One typed, serialisable record: the orchestrator builds it from a trial's parameters, `vared train`
from YAML and flags, and every checkpoint stores it. ``None`` in a field means "the backbone's
default" (`vared_core.get_model_cfg`), resolved by `resolve`, so a config written for one backbone
stays meaningful for another.

Example:
    >>> cfg = TrainConfig(model="r2plus1d_18_tiny", epochs=2, output_dir="runs/base",
    ...                   data=DataConfig(synthetic=SyntheticData(root="data/synth")))
    >>> cfg.stage, cfg.data.batch_size
    ('base', 8)
    >>> TrainConfig.model_validate(cfg.to_dict()) == cfg
    True
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vared_core.dynamic import DynamicSpec
from vared_core.dynamic.spec import MOVED_FIELDS, regroup_flat_fields

from .dotted import set_dotted

__all__ = ["ConfigError", "DataConfig", "OptimConfig", "ResolvedOptim", "SyntheticData", "TrainConfig", "load_config",
           "resolve_optim", "upgrade_stored_config"]


class _Strict(BaseModel):
    """Unknown keys are errors, and a config never changes once built: derive another with
    ``model_copy(update=...)`` (a resumed run, a trial's overrides), so what a checkpoint or an MLflow run
    recorded is what ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticData(_Strict):
    """A synthetic motion-pattern dataset (`vared_core.data.make_synthetic`), written on first use."""

    root: Path
    classes: int = Field(4, ge=1)
    videos_per_class: int = Field(8, ge=2)
    frames: int = Field(16, ge=1)
    size: int = Field(64, ge=32)
    seed: int = Field(0, ge=0)
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    appearance: float = Field(0.0, ge=0.0, le=1.0)  # reliability of the scene colour cue (0: motion only)
    appearance_fast: float | None = Field(None, ge=0.0, le=1.0)  # its reliability for the fastest clips
    cast_fast: float = Field(1.0, ge=0.0, le=1.0)  # the cue's strength for the fastest clips (1: no fade)


class DataConfig(_Strict):
    """Where clips come from and how they are cut.

    Either ``synthetic`` or both list files (Kinetics-style CSV / space-separated lists, see
    `vared_core.data.read_list`). ``None`` geometry fields take the backbone's defaults.

    The test protocol is the seed's *K-LeftCenterRight*: ``test_clips`` (K) clips evenly over each video ×
    ``test_crops`` (left, centre, right) crops, the video's prediction the mean over the 3K views. ``None``
    takes the backbone's default (`ModelCfg.test_clips`: K = 10, 3 crops for full-size backbones), and
    ``protocol: moments`` caps that default K at 3, as the seed tests Moments-in-Time.
    """

    synthetic: SyntheticData | None = None
    train_list: Path | None = None
    val_list: Path | None = None
    root: Path | None = None
    classes: list[str] | None = None
    num_frames: int | None = Field(None, ge=1)
    frame_stride: int | None = Field(None, ge=1)
    crop_size: int | None = Field(None, ge=8)
    test_crop_size: int | None = Field(None, ge=8)
    flip: bool = True
    test_clips: int | None = Field(None, ge=1)
    test_crops: Literal[1, 3] | None = None
    protocol: Literal["kinetics", "moments"] = "kinetics"
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    num_workers: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        lists = (self.train_list is not None, self.val_list is not None)
        if self.synthetic is not None and any(lists):
            raise ValueError("give either 'synthetic' or 'train_list'/'val_list', not both")
        if self.synthetic is None and not all(lists):
            raise ValueError("give 'synthetic' or both 'train_list' and 'val_list'")
        return self


class OptimConfig(_Strict):
    """SGD with Nesterov momentum; linear warm-up then cosine decay, stepped every iteration.

    ``None`` fields take the backbone's recipe from the seed (`resolve_optim`): ``lr`` its ``lr`` for a run
    from scratch or its ``finetune_lr`` for a run that starts from a checkpoint, scaled linearly from the
    backbone's ``total_batch`` to this run's; ``weight_decay`` its own; ``warmup_epochs`` its warm-up for a
    run from scratch and none for a fine-tune. An lr given here is used as it is. Weight decay applies to conv and linear weights, not to norms or biases.
    ``gate_lr_mult`` scales the learning rate of the soft modulation gates, which a dynamic fine-tune
    trains from scratch while the backbone only adapts (e.g. backbone lr 0.001, gates ×10).
    ``grad_clip`` bounds the gradient norm of the whole model; ``gate_grad_clip`` that of the gates' parameters
    alone (applied first), so a fine-tune can give the gates a high learning rate without their occasional
    large gradients (a clip whose gate weights nearly vanish: normalised weights divide by their sum) turning
    into steps that flip every clip's policy at once.
    ``total_batch`` is the clips of one optimizer step over all data-parallel workers: ``data.batch_size`` per
    worker × workers × gradient-accumulation steps (`resolve_optim`); ``None``: ``data.batch_size`` ×
    workers, no accumulation. Given, it keeps a run's schedule whatever the worker count, so a run resumes
    on another number of workers.
    """

    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    warmup_epochs: float | None = Field(None, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    grad_clip: float | None = Field(None, gt=0)
    gate_lr_mult: float = Field(1.0, gt=0)
    gate_grad_clip: float | None = Field(None, gt=0)
    total_batch: int | None = Field(None, ge=1)


class TrainConfig(_Strict):
    """One training run.

    Attributes:
        model: registered backbone name (`vared_core.list_models`).
        num_classes: classifier outputs; ``None`` = the dataset's class count.
        width: channel width multiplier of the backbone.
        dropout: dropout probability before the classifier; ``None``: the backbone's default.
        stage: ``"base"`` trains the static backbone; ``"dynamic"`` dynamizes it with ``dynamic`` and trains
            with cross-entropy + ``lambda_e`` · efficiency loss (method doc §5–6), from scratch or from
            ``base_checkpoint``.
        dynamic: the dynamic spec (stage ``"dynamic"`` only; default `DynamicSpec()`); ``dynamic.layers`` chooses
            the convs to make dynamic, ``None`` the backbone's default (`ModelCfg.dynamic_include`).
        lambda_e: weight λ_e of the efficiency loss.
        policy_warmup_epochs: stage ``"dynamic"``: epochs at its start in which every dynamic layer runs a
            randomly drawn alternative per clip (`vared_core.dynamic.random_policy`), training the cheap ops
            and backbone for every alternative before the gates learn to choose (0: gates from the start,
            as the seed). May be fractional; counted in optimizer steps.
        base_checkpoint: checkpoint (file or directory) of the run this one continues as a new stage: a base
            run (its static weights are dynamized: base → dynamize → fine-tune) or, for stage ``"dynamic"``, a
            dynamic run with the same dynamic layers (the seed's fine-tune of a dynamic model trained from
            scratch: gates and cheap ops carried over). The new stage has its own λ_e, epochs and optimiser.
        epochs: training epochs.
        seed: seed of initialisation, clip sampling and shuffling; CPU runs are bit-reproducible.
        output_dir: run folder: ``checkpoints/epoch_NNNN/`` and ``metrics.jsonl``.
        resume_from: a checkpoint of this same run to continue from (``"last"`` = the newest one in
            ``output_dir``, none there = start fresh).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bfloat16/float16 autocast + grad scaling on CUDA (ignored on CPU).
        channels_last: channels-last memory layout on CUDA (cudnn benchmark is on there as well).
        threads: CPU threads for torch (``None`` leaves torch's default; per process in a data-parallel run).
        sync_batchnorm: in a data-parallel run of several ranks, BatchNorm statistics over the global batch
            (`vared_core.engine.sync_batchnorm`), as the seed trained; ``False``: each rank's own batch.
        eval_every: evaluate every N epochs (the last epoch always).
        keep_checkpoints: newest checkpoints kept on disk (≥ 1).
        max_steps_per_epoch: cap on optimizer steps per epoch (smoke runs).
    """

    model: str
    num_classes: int | None = Field(None, ge=1)
    width: float = Field(1.0, gt=0)
    dropout: float | None = Field(None, ge=0, lt=1)
    stage: Literal["base", "dynamic"] = "base"
    dynamic: DynamicSpec | None = None
    lambda_e: float = Field(0.8, ge=0)
    policy_warmup_epochs: float = Field(0.0, ge=0)
    base_checkpoint: Path | None = None
    epochs: int = Field(ge=1)
    optim: OptimConfig = OptimConfig()
    data: DataConfig
    seed: int = Field(0, ge=0)
    output_dir: Path
    resume_from: Path | Literal["last"] | None = None
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    threads: int | None = Field(None, ge=1)
    sync_batchnorm: bool = True
    eval_every: int = Field(1, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_steps_per_epoch: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _moved_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "dynamic_include" in data:
            raise ValueError("'dynamic_include' is now 'dynamic.layers' (fnmatch patterns of the convs to make "
                             "dynamic)")  # fmt: skip
        dynamic = data.get("dynamic")
        moved = [k for k in dynamic if k in MOVED_FIELDS] if isinstance(dynamic, dict) else []
        if moved:
            raise ValueError("; ".join(f"'dynamic.{k}' is now 'dynamic.{MOVED_FIELDS[k]}'" for k in moved))
        return data

    @model_validator(mode="after")
    def _stage_fields(self) -> TrainConfig:
        if self.stage == "base" and self.dynamic is not None:
            raise ValueError("'dynamic' belongs to stage 'dynamic'; this run has stage 'base'")
        if self.stage == "base" and self.policy_warmup_epochs > 0:
            raise ValueError("'policy_warmup_epochs' belongs to stage 'dynamic'; this run has stage 'base'")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        return self

    @property
    def spec(self) -> DynamicSpec | None:
        """The dynamic spec of this run (``None`` for a base run)."""
        if self.stage == "base":
            return None
        return self.dynamic if self.dynamic is not None else DynamicSpec()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML values (paths as strings), the form checkpoints and trackers store."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass(frozen=True)
class ResolvedOptim:
    """The optimiser settings a run really uses, after the backbone's defaults, the batch split and the lr
    scaling: ``total_batch`` = ``batch_per_worker`` × ``workers`` × ``accumulation``."""

    lr: float
    weight_decay: float
    warmup_epochs: float
    total_batch: int
    lr_scale: float  # total_batch / the backbone's total batch (1: an lr given by the config, or no scaling)
    from_scratch: bool
    workers: int = 1
    batch_per_worker: int = 1
    accumulation: int = 1

    def to_dict(self) -> dict[str, float | int | bool]:
        """The values as plain numbers, the form metrics files and trackers log."""
        return dataclasses.asdict(self)


def resolve_optim(config: TrainConfig, model_cfg: Any, *, workers: int = 1) -> ResolvedOptim:
    """``config.optim`` with every ``None`` replaced by the backbone's seed recipe (see `OptimConfig`).

    The total batch is ``optim.total_batch``, or ``data.batch_size`` × ``workers`` when that is ``None``; the
    gradient-accumulation steps make up the rest (total / (batch_size × workers), which must be whole). The
    linear scaling rule (Goyal et al., 2017) takes the backbone's lr from its ``total_batch`` to this one.

    Raises:
        ValueError: a total batch that ``workers`` × ``data.batch_size`` does not divide, with the numbers.

    Example:
        >>> from vared_core.models import get_model_cfg
        >>> cfg = TrainConfig(model="r2plus1d_18", epochs=120, output_dir="runs/base",
        ...                   data=DataConfig(train_list="t.csv", val_list="v.csv", batch_size=12))
        >>> r = resolve_optim(cfg, get_model_cfg("r2plus1d_18"), workers=8)   # 8 GPUs × 12 clips
        >>> round(r.lr, 4), r.weight_decay, r.warmup_epochs, r.total_batch, r.accumulation
        (0.015, 0.0005, 15.0, 96, 1)
        >>> resolve_optim(cfg.model_copy(update={"optim": OptimConfig(total_batch=96)}),
        ...               get_model_cfg("r2plus1d_18"), workers=2).accumulation   # 2 GPUs × 12 clips × 4 steps
        4
    """
    if workers < 1:
        raise ValueError(f"resolve_optim: workers must be ≥ 1, got {workers}")
    per_step = config.data.batch_size * workers
    total = config.optim.total_batch if config.optim.total_batch is not None else per_step
    if total % per_step:
        raise ValueError(f"optim.total_batch: {total} clips per step is not a multiple of data.batch_size "
                         f"{config.data.batch_size} × {workers} workers = {per_step}")
    from_scratch = config.base_checkpoint is None
    optim = config.optim
    scale = 1.0
    if optim.lr is not None:
        lr = optim.lr
    else:
        lr = model_cfg.lr if from_scratch else model_cfg.finetune_lr
        if model_cfg.total_batch is not None:
            scale = total / model_cfg.total_batch
            lr *= scale
    warmup = optim.warmup_epochs
    if warmup is None:
        warmup = model_cfg.warmup_epochs if from_scratch else 0.0
    wd = optim.weight_decay if optim.weight_decay is not None else model_cfg.weight_decay
    return ResolvedOptim(lr=lr, weight_decay=wd, warmup_epochs=warmup, total_batch=total, lr_scale=scale,
                         from_scratch=from_scratch, workers=workers, batch_per_worker=config.data.batch_size,
                         accumulation=total // per_step)


def upgrade_stored_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A config as an older checkpoint stored it, in today's fields. Until 2026-12 ``dynamic_include`` chose
    the dynamic convs (now ``dynamic.layers``) and the dynamic spec was flat (``dynamic.gate_hidden``, now
    ``dynamic.gate.hidden``: `MOVED_FIELDS`). Checkpoints keep loading; a config written today with an old
    field is refused, naming where it went.

    Example:
        >>> upgrade_stored_config({"stage": "dynamic", "dynamic": {"search_space": 2}, "dynamic_include": ["a"]})
        {'stage': 'dynamic', 'dynamic': {'search_space': 2, 'layers': ['a']}}
        >>> upgrade_stored_config({"stage": "dynamic", "dynamic": {"cheap_kernel": 5}})["dynamic"]
        {'cheap_ops': {'kernel': 5}}
    """
    dynamic = stored.get("dynamic")
    flat = isinstance(dynamic, dict) and any(k in MOVED_FIELDS for k in dynamic)
    if "dynamic_include" not in stored and not flat:
        return stored
    stored = copy.deepcopy(stored)
    if flat:
        stored["dynamic"] = regroup_flat_fields(stored["dynamic"])
    include = stored.pop("dynamic_include", None)
    if include is not None and stored.get("stage") == "dynamic":
        dynamic = stored.get("dynamic") or {}
        if dynamic.get("layers") is None:
            stored["dynamic"] = {**dynamic, "layers": include}
    return stored


class ConfigError(ValueError):
    """A config file or dict that does not describe a valid `TrainConfig`; the message names the
    source and every offending field (dotted path)."""


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{source}: {path}: {e['msg']}")
    return "\n".join(lines)


def load_config(source: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A `TrainConfig` from a YAML file or a dict, with dotted-key ``overrides`` (``{"optim.lr": 0.1}``).

    Raises:
        ConfigError: naming the file and every invalid or unknown field.
    """
    name = "<dict>"
    if isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        name = str(source)
        try:
            data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{name}: no such config file") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{name}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: expected a mapping of config fields at the top level")
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, name)) from None
