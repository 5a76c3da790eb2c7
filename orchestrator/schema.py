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

This module is the study model; `orchestrator.validation` loads a file into it (`load_study`), finding
every problem with its YAML line before anything runs. Ray, Optuna and MLflow are not imported here:
validating a study starts nothing.

Example:
    >>> from orchestrator.validation import load_study
    >>> study = load_study("studies/smoke.yaml")            # doctest: +SKIP
    >>> [cell["dims"] for cell in study.grid_cells()]         # doctest: +SKIP
    ['temporal', 'both']

Why one file of ~450 lines: the study is one pydantic tree, and its sections (tracking, resources,
scheduler, nightly tolerances, search distributions) are small classes that only mean something inside it.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_serializer, model_validator

from vared_core.engine.config import DataConfig, TrainConfig
from vared_core.engine.dotted import set_dotted
from vared_core.engine.evaluate import METRICS, Metric

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
    "Tolerance",
    "Tracking",
    "BASE_KEYS",
    "BASE_OWNED",
    "BaseRecipe",
    "Recipe",
    "TRIAL_OWNED",
    "TrialRecipe",
    "folder_of",
    "is_base_key",
    "resolve_data",
]


DIMS: dict[str, tuple[bool, bool]] = {
    "none": (False, False),  # the static network, fine-tuned like the dynamic ones
    "temporal": (True, False),
    "channel": (False, True),
    "both": (True, True),
}
"""The ``dims`` axis: value → (``dynamic.temporal``, ``dynamic.channel``)."""

BASE_KEYS = ("model", "width", "num_classes")
"""Axis keys (besides ``data.*``) that change the base model."""
_FROM_BASE = ("model", "width", "num_classes", "seed")  # base fields a trial inherits
_DATA_PATHS = (("synthetic", "root"), ("train_list",), ("val_list",), ("root",))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tracking(_Strict):
    """MLflow: ``uri`` ``None`` = ``sqlite:///<storage>/mlflow.db``; ``experiment`` ``None`` = the study name.
    The ``MLFLOW_TRACKING_URI`` environment variable overrides ``uri``.

    ``register_models``: log every front trial's final model (PyTorch flavour) and register it under
    ``model_name`` (``None`` = the study name) with the aliases ``front-0`` (the cheapest) … ``front-k``
    (the most accurate); see `orchestrator.models`. ``system_metrics``: MLflow's system metrics (CPU, memory,
    GPU, one sample every ``system_metrics_interval`` seconds) on every trial and base run.

    ``outage_s``: how long a tracking server may be unreachable before an MLflow call of a trial or of the
    driver fails (naming the server). Each call is retried by MLflow's own HTTP client with exponential
    backoff (waits of 0, 2, 4 … s, each at most 120 s, at most 10 retries: so at most 480); the training
    process waits in that call meanwhile, so no metric is lost or buffered. Ignored by a SQLite or file store.
    """

    uri: str | None = None
    outage_s: float = Field(240.0, gt=0, le=480)
    experiment: str | None = None
    register_models: bool = True
    model_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    system_metrics: bool = False
    system_metrics_interval: float = Field(10.0, gt=0)


class RayCfg(_Strict):
    """Ray cluster: ``address`` ``None`` = a local Ray (``RAY_ADDRESS`` / ``--address`` override it)."""

    address: str | None = None


class Workers(_Strict):
    """One run's share of the cluster: ``workers`` data-parallel processes of ``cpu_per_worker`` CPUs (≥ 0.5)
    and ``gpu_per_worker`` GPUs (may be fractional, 0.25) each. One worker trains in the Tune trial (or the
    base task) itself; several train through Ray Train's `TorchTrainer`, one DDP rank per worker
    (`vared_core.engine.fit`: ``data.batch_size`` is per worker, ``optim.total_batch`` the global batch)."""

    workers: int = Field(1, ge=1)
    cpu_per_worker: float = Field(1.0, ge=0.5)
    gpu_per_worker: float = Field(0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = [k for k in ("cpu", "gpu") if k in data]
            if moved:
                raise ValueError("; ".join(f"'{k}' is now '{k}_per_worker'" for k in moved))
        return data

    @property
    def cpu(self) -> float:
        """CPUs of the whole run."""
        return self.workers * self.cpu_per_worker

    @property
    def gpu(self) -> float:
        """GPUs of the whole run."""
        return self.workers * self.gpu_per_worker


class Resources(Workers):
    """Per trial; ``base``: per shared base model (default: the trials' own), e.g. a base on 8 GPUs and
    trials on 2 each."""

    base: Workers | None = None

    def for_base(self) -> Workers:
        """What a base model trains on."""
        return self.base if self.base is not None else Workers(**self.model_dump(exclude={"base"}))


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


def resolve_data(data: dict[str, Any], folder: Path) -> dict[str, Any]:
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


class _Recipe(_Strict):
    """`TrainConfig` fields as a study file gives them: every field optional, the run's own ones left out."""

    def given(self) -> dict[str, Any]:
        """The fields the file gives (nothing filled in), as values `TrainConfig.model_validate` takes."""
        return self.model_dump(exclude_unset=True)


def _recipe_type(name: str, doc: str, left_out: tuple[str, ...]) -> type[_Recipe]:
    """A model with `TrainConfig`'s fields, types and bounds, all optional, less ``left_out``: the type itself
    refuses an unknown key and one the study sets, and a required field left out is found when the study
    builds its configs (`Study.base_config`, `Study.trial_config`)."""
    fields: dict[str, Any] = {}
    for field, info in TrainConfig.model_fields.items():
        if field not in left_out:
            bounded = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            fields[field] = (bounded | None, None)
    return create_model(name, __base__=_Recipe, __doc__=doc, __module__=__name__, **fields)


_SET_BY_STUDY = ("data", "output_dir", "stage", "resume_from")
BASE_OWNED = (*_SET_BY_STUDY, "dynamic", "base_checkpoint")
"""`TrainConfig` fields a ``base`` recipe may not give: the study sets them, or they belong to the trials."""
TRIAL_OWNED = (*_SET_BY_STUDY, "base_checkpoint", *BASE_KEYS)
"""`TrainConfig` fields a ``trial`` recipe may not give: the study sets them, or they come from ``base``."""

BaseRecipe = _recipe_type("BaseRecipe", "The ``base`` section: the base model's `TrainConfig` fields.", BASE_OWNED)
TrialRecipe = _recipe_type("TrialRecipe", "The ``trial`` section: every trial's `TrainConfig` defaults.",
                           TRIAL_OWNED)


#: how a study trains: ``seed`` — the base model is the dynamic model trained from scratch (λ_e 0 unless
#: ``base`` says otherwise) and each trial fine-tunes it with L_e (seed §4.3, Table 4.10); ``static_base`` — a
#: static base model, dynamized and fine-tuned by each trial
Recipe = Literal["seed", "static_base"]
_SEED_BASE_FROM_TRIAL = ("dynamic",)  # with the seed's recipe, the base is dynamic as the trials


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


def is_base_key(key: str, recipe: str = "static_base") -> bool:
    """Whether axis ``key`` changes the base model: under the seed's recipe the dynamic layers do too."""
    if recipe == "seed" and (key in ("dims", *_SEED_BASE_FROM_TRIAL) or key.startswith("dynamic.")):
        return True
    return key in BASE_KEYS or key == "data" or key.startswith("data.")


class Study(_Strict):
    """One study file. Build it with `orchestrator.validation.load_study`; see the module doc for the file format.

    Attributes:
        source: the YAML file it was loaded from (not part of dumps); relative paths resolve against its folder.
        name: ``[A-Za-z0-9_.-]+``; the MLflow experiment unless ``tracking.experiment`` is set.
        storage: the study folder (absolute): Ray results, base-model cache, state.
        min_free_gb: free space ``storage`` must have before a run starts (`preflight.check_storage`).
        data: the clips, shared by the base models and trials (paths absolute).
        recipe: ``"seed"`` (the default): the base model is the trials' dynamic model trained from scratch
            (stage ``"dynamic"``, the trials' ``dynamic`` (its ``layers`` too), λ_e 0 unless ``base`` sets
            it), and every trial fine-tunes that checkpoint with its own λ_e, epochs and lr (seed §4.3,
            Table 4.10: before and after the L_e fine-tune). ``"static_base"``: a static base model that
            each trial dynamizes and fine-tunes.
        base: the base recipe, `TrainConfig` fields less `BASE_OWNED` (its stage follows ``recipe``).
        trial: every trial's defaults, `TrainConfig` fields of stage ``"dynamic"`` less `TRIAL_OWNED`.
        objectives: metric → ``"max"`` / ``"min"``, in order; two make a multi-objective study.
        reference: the hypervolume reference point (one value per objective), optional.
        max_failures: retries per trial (Tune ``FailureConfig``).
        nightly: tolerances of `orchestrator nightly` (grid-only studies).
    """

    source: Path | None = Field(None, exclude=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    storage: Path
    min_free_gb: float = Field(0.5, ge=0)
    tracking: Tracking = Tracking()
    ray: RayCfg = RayCfg()
    data: DataConfig
    recipe: Recipe = "seed"
    base: BaseRecipe
    trial: TrialRecipe = TrialRecipe()
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
        return _absolute(v, folder_of(info.data.get("source")))

    @field_validator("data")
    @classmethod
    def _absolute_data(cls, v: DataConfig, info: ValidationInfo) -> DataConfig:
        return DataConfig.model_validate(resolve_data(v.model_dump(), folder_of(info.data.get("source"))))

    # -- derived values ------------------------------------------------------------------------

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``tracking.uri``, else
        ``sqlite:////abs/storage/mlflow.db`` (so a deployment moves a study by its environment alone)."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking.uri or \
            f"sqlite:///{Path(self.storage).absolute() / 'mlflow.db'}"

    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def model_name(self) -> str:
        """The registered MLflow model of the study's front (``tracking.model_name``, else the study name)."""
        return self.tracking.model_name or self.name

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
        return {k for k in (*self.search.grid, *self.search.sample) if is_base_key(k, self.recipe)}

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
        recipe = self.base.given()
        stage = "base"
        if self.recipe == "seed":
            stage = "dynamic"
            recipe.setdefault("lambda_e", 0.0)
            trial = self.trial.given()
            recipe.update({k: trial[k] for k in _SEED_BASE_FROM_TRIAL if k in trial})
        data = self.data.model_dump()
        for key, value in (base_overrides or {}).items():
            if not is_base_key(key, self.recipe):
                raise ValueError(f"base override {key!r} does not change the base model (base keys: "
                                 f"{', '.join(BASE_KEYS)}, data.*)")  # fmt: skip
            data = _apply_axis(recipe, data, key, value)
        recipe.update(stage=stage, data=resolve_data(data, self._folder()), output_dir=Path(output_dir))
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
        base = self.base.given()
        recipe = {k: base[k] for k in _FROM_BASE if k in base}
        recipe.update(self.trial.given())
        data = self.data.model_dump()
        for key, value in params.items():
            data = _apply_axis(recipe, data, key, value)
        recipe.update(stage="dynamic", data=resolve_data(data, self._folder()), output_dir=Path(output_dir),
                      base_checkpoint=base_checkpoint)  # fmt: skip
        return TrainConfig.model_validate(recipe)

    def _folder(self) -> Path:
        return folder_of(self.source)


def folder_of(source: Path | None) -> Path:
    return Path(source).absolute().parent if source is not None else Path.cwd()
