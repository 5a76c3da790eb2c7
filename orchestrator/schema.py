"""The study file: one pydantic model for a whole YAML study, validated completely before anything runs.

A study names a base recipe (a `TrainConfig` of stage ``"base"``), the defaults of its dynamic trials
(stage ``"dynamic"``), the search axes over them, the objectives and where everything is stored. A
trial *is* a `TrainConfig`: `Study.trial_config` builds it from the trial's parameters, and validation
builds one for every grid cell with every sampled axis at its ends, so a bad value anywhere is found
at load time with the YAML line that holds it::

    name: smoke
    storage: ../runs/smoke                       # relative paths: against this file's folder
    data: {synthetic: {root: ../runs/data/synth_smoke, classes: 2}, flip: false}
    base: {model: r2plus1d_18_tiny, epochs: 4, optim: {lr: 0.02}}
    trial: {epochs: 2, lambda_e: 0.8, dynamic: {search_space: 2}}
    search:
      grid: {dims: [temporal, both]}             # cross product; dims sets dynamic.temporal/.channel
      sample: {lambda_e: {loguniform: [0.1, 4.0]}}
      num_samples: 2                             # Optuna trials per grid cell
    objectives: {video_top1: max, gflops_avg: min}

Axis keys other than ``dims`` are dotted paths into the trial's `TrainConfig` (``optim.lr``,
``dynamic.search_space``, ``data.num_frames``). Those that change the base model (``model``,
``width``, ``num_classes``, ``data.*``) give each grid cell with another value its own base model.

Ray, Optuna and MLflow are not imported here: validating a study starts nothing.

Example:
    >>> study = load_study("studies/smoke.yaml")            # doctest: +SKIP
    >>> [cell["dims"] for cell in study.grid_cells()]         # doctest: +SKIP
    ['temporal', 'both']
    >>> validate_study("studies/broken.yaml")                # doctest: +SKIP
    ['studies/broken.yaml:12: search.grid.dynamic.search_space[1]: DynamicSpec.search_space must be ...']
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from vared_core.engine.config import DataConfig, TrainConfig
from vared_core.engine.dotted import set_dotted
from vared_core.engine.evaluate import METRICS, Metric
from vared_core.models import list_models

from .yaml_lines import compose, duplicate_keys, format_path, line_of

__all__ = [
    "DIMS",
    "METRICS",
    "Asha",
    "Distribution",
    "Nightly",
    "RayCfg",
    "Resources",
    "Scheduler",
    "Search",
    "Study",
    "StudyError",
    "Tolerance",
    "Tracking",
    "load_study",
    "parse_overrides",
    "validate_study",
]


DIMS: dict[str, tuple[bool, bool]] = {
    "none": (False, False),  # the static network, fine-tuned like the dynamic ones
    "temporal": (True, False),
    "channel": (False, True),
    "both": (True, True),
}
"""The ``dims`` axis: value → (``dynamic.temporal``, ``dynamic.channel``)."""

_BASE_KEYS = ("model", "width", "num_classes")  # axis keys (besides data.*) that change the base model
_FROM_BASE = ("model", "width", "num_classes", "seed")  # base fields a trial inherits
_SET_BY_STUDY = ("data", "output_dir", "stage", "resume_from")
_BASE_FORBIDDEN = {
    **{k: "" for k in _SET_BY_STUDY},
    "dynamic": "it belongs to the dynamic fine-tune: put it under 'trial'",
    "base_checkpoint": "it belongs to the dynamic fine-tune, and the orchestrator sets it",
}
_TRIAL_FORBIDDEN = {
    **{k: "" for k in _SET_BY_STUDY},
    "base_checkpoint": "",
    **{k: "it comes from 'base' (a trial fine-tunes the base model); vary it with a search.grid axis"
       for k in _BASE_KEYS},
}  # fmt: skip
_WHY_SET_BY_STUDY = {
    "data": "give it once under the top-level 'data' (vary it with data.* search axes)",
    "output_dir": "runs are stored under the study's 'storage'",
    "stage": "the orchestrator sets it ('base' for the base recipe, 'dynamic' for trials)",
    "resume_from": "use `orchestrator run --resume` to continue a study",
    "base_checkpoint": "the orchestrator passes each trial the checkpoint of its base model",
}
_AXIS_FORBIDDEN = ("stage", "output_dir", "base_checkpoint", "resume_from")
_DATA_PATHS = (("synthetic", "root"), ("train_list",), ("val_list",), ("root",))


class StudyError(ValueError):
    """A study file that cannot run; the message has one line per problem, ``FILE:LINE: path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tracking(_Strict):
    """MLflow: ``uri`` ``None`` = ``sqlite:///<storage>/mlflow.db``; ``experiment`` ``None`` = the study name.
    The ``MLFLOW_TRACKING_URI`` environment variable overrides ``uri``."""

    uri: str | None = None
    experiment: str | None = None


class RayCfg(_Strict):
    """Ray cluster: ``address`` ``None`` = a local Ray (``RAY_ADDRESS`` / ``--address`` override it)."""

    address: str | None = None


class Resources(_Strict):
    """Per trial (and per base-model task): CPUs (≥ 0.5) and GPUs (may be fractional, 0.25)."""

    cpu: float = Field(1.0, ge=0.5)
    gpu: float = Field(0.0, ge=0)


class Asha(_Strict):
    """Asynchronous successive halving over epochs (single-objective studies only)."""

    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class Scheduler(_Strict):
    """Early stopping of trials; ``asha: null`` (or no scheduler) runs every trial to the end."""

    asha: Asha | None = None


class Tolerance(_Strict):
    """How much worse than its baseline one metric may get before a nightly fails.

    ``drop`` / ``rise`` are absolute (the metric's own units: points for accuracies, GFLOPs, clips/s);
    ``drop_pct`` / ``rise_pct`` are percent of the baseline value. ``drop*`` says the metric is worse when
    it falls (accuracy, speed), ``rise*`` when it grows (cost); with both an absolute and a relative
    allowance the larger applies, so seed noise on small values and on large ones can both be allowed for.

    Example:
        >>> Tolerance(rise_pct=5).regressed(baseline=0.100, current=0.106)
        True
    """

    drop: float | None = Field(None, ge=0)
    drop_pct: float | None = Field(None, ge=0)
    rise: float | None = Field(None, ge=0)
    rise_pct: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_direction(self) -> Tolerance:
        down = self.drop is not None or self.drop_pct is not None
        up = self.rise is not None or self.rise_pct is not None
        if down == up:
            raise ValueError("give drop and/or drop_pct (worse when lower) or rise and/or rise_pct (worse when "
                             "higher), e.g. {drop: 2.0} for video_top1, {rise_pct: 5} for gflops_avg")  # fmt: skip
        return self

    @property
    def worse_when(self) -> Literal["lower", "higher"]:
        return "lower" if self.drop is not None or self.drop_pct is not None else "higher"

    def allowance(self, baseline: float) -> float:
        """The largest worsening allowed from ``baseline`` (≥ 0, in the metric's units)."""
        absolute, pct = (self.drop, self.drop_pct) if self.worse_when == "lower" else (self.rise, self.rise_pct)
        return max(absolute or 0.0, (pct or 0.0) / 100.0 * abs(baseline))

    def worsening(self, baseline: float, current: float) -> float:
        """How much worse ``current`` is than ``baseline`` (negative: better)."""
        return baseline - current if self.worse_when == "lower" else current - baseline

    def regressed(self, baseline: float, current: float) -> bool:
        return not math.isfinite(current) or self.worsening(baseline, current) > self.allowance(baseline) + 1e-12


class Nightly(_Strict):
    """Regression checks of `orchestrator nightly`: per-metric tolerances against the baseline.

    Example YAML::

        nightly:
          tolerances:
            video_top1: {drop: 2.0}        # points
            gflops_avg: {rise_pct: 2}      # percent of the baseline
            clips_per_s: {drop_pct: 50}    # wall-clock speed is noisy on shared machines
    """

    tolerances: dict[Metric, Tolerance] = Field(min_length=1)


_KINDS = ("uniform", "loguniform", "int", "choice")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Distribution(_Strict):
    """A sampled axis, written in YAML as one of::

        {uniform: [low, high]}   {loguniform: [low, high]}  (0 < low)   {int: [low, high]}   {choice: [v1, v2, ...]}

    ``kind`` is the key, ``args`` the list. Bounds are inclusive and ``low < high``; choices are scalars.

    Example:
        >>> d = Distribution.model_validate({"loguniform": [0.1, 4.0]})
        >>> d.kind, d.args, d.extremes()
        ('loguniform', (0.1, 4.0), [0.1, 4.0])
    """

    kind: Literal["uniform", "loguniform", "int", "choice"]
    args: tuple[Any, ...]

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, Distribution):
            return {"kind": value.kind, "args": value.args}
        if isinstance(value, dict) and set(value) == {"kind", "args"}:  # the model's own field form
            kind, args = value["kind"], value["args"]
        elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _KINDS:
            kind, args = next(iter(value.items()))
        else:
            got = sorted(map(str, value)) if isinstance(value, dict) else repr(value)
            raise ValueError(f"give exactly one of {', '.join(_KINDS)} (e.g. {{loguniform: [0.1, 4.0]}}), got {got}")
        if not isinstance(args, (list, tuple)):
            raise ValueError(f"{kind} takes a list, got {args!r}")
        args = tuple(args)
        if kind == "choice":
            if not args:
                raise ValueError("choice needs at least one value")
            bad = [a for a in args if a is not None and not isinstance(a, (bool, int, float, str))]
            if bad:
                raise ValueError(f"choice values must be scalars (number, string, bool, null), got {bad[0]!r}")
        elif kind == "int":
            if len(args) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                raise ValueError(f"int takes [low, high] of two integers, got {list(args)!r}")
            if not args[0] < args[1]:
                raise ValueError(f"int needs low < high, got {list(args)!r}")
        else:
            if len(args) != 2 or not all(_is_number(a) for a in args):
                raise ValueError(f"{kind} takes [low, high] of two numbers, got {list(args)!r}")
            args = (float(args[0]), float(args[1]))
            if not args[0] < args[1]:
                raise ValueError(f"{kind} needs low < high, got {list(args)!r}")
            if kind == "loguniform" and args[0] <= 0:
                raise ValueError(f"loguniform needs 0 < low (it samples log(value)), got {list(args)!r}")
        return {"kind": kind, "args": args}

    @model_serializer
    def _to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}

    def extremes(self) -> list[Any]:
        """The values validation tries: both bounds, or every choice."""
        return list(self.args)


class Search(_Strict):
    """The search axes: a ``grid`` (full cross product, YAML order) × ``sample`` (Optuna, per grid cell).

    ``sampler: grid`` runs the grid only (no ``sample`` axes, ``num_samples: 1``).
    """

    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    sample: dict[str, Distribution] = {}
    sampler: Literal["tpe", "nsga2", "random", "grid"] = "tpe"
    num_samples: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)


def _absolute(p: Path | str, folder: Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (folder / p).resolve()


def _resolve_data(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` (dict form) with its relative file paths made absolute against ``folder``."""
    for path in _DATA_PATHS:
        node = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), (str, Path)):
            node[path[-1]] = _absolute(node[path[-1]], folder)
    return data


def _apply(recipe: dict[str, Any], data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set one dotted run key: ``data`` / ``data.*`` into the data section, anything else into ``recipe``.
    Returns the data section (a ``data`` key replaces it whole)."""
    if key == "data":
        return copy.deepcopy(value)
    if key.startswith("data."):
        set_dotted(data, key[len("data."):], value)
    else:
        set_dotted(recipe, key, value)
    return data


#: how a study trains: ``seed`` — the base model is the dynamic model trained from scratch (λ_e 0 unless
#: ``base`` says otherwise) and each trial fine-tunes it with L_e (seed §4.3, Table 4.10); ``static_base`` — a
#: static base model, dynamized and fine-tuned by each trial
Recipe = Literal["seed", "static_base"]
_SEED_BASE_FROM_TRIAL = ("dynamic", "dynamic_include")  # with the seed's recipe, the base is dynamic as the trials


def _apply_axis(recipe: dict[str, Any], data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`_apply` for an axis value; ``dims`` sets ``dynamic.temporal`` and ``dynamic.channel``."""
    if key != "dims":
        return _apply(recipe, data, key, value)
    if value not in DIMS:
        raise ValueError(f"dims must be one of {', '.join(DIMS)}, got {value!r}")
    temporal, channel = DIMS[value]
    set_dotted(recipe, "dynamic.temporal", temporal)
    set_dotted(recipe, "dynamic.channel", channel)
    return data


def _is_base_key(key: str, recipe: str = "static_base") -> bool:
    """Whether axis ``key`` changes the base model: under the seed's recipe the dynamic layers do too."""
    if recipe == "seed" and (key in ("dims", *_SEED_BASE_FROM_TRIAL) or key.startswith("dynamic.")):
        return True
    return key in _BASE_KEYS or key == "data" or key.startswith("data.")


class Study(_Strict):
    """One study file. Build it with `load_study`; see the module doc for the file format.

    Attributes:
        source: the YAML file it was loaded from (not part of dumps); relative paths resolve against its folder.
        name: ``[A-Za-z0-9_.-]+``; the MLflow experiment unless ``tracking.experiment`` is set.
        storage: the study folder (absolute): Ray results, base-model cache, state.
        data: the clips, shared by the base models and trials (paths absolute).
        recipe: ``"seed"`` (the default): the base model is the trials' dynamic model trained from scratch
            (stage ``"dynamic"``, the trials' ``dynamic`` and ``dynamic_include``, λ_e 0 unless ``base`` sets
            it), and every trial fine-tunes that checkpoint with its own λ_e, epochs and lr (seed §4.3,
            Table 4.10: before and after the L_e fine-tune). ``"static_base"``: a static base model that
            each trial dynamizes and fine-tunes.
        base: the base recipe, `TrainConfig` fields (its stage follows ``recipe``).
        trial: every trial's defaults, `TrainConfig` fields of stage ``"dynamic"``.
        objectives: metric → ``"max"`` / ``"min"``, in order; two make a multi-objective study.
        reference: the hypervolume reference point (one value per objective), optional.
        max_failures: retries per trial (Tune ``FailureConfig``).
        nightly: tolerances of `orchestrator nightly` (grid-only studies).
    """

    source: Path | None = Field(None, exclude=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    storage: Path
    tracking: Tracking = Tracking()
    ray: RayCfg = RayCfg()
    data: DataConfig
    recipe: Recipe = "seed"
    base: dict[str, Any]
    trial: dict[str, Any] = {}
    search: Search = Search()
    objectives: dict[Metric, Literal["max", "min"]] = Field(min_length=1, max_length=2)
    reference: dict[Metric, float] | None = None
    scheduler: Scheduler | None = None
    resources: Resources = Resources()
    max_concurrent: int = Field(1, ge=1)
    max_failures: int = Field(0, ge=0)
    nightly: Nightly | None = None

    @field_validator("storage")
    @classmethod
    def _absolute_storage(cls, v: Path, info: ValidationInfo) -> Path:
        return _absolute(v, _folder_of(info.data.get("source")))

    @field_validator("data")
    @classmethod
    def _absolute_data(cls, v: DataConfig, info: ValidationInfo) -> DataConfig:
        return DataConfig.model_validate(_resolve_data(v.model_dump(), _folder_of(info.data.get("source"))))

    # -- derived values ------------------------------------------------------------------------

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``tracking.uri``, else
        ``sqlite:////abs/storage/mlflow.db`` (so a deployment moves a study by its environment alone)."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking.uri or \
            f"sqlite:///{Path(self.storage).absolute() / 'mlflow.db'}"

    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def objective_senses(self) -> tuple[list[str], list[str]]:
        """(metrics, modes) in the file's order, e.g. ``(["video_top1", "gflops_avg"], ["max", "min"])``."""
        return list(self.objectives), list(self.objectives.values())

    def grid_cells(self) -> list[dict[str, Any]]:
        """Every combination of the grid axes (YAML order, last axis fastest); ``[{}]`` without a grid."""
        keys = list(self.search.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.search.grid.values())]

    def base_keys(self) -> set[str]:
        """The axis keys of this study that change the base model (``model``, ``width``, ``num_classes``,
        ``data.*``, and with the seed's recipe ``dims`` and ``dynamic.*``): grid cells that differ in them need
        base models of their own."""
        return {k for k in (*self.search.grid, *self.search.sample) if _is_base_key(k, self.recipe)}

    # -- run configs -----------------------------------------------------------------------------

    def base_config(self, output_dir: Path, base_overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The base recipe as a `TrainConfig`: stage ``"base"``, or with the seed's recipe stage ``"dynamic"``
        from scratch with the trials' dynamic layers.

        Args:
            output_dir: the base run's folder.
            base_overrides: a grid cell's values for base keys (`base_keys`), e.g. ``{"data.num_frames": 16}``.

        Raises:
            ValueError: for an override key that does not change the base model.
            pydantic.ValidationError: when the result is not a valid `TrainConfig` (`load_study` has
                already checked every base a study can ask for).
        """
        recipe = copy.deepcopy(self.base)
        stage = "base"
        if self.recipe == "seed":
            stage = "dynamic"
            recipe.setdefault("lambda_e", 0.0)
            recipe.update({k: copy.deepcopy(self.trial[k]) for k in _SEED_BASE_FROM_TRIAL if k in self.trial})
        data = self.data.model_dump()
        for key, value in (base_overrides or {}).items():
            if not _is_base_key(key, self.recipe):
                raise ValueError(f"base override {key!r} does not change the base model (base keys: "
                                 f"{', '.join(_BASE_KEYS)}, data.*)")  # fmt: skip
            data = _apply_axis(recipe, data, key, value)
        recipe.update(stage=stage, data=_resolve_data(data, self._folder()), output_dir=Path(output_dir))
        return TrainConfig.model_validate(recipe)

    def trial_config(self, params: dict[str, Any], output_dir: Path, base_checkpoint: Path | None) -> TrainConfig:
        """One dynamic trial as a `TrainConfig` of stage ``"dynamic"``.

        Layers, later ones winning: the base's ``model``/``width``/``num_classes``/``seed``, the
        ``trial`` defaults, then ``params`` (a grid cell and sampled values, dotted keys; ``dims``
        sets ``dynamic.temporal``/``dynamic.channel``); ``data`` is the study's with ``data.*`` params.

        Example:
            >>> cfg = study.trial_config({"dims": "temporal", "lambda_e": 1.5}, Path("runs/t0"), None)  # doctest: +SKIP
            >>> cfg.dynamic.temporal, cfg.dynamic.channel, cfg.lambda_e                               # doctest: +SKIP
            (True, False, 1.5)
        """
        recipe = {k: copy.deepcopy(self.base[k]) for k in _FROM_BASE if k in self.base}
        for key, value in copy.deepcopy(self.trial).items():
            recipe[key] = value
        data = self.data.model_dump()
        for key, value in params.items():
            data = _apply_axis(recipe, data, key, value)
        recipe.update(stage="dynamic", data=_resolve_data(data, self._folder()), output_dir=Path(output_dir),
                      base_checkpoint=base_checkpoint)  # fmt: skip
        return TrainConfig.model_validate(recipe)

    def _folder(self) -> Path:
        return _folder_of(self.source)


def _folder_of(source: Path | None) -> Path:
    return Path(source).absolute().parent if source is not None else Path.cwd()


# ---------------------------------------------------------------------------------------------------
# Validation: every problem of a file, each with its YAML path (and line)
# ---------------------------------------------------------------------------------------------------

Loc = tuple[Any, ...]
Problem = tuple[Loc, str]  # (YAML path, message)
_INVALID = object()  # a section that did not validate on its own


def _unwrap(tp: Any) -> Any:
    """The type to descend into: ``Annotated`` stripped, ``X | None`` → ``X`` (preferring containers)."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        members = [_unwrap(a) for a in get_args(tp) if a is not type(None)]
        for m in members:
            if _field_names(m) is not None or get_origin(m) in (dict, list, tuple):
                return m
        return members[0] if members else tp
    return tp


def _field_names(tp: Any) -> list[str] | None:
    """Field names of a pydantic model or dataclass type, else ``None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp)]
    return None


def _step(tp: Any, part: Any) -> Any:
    """The type of ``tp[part]`` (a field, a dict value, a list item), ``None`` when there is none."""
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part)
        return field.annotation if field is not None else None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return get_type_hints(tp).get(part)
    origin = get_origin(tp)
    if origin is dict:
        return get_args(tp)[1]
    if origin in (list, tuple):
        args = get_args(tp)
        return args[0] if args else Any
    return None


def _type_at(root: Any, loc: Loc) -> Any:
    tp = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    return _unwrap(tp)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: dict[str, Any], root: Any, loc: Loc, exclude: tuple[str, ...] = ()) -> str:
    """A pydantic error as a sentence that names the rule, the value and the allowed keys."""
    kind, msg = err["type"], err["msg"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        names = _field_names(_type_at(root, loc[:-1]))
        allowed = [n for n in names or () if n not in exclude]
        return f"unknown key {loc[-1]!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "too_short" and err.get("input") == []:
        return "empty list: give at least one value"
    if kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return "required field is missing"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, "):]
    value = err.get("input")
    if isinstance(value, (dict, list)) and kind not in ("too_short", "too_long"):
        return msg
    return f"{msg} (got {_short(value)})"


def _pydantic_problems(err: ValidationError, root: Any, exclude: tuple[str, ...] = ()) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if loc[-1:] == ("[key]",) and loc[:1] in (("objectives",), ("reference",)):  # a dict key: a metric name
            loc = loc[:-1]
            msg = f"unknown metric {loc[-1]!r}; known: {', '.join(METRICS)}"
        else:
            loc = tuple(part for part in loc if part != "[key]")
            msg = _message(e, root, loc, exclude)
        out.append((loc, msg))
    return out


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp)


def _validated(model: type[BaseModel], raw: dict[str, Any], name: str) -> Any:
    """``raw[name]`` validated as the field ``name`` of ``model`` (its default when absent); ``_INVALID`` on errors."""
    field = model.model_fields[name]
    if name not in raw:
        return _INVALID if field.is_required() else field.get_default(call_default_factory=True)
    try:
        return _adapter(field.annotation).validate_python(raw[name])
    except ValidationError:
        return _INVALID


def _section(raw: dict[str, Any], name: str) -> Any:
    """A top-level section validated on its own; ``search`` leniently, keeping the parts that are valid."""
    if name == "data":
        return _lenient_data(raw.get("data", _INVALID))
    if name != "search":
        return _validated(Study, raw, name)
    search = raw.get("search", {})
    if not isinstance(search, dict):
        return _INVALID
    grid = search.get("grid") if isinstance(search.get("grid"), dict) else {}
    sample = search.get("sample") if isinstance(search.get("sample"), dict) else {}
    parts = {field: _validated(Search, search, field) for field in ("sampler", "num_samples", "seed")}
    return Search.model_construct(
        grid={k: v for k, v in grid.items() if isinstance(k, str) and isinstance(v, list) and v},
        sample={k: d for k, v in sample.items() if isinstance(k, str) and (d := _distribution(v)) is not _INVALID},
        **{k: (None if v is _INVALID else v) for k, v in parts.items()},
    )  # fmt: skip


def _lenient_data(data: Any) -> Any:
    """``data`` as a `DataConfig`, leaving out top-level keys with errors if the rest is still valid."""
    if not isinstance(data, dict):
        return _INVALID
    try:
        return DataConfig.model_validate(data)
    except ValidationError as e:
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
    try:
        return DataConfig.model_validate({k: v for k, v in data.items() if k not in bad})
    except ValidationError:
        return _INVALID


def _distribution(value: Any) -> Any:
    try:
        return Distribution.model_validate(value)
    except ValidationError:
        return _INVALID


def _axis_problem(key: str) -> str | None:
    """Why ``key`` is not a search axis (``dims`` or a dotted `TrainConfig` path), or ``None``."""
    if key == "dims":
        return None
    parts = key.split(".")
    if parts[0] in _AXIS_FORBIDDEN:
        return f"{parts[0]!r} is set by the orchestrator and cannot be searched"
    tp: Any = TrainConfig
    for i, part in enumerate(parts):
        names = _field_names(_unwrap(tp))
        where = ".".join(parts[:i]) or "TrainConfig"
        if names is None:
            return f"{key!r} is not a TrainConfig field path: {where!r} is a value, not a group of fields"
        if part not in names:
            fields = ", ".join(names)
            return f"{key!r} is not a TrainConfig field path: {where} has no field {part!r} (fields: {fields})"
        tp = _step(tp, part)
    return None


def _cross_checks(raw: dict[str, Any]) -> list[Problem]:
    """The rules that span fields (the per-field ones are pydantic's), on the sections that are valid."""
    problems: list[Problem] = []
    if "source" in raw:
        problems.append((("source",), "unknown key 'source' (a study's source is its file)"))
    for section, forbidden in (("base", _BASE_FORBIDDEN), ("trial", _TRIAL_FORBIDDEN)):
        recipe = _section(raw, section)
        for key in recipe if recipe is not _INVALID else ():
            if key in forbidden:
                why = forbidden[key] or _WHY_SET_BY_STUDY[key]
                problems.append(((section, key), f"{key!r} does not belong in '{section}': {why}"))
    search = _section(raw, "search")
    if search is not _INVALID:
        problems += _search_checks(search, _recipe_of(raw))
    problems += _objective_checks(raw)
    if isinstance(raw.get("nightly"), dict) and search is not _INVALID and search.sample:
        problems.append((("nightly",), "a nightly compares the same configurations run after run: use "
                         f"search.grid axes only (sampled axes found: {', '.join(search.sample)})"))  # fmt: skip
    return problems


def _recipe_of(raw: dict[str, Any]) -> str:
    """The study's recipe as written, the default when absent or invalid (pydantic reports a bad value)."""
    recipe = raw.get("recipe", "seed")
    return recipe if recipe in get_args(Recipe) else "seed"


def _search_checks(search: Search, recipe: str = "seed") -> list[Problem]:
    problems: list[Problem] = []
    axes = {**search.grid, **search.sample}

    def add(key: str, message: str, *more: Any) -> None:
        problems.append((("search", "grid" if key in search.grid else "sample", key, *more), message))

    for key in axes:
        why = _axis_problem(key)
        if why:
            add(key, why)
        if _is_base_key(key, recipe) and key in search.sample:
            add(key, f"{key!r} changes the base model, which is trained before the trials of a grid cell: "
                     "make it a search.grid axis")  # fmt: skip
        for other in axes:
            if other.startswith(key + "."):
                add(other, f"{other!r} overlaps axis {key!r}, which sets all of it")
    for key, dist in search.sample.items():
        field = _type_at(TrainConfig, tuple(key.split("."))) if _axis_problem(key) is None else None
        if dist.kind in ("uniform", "loguniform") and field is int:
            add(key, f"{key!r} is an integer field: sample it with int or choice, not {dist.kind}")
    for key in [k for k in search.grid if k in search.sample]:
        problems.append((("search", "sample", key), f"{key!r} is both a grid axis and a sampled axis; keep one"))
    for i, value in enumerate(search.grid.get("dims", [])):
        if value not in DIMS:
            add("dims", f"dims value {value!r} is not one of {', '.join(DIMS)}", i)
    if "dims" in search.sample:
        dist = search.sample["dims"]
        if dist.kind != "choice" or any(v not in DIMS for v in dist.args):
            problems.append((("search", "sample", "dims"), f"a sampled dims axis is a choice among {', '.join(DIMS)}"))
    for key in ("dynamic", "dynamic.temporal", "dynamic.channel"):
        if "dims" in axes and key in axes:
            add(key, f"{key!r} conflicts with the dims axis, which sets dynamic.temporal and dynamic.channel")
    synthetic = [k for k in search.grid if k.startswith("data.synthetic.") and k != "data.synthetic.root"]
    if synthetic and not {"data.synthetic", "data.synthetic.root"} & set(search.grid):
        add(synthetic[0], "a synthetic data set lives in a folder of its own: vary data.synthetic.root with it "
                          "(or vary data.synthetic whole)")  # fmt: skip
    if search.sampler == "grid" and search.sample:
        problems.append((("search", "sampler"), "sampler 'grid' runs the grid axes only and takes no search.sample "
                         f"axes (found: {', '.join(search.sample)}); use tpe, nsga2 or random"))  # fmt: skip
    if search.sampler == "grid" and search.num_samples not in (None, 1):
        problems.append((("search", "num_samples"), "sampler 'grid' runs each grid cell once: num_samples must be 1, "
                         f"got {search.num_samples}"))  # fmt: skip
    elif search.num_samples not in (None, 1) and not search.sample:
        problems.append((("search", "num_samples"), f"num_samples is {search.num_samples}, but with no search.sample "
                         "axes each grid cell runs once: set it to 1 or add sampled axes"))  # fmt: skip
    return problems


def _objective_checks(raw: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    objectives, reference, scheduler = (_section(raw, k) for k in ("objectives", "reference", "scheduler"))
    many = isinstance(raw.get("objectives"), dict) and len(raw["objectives"]) > 1  # even if a name is wrong
    if many and isinstance(scheduler, Scheduler) and scheduler.asha is not None:
        problems.append((("scheduler", "asha"), "ASHA needs a single objective: with two, Optuna records the "
                         "trials ASHA stopped as complete and they pollute the front; drop the scheduler or an "
                         "objective"))  # fmt: skip
    if objectives is not _INVALID and isinstance(reference, dict):
        missing = [m for m in objectives if m not in reference]
        if missing:
            problems.append((("reference",), "the reference point needs a value for every objective; missing: "
                             f"{', '.join(missing)}"))  # fmt: skip
        for m in reference:
            if m not in objectives:
                problems.append((("reference", m), f"{m!r} is not an objective (objectives: {', '.join(objectives)})"))
    return problems


class _Builder:
    """Builds the study's base and trial configs and says which YAML path each failure comes from.

    Each axis value is tried against a reference point (per axis, its first value that builds), so a
    failure is put on the one value that causes it; problems of the reference point itself go to the
    axis or recipe field that caused them. If all of that builds: every grid cell with every sampled
    axis at its ends, base models included.
    """

    def __init__(self, study: Study, axes: dict[str, list[tuple[Any, Loc]]]) -> None:
        self.study = study
        self.axes = axes  # key -> [(value, YAML path of the value)], grid axes first, then sampled ones
        self.models = set(list_models())

    def errors(self, stage: str, params: dict[str, Any]) -> list[tuple[Loc, str]]:
        """(TrainConfig loc, message) of every problem of one config."""
        try:
            if stage == "base":
                cfg = self.study.base_config(Path("/validate/base"), params)
            else:
                cfg = self.study.trial_config(params, Path("/validate/trial"), None)
        except ValidationError as e:
            return [(tuple(err["loc"]), _message(err, TrainConfig, tuple(err["loc"]), self._excluded(stage, err)))
                    for err in e.errors()]  # fmt: skip
        except ValueError as e:
            return [((), str(e))]
        if cfg.model not in self.models:
            return [(("model",), f"unknown backbone {cfg.model!r}; known: {', '.join(sorted(self.models))}")]
        return []

    def _excluded(self, stage: str, err: dict[str, Any]) -> tuple[str, ...]:
        if len(err["loc"]) != 1:
            return ()
        return tuple(_BASE_FORBIDDEN) if stage == "base" else tuple(_TRIAL_FORBIDDEN)

    def _fallback(self, stage: str, loc: Loc, msg: str) -> Loc:
        """The recipe path of a config problem no axis caused."""
        if not loc and "device" in msg:
            loc = ("device",)
        if loc[:1] == ("data",):
            return loc
        head = loc[0] if loc else None
        inherited = head in _BASE_KEYS or (head == "seed" and "seed" not in self.study.trial)
        if stage == "base" or inherited:
            return ("base", *loc)
        return ("trial", *loc)

    @staticmethod
    def _config_paths(key: str) -> list[Loc]:
        if key == "dims":
            return [("dynamic", "temporal"), ("dynamic", "channel")]
        return [tuple(key.split("."))]

    def _blame(self, stage: str, error: tuple[Loc, str], params: dict[str, Any], paths: dict[str, Loc]) -> Loc:
        loc, msg = error
        best: tuple[int, Loc] | None = None
        for key in params:  # an axis that set the failing field or one of its parents
            for kp in self._config_paths(key):
                if loc[: len(kp)] == kp and (best is None or len(kp) > best[0]):
                    best = (len(kp), paths[key])
        if best is not None:
            return best[1]
        under = [k for k in params if any(kp[: len(loc)] == loc for kp in self._config_paths(k))]
        for key in under:  # axes that set parts of the failing object: the one without which it builds
            if error not in self.errors(stage, {k: v for k, v in params.items() if k != key}):
                return paths[key]
        return self._fallback(stage, loc, msg)

    def problems(self) -> list[Problem]:
        out: list[Problem] = []
        for stage in ("base", "dynamic"):
            keys = [k for k in self.axes if stage == "dynamic" or _is_base_key(k, self.study.recipe)]
            # the reference point: per axis (in order) its first value that adds no error, so that one bad
            # value does not hide the problems of the others
            ref: dict[str, Any] = {}
            chosen: dict[str, int] = {}
            known = self.errors(stage, ref)
            for key in keys:
                for i, (value, _) in enumerate(self.axes[key]):
                    found = self.errors(stage, {**ref, key: value})
                    if all(e in known for e in found):
                        ref[key], chosen[key], known = value, i, found
                        break
            paths = {k: self.axes[k][i][1] for k, i in chosen.items()}
            out += [(self._blame(stage, e, ref, paths), e[1]) for e in known]
            for key in keys:
                for i, (value, path) in enumerate(self.axes[key]):
                    if chosen.get(key) != i:
                        out += [(path, e[1]) for e in self.errors(stage, {**ref, key: value}) if e not in known]
        if out:
            return out
        return self._combinations()

    def _combinations(self) -> list[Problem]:
        values = {k: [v for v, _ in pairs] for k, pairs in self.axes.items()}
        grid = {k: v for k, v in values.items() if k in self.study.search.grid}
        sample = {k: v for k, v in values.items() if k not in grid}
        cells = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
        ends = [dict(zip(sample, combo)) for combo in itertools.product(*sample.values())]
        out: list[Problem] = []
        bases: set[str] = set()
        for cell in cells:
            base = {k: v for k, v in cell.items() if _is_base_key(k, self.study.recipe)}
            if repr(base) not in bases:
                bases.add(repr(base))
                out += [(("search", "grid"), f"grid cell {cell}: {msg}") for _, msg in self.errors("base", base)]
            for end in ends:
                where = f"grid cell {cell}" + (f" with {end}" if end else "")
                out += [(("search", "grid"), f"{where}: {msg}") for _, msg in self.errors("dynamic", {**cell, **end})]
        return out


def _build_checks(raw: dict[str, Any], source: Path) -> list[Problem]:
    """Build every base and trial config the study can ask for; problems with the YAML path that causes each."""
    base, trial, search, data = (_section(raw, k) for k in ("base", "trial", "search", "data"))
    if any(part is _INVALID for part in (base, trial, search, data)):
        return []  # the section's own errors are reported already
    base = {k: v for k, v in base.items() if k not in _BASE_FORBIDDEN}
    trial = {k: v for k, v in trial.items() if k not in _TRIAL_FORBIDDEN}
    data = DataConfig.model_validate(_resolve_data(data.model_dump(), _folder_of(source)))
    axes: dict[str, list[tuple[Any, Loc]]] = {}
    for key, values in search.grid.items():
        if _axis_problem(key) is None and key not in search.sample:
            ok = [(v, ("search", "grid", key, i)) for i, v in enumerate(values) if key != "dims" or v in DIMS]
            if ok:
                axes[key] = ok
    for key, dist in search.sample.items():
        if _axis_problem(key) is None and key not in search.grid and not _is_base_key(key, _recipe_of(raw)):
            if key == "dims" and any(v not in DIMS for v in dist.args):
                continue
            axes[key] = [(v, ("search", "sample", key, dist.kind, i)) for i, v in enumerate(dist.extremes())]
    study = Study.model_construct(source=source, data=data, base=base, trial=trial, search=search,
                                  recipe=_recipe_of(raw))
    return _Builder(study, axes).problems()


def _format(file: str, root: Any, problems: list[Problem]) -> list[str]:
    seen: set[Problem] = set()
    rows = []
    for loc, msg in problems:
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        line = line_of(root, loc)
        rows.append((line if line is not None else 0, f"{file}{f':{line}' if line else ''}: {format_path(loc)}: {msg}"))
    return [text for _, text in sorted(rows, key=lambda r: r[0])]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["trial.epochs=3", "search.grid.dims=[both]"]`` → ``{"trial.epochs": 3, ...}``; values are YAML.

    Raises:
        StudyError: for an item without ``=`` or with a value that is not YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise StudyError([f"--set {item!r}: write KEY=VALUE with a dotted study path, e.g. trial.epochs=3"])
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise StudyError([f"--set {key.strip()}: the value {text!r} is not YAML: {e}"]) from None
    return out


def _override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted study path in the raw YAML tree; below ``search.grid`` / ``search.sample`` the rest of
    the path is one axis name (axis names hold dots: ``search.grid.optim.lr``)."""
    parts = key.split(".")
    if parts[0] == "search" and len(parts) > 3 and parts[1] in ("grid", "sample"):
        parts = [*parts[:2], ".".join(parts[2:])]
    set_dotted(raw, parts, value)


def _check_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> tuple[Study | None, list[str]]:
    file, p = str(path), Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [f"{file}: no such study file"]
    except (OSError, UnicodeDecodeError) as e:
        return None, [f"{file}: cannot read the study file: {e}"]
    try:
        raw = yaml.safe_load(text)
        root = compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        return None, [f"{file}{where}: (yaml syntax): {what or e}"]
    except yaml.YAMLError as e:
        return None, [f"{file}: (yaml syntax): {e}"]
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        return None, [f"{file}:1: (top level): a study is a mapping of fields (name, storage, data, base, trial, "
                      f"search, objectives, ...), got {got}"]  # fmt: skip
    for key, value in (overrides or {}).items():
        _override(raw, key, value)
    source = p.absolute()
    problems: list[Problem] = [(loc, f"key {loc[-1]!r} is given twice (YAML keeps the last one silently)")
                               for loc, _ in duplicate_keys(root)]  # fmt: skip
    study = None
    try:
        study = Study.model_validate({**{k: v for k, v in raw.items() if k != "source"}, "source": source})
    except ValidationError as e:
        problems += _pydantic_problems(e, Study, exclude=("source",))
    problems += _cross_checks(raw)
    problems += _build_checks(raw, source)
    if overrides:  # lines of the file are not where an overridden value came from
        problems = [(loc, f"{msg} (set by --set {key})") if (key := _overridden(loc, overrides)) else (loc, msg)
                    for loc, msg in problems]  # fmt: skip
    return (None if problems else study), _format(file, root, problems)


def _overridden(loc: Loc, overrides: Mapping[str, Any]) -> str | None:
    path = ".".join(str(p) for p in loc)
    return next((k for k in overrides if path == k or path.startswith(k + ".") or k.startswith(path + ".")), None)


def load_study(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Study:
    """Parse and completely validate a study file, after applying ``overrides`` (dotted path → value,
    as `parse_overrides` makes them from ``--set KEY=VALUE``).

    Raises:
        StudyError: listing every problem of the file, one ``FILE:LINE: yaml.path: message`` a line.
    """
    study, problems = _check_file(path, overrides)
    if problems or study is None:
        raise StudyError(problems or [f"{path}: not a valid study"])
    return study


def validate_study(path: str | Path, overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem of a study file, one ``FILE:LINE: yaml.path: message`` each (empty: valid). Never raises
    for a bad study."""
    return _check_file(path, overrides)[1]
