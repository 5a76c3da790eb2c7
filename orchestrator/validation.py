"""Loading a study file: every problem of it, each with its YAML line, before anything runs.

`load_study` parses a YAML file (after any ``--set`` overrides, `parse_overrides`) into the study model of
`orchestrator.schema` and checks it completely: each section on its own, then the cross-field rules
(objectives and reference, search axes, the recipe), then a build of every base and trial `TrainConfig`
the study can ask for (each grid cell, with every sampled axis at its ends). Each problem is reported
as ``FILE:LINE: yaml.path: message``; `validate_study` returns the list instead of raising.

Example:
    >>> validate_study("studies/broken.yaml")                # doctest: +SKIP
    ['studies/broken.yaml:12: search.grid.dynamic.search_space[1]: DynamicSpec.search_space must be ...']

Why one file of ~570 lines: the section checks, the cross-field rules, the rewording of pydantic's errors
and the search for the YAML line to blame all work on one shared representation (YAML paths and their
lines); split apart, each part would reach into the others' private helpers.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from vared_core.dynamic import DynamicSpec
from vared_core.dynamic.spec import MOVED_FIELDS
from vared_core.engine.config import DataConfig, TrainConfig
from vared_core.engine.dotted import set_dotted
from vared_core.engine.evaluate import METRICS
from vared_core.models import list_models

from .schema import BASE_KEYS, DIMS, Distribution, Recipe, Scheduler, Search, Study, folder_of, is_base_key, resolve_data
from .yaml_lines import compose, duplicate_keys, format_path, line_of

__all__ = ["StudyError", "load_study", "parse_overrides", "validate_study"]


class StudyError(ValueError):
    """A study file that cannot run; the message has one line per problem, ``FILE:LINE: path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems



# why the recipes' types leave out a `TrainConfig` field (`BASE_OWNED`, `TRIAL_OWNED`): said when one is given
_WHY_SET_BY_STUDY = {
    "data": "give it once under the top-level 'data' (vary it with data.* search axes)",
    "output_dir": "runs are stored under the study's 'storage'",
    "stage": "the orchestrator sets it ('base' for the base recipe, 'dynamic' for trials)",
    "resume_from": "use `orchestrator run --resume` to continue a study",
    "base_checkpoint": "the orchestrator passes each trial the checkpoint of its base model",
}
_WHY_OWNED = {
    "base": {**_WHY_SET_BY_STUDY, "dynamic": "it belongs to the dynamic fine-tune: put it under 'trial'",
             "base_checkpoint": "it belongs to the dynamic fine-tune, and the orchestrator sets it"},
    "trial": {**_WHY_SET_BY_STUDY, **{k: "it comes from 'base' (a trial fine-tunes the base model); vary it with a "
                                         "search.grid axis" for k in BASE_KEYS}},
}  # fmt: skip
_AXIS_FORBIDDEN = ("stage", "output_dir", "base_checkpoint", "resume_from")

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
        if root is Study and len(loc) == 2 and loc[1] in _WHY_OWNED.get(loc[0], {}):
            return f"{loc[1]!r} does not belong in '{loc[0]}': {_WHY_OWNED[loc[0]][loc[1]]}"
        parent = _type_at(root, loc[:-1])
        if _unwrap(parent) is DynamicSpec and loc[-1] in MOVED_FIELDS:
            return f"{loc[-1]!r} is now {MOVED_FIELDS[loc[-1]]!r} (the dynamic spec's fields are grouped)"
        names = _field_names(parent)
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
    """A top-level section validated on its own; ``data`` and ``search`` leniently, keeping the parts that
    are valid."""
    if name == "data":
        return _lenient(raw, name)[0]
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


def _lenient(raw: dict[str, Any], name: str) -> tuple[Any, set[str]]:
    """``raw[name]`` as the type of the study's field ``name`` (``data``, ``base``, ``trial``), leaving out the
    top-level keys with errors if the rest is still valid: (the section or ``_INVALID``, the keys left out).
    An absent section is the field's default."""
    field = Study.model_fields[name]
    model = field.annotation
    value = raw.get(name, _INVALID)
    if value is _INVALID and not field.is_required():
        return field.get_default(call_default_factory=True), set()
    if not isinstance(value, dict):
        return _INVALID, set()
    try:
        return model.model_validate(value), set()
    except ValidationError as e:
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
    try:
        return model.model_validate({k: v for k, v in value.items() if k not in bad}), bad
    except ValidationError:
        return _INVALID, bad


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
            if _unwrap(tp) is DynamicSpec and part in MOVED_FIELDS:
                return f"{key!r} is now '{where}.{MOVED_FIELDS[part]}' (the dynamic spec's fields are grouped)"
            fields = ", ".join(names)
            return f"{key!r} is not a TrainConfig field path: {where} has no field {part!r} (fields: {fields})"
        tp = _step(tp, part)
    return None


def _cross_checks(raw: dict[str, Any]) -> list[Problem]:
    """The rules that span fields (the per-field ones are pydantic's), on the sections that are valid."""
    problems: list[Problem] = []
    if "source" in raw:
        problems.append((("source",), "unknown key 'source' (a study's source is its file)"))
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
        if is_base_key(key, recipe) and key in search.sample:
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
            return [(tuple(err["loc"]), _message(err, TrainConfig, tuple(err["loc"]))) for err in e.errors()]
        except ValueError as e:
            return [((), str(e))]
        if cfg.model not in self.models:
            return [(("model",), f"unknown backbone {cfg.model!r}; known: {', '.join(sorted(self.models))}")]
        return []

    def _fallback(self, stage: str, loc: Loc, msg: str) -> Loc:
        """The recipe path of a config problem no axis caused."""
        if not loc and "device" in msg:
            loc = ("device",)
        if loc[:1] == ("data",):
            return loc
        head = loc[0] if loc else None
        inherited = head in BASE_KEYS or (head == "seed" and "seed" not in self.study.trial.model_fields_set)
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
            keys = [k for k in self.axes if stage == "dynamic" or is_base_key(k, self.study.recipe)]
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
            base = {k: v for k, v in cell.items() if is_base_key(k, self.study.recipe)}
            if repr(base) not in bases:
                bases.add(repr(base))
                out += [(("search", "grid"), f"grid cell {cell}: {msg}") for _, msg in self.errors("base", base)]
            for end in ends:
                where = f"grid cell {cell}" + (f" with {end}" if end else "")
                out += [(("search", "grid"), f"{where}: {msg}") for _, msg in self.errors("dynamic", {**cell, **end})]
        return out


def _build_checks(raw: dict[str, Any], source: Path) -> list[Problem]:
    """Build every base and trial config the study can ask for; problems with the YAML path that causes each."""
    (base, bad_base), (trial, bad_trial) = _lenient(raw, "base"), _lenient(raw, "trial")
    search, data = _section(raw, "search"), _section(raw, "data")
    if any(part is _INVALID for part in (base, trial, search, data)):
        return []  # the section's own errors are reported already
    data = DataConfig.model_validate(resolve_data(data.model_dump(), folder_of(source)))
    axes: dict[str, list[tuple[Any, Loc]]] = {}
    for key, values in search.grid.items():
        if _axis_problem(key) is None and key not in search.sample:
            ok = [(v, ("search", "grid", key, i)) for i, v in enumerate(values) if key != "dims" or v in DIMS]
            if ok:
                axes[key] = ok
    for key, dist in search.sample.items():
        if _axis_problem(key) is None and key not in search.grid and not is_base_key(key, _recipe_of(raw)):
            if key == "dims" and any(v not in DIMS for v in dist.args):
                continue
            axes[key] = [(v, ("search", "sample", key, dist.kind, i)) for i, v in enumerate(dist.extremes())]
    study = Study.model_construct(source=source, data=data, base=base, trial=trial, search=search,
                                  recipe=_recipe_of(raw))
    reported = {("base", k) for k in bad_base} | {("trial", k) for k in bad_trial}  # by the section's own check
    return [(loc, msg) for loc, msg in _Builder(study, axes).problems() if tuple(loc[:2]) not in reported]


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
