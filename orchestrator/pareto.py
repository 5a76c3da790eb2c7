"""Accuracy–GFLOPs Pareto fronts of a study: masks, hypervolume, a `Front` record, tables and plots.

Pure code on plain values: no Ray, no MLflow (the tracking module logs what these functions return),
no plotting (`front_plots` draws fronts with matplotlib and plotly).

::

    trials (trial_id, metrics, params) ─► objective matrix (N, M) ─► pareto_mask ─► Front
                                                                 └─► hypervolume (w.r.t. a reference)
    Front ─► .front / .table() / format_front / to_dict    (plots: `front_plots`)

Conventions:

- A sense is ``"max"`` (accuracy, throughput) or ``"min"`` (GFLOPs, loss), one per objective.
- ``a`` dominates ``b`` when ``a`` is at least as good in every objective and strictly better in one.
  Exact duplicates therefore never dominate each other: all copies of a non-dominated point are kept.
- A row with NaN or ±inf in any objective (or a trial missing an objective metric) is never on the
  front and never dominates another row.

Experimental since vared 0.1.0: names and the ``to_dict`` layout may still change.

Example:
    >>> trials = [
    ...     {"trial_id": "a", "metrics": {"video_top1": 70.0, "gflops_avg": 4.0}, "params": {"lr": 0.1}},
    ...     {"trial_id": "b", "metrics": {"video_top1": 60.0, "gflops_avg": 2.0}, "params": {"lr": 0.2}},
    ...     {"trial_id": "c", "metrics": {"video_top1": 55.0, "gflops_avg": 3.0}, "params": {"lr": 0.3}},
    ... ]
    >>> f = compute_front(trials, {"video_top1": "max", "gflops_avg": "min"},
    ...                   reference={"video_top1": 50.0, "gflops_avg": 5.0})
    >>> [p.trial_id for p in f.front], f.hypervolume
    (['a', 'b'], 40.0)

Why one file of ~500 lines: the dominance mask, the hypervolume and the `Front` record (with its table
and JSON round trip) are one computation on one objective matrix; the plots are in `front_plots`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike

from vared_core.engine.dotted import flatten_dotted

__all__ = [
    "Front",
    "FrontPoint",
    "Sense",
    "compute_front",
    "format_front",
    "hypervolume",
    "format_value",
    "pareto_mask",
]

Sense = Literal["max", "min"]
_SENSES: tuple[str, ...] = get_args(Sense)
_CHUNK_ELEMENTS = 4_000_000  # bound on the (chunk, N, M) comparison arrays in `_nondominated`


# --------------------------------------------------------------------------------------------------
# Validation and the "everything is maximised" view
# --------------------------------------------------------------------------------------------------


def _check_senses(senses: Sequence[str], what: str = "senses") -> tuple[Sense, ...]:
    """Return ``senses`` as a tuple after checking each is ``"max"`` or ``"min"``."""
    if isinstance(senses, str):
        raise ValueError(
            f"{what} must be a sequence with one sense per objective, e.g. ['max', 'min'], got the string {senses!r}"
        )
    out = tuple(senses)
    if not out:
        raise ValueError(f"{what} is empty: give at least one objective")
    for i, s in enumerate(out):
        if s not in _SENSES:
            raise ValueError(f"{what}[{i}] is {s!r}; each sense must be one of {list(_SENSES)}")
    return out  # type: ignore[return-value]


def _as_matrix(points: ArrayLike, senses: tuple[Sense, ...]) -> np.ndarray:
    """``points`` as a float (N, M) array, checked against ``senses``; an empty 1-D input is (0, M)."""
    try:
        arr = np.asarray(points, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"points must be a numeric (N, M) array: {e}") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, len(senses))
    if arr.ndim != 2:
        raise ValueError(f"points must be 2-D (N points, M objectives), got shape {arr.shape}")
    if arr.shape[1] != len(senses):
        raise ValueError(
            f"points have {arr.shape[1]} objective column(s) but {len(senses)} sense(s) were given; "
            "give one sense per column"
        )
    return arr


def _maximised(arr: np.ndarray, senses: tuple[Sense, ...]) -> np.ndarray:
    """Flip the sign of ``"min"`` columns so that larger is better everywhere."""
    sign = np.array([1.0 if s == "max" else -1.0 for s in senses])
    return arr * sign


def _nondominated(q: np.ndarray) -> np.ndarray:
    """(N,) bool: rows of a finite, all-maximised ``q`` that no other row dominates. O(N² M), chunked."""
    n, m = q.shape
    keep = np.ones(n, dtype=bool)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * m))
    for start in range(0, n, chunk):
        block = q[start : start + chunk, None, :]  # candidates i, compared with every row j
        ge = (q[None, :, :] >= block).all(axis=-1)  # [i, j]: j at least as good as i everywhere
        gt = (q[None, :, :] > block).any(axis=-1)  # [i, j]: j strictly better than i somewhere
        keep[start : start + chunk] = ~(ge & gt).any(axis=1)
    return keep


# --------------------------------------------------------------------------------------------------
# Masks and hypervolume
# --------------------------------------------------------------------------------------------------


def pareto_mask(points: ArrayLike, senses: Sequence[Sense]) -> np.ndarray:
    """Which points are non-dominated.

    ``a`` dominates ``b`` when ``a`` is at least as good as ``b`` in every objective and strictly better
    in at least one. Exact duplicates of a non-dominated point are all kept (neither copy is strictly
    better than the other). Rows with NaN or ±inf in any objective are never on the front and never
    dominate another row.

    Args:
        points: (N, M) objective values, one row per point, one column per objective. An empty
            input (``[]`` or shape (0, M)) gives an empty mask.
        senses: M senses, ``"max"`` or ``"min"``, one per column.

    Returns:
        (N,) bool array, True for non-dominated points.

    Raises:
        ValueError: ``points`` is not 2-D / numeric, or ``senses`` has the wrong length or an unknown sense.

    Example:
        >>> pareto_mask([[70, 4.0], [60, 2.0], [55, 3.0], [70, 4.0]], ["max", "min"]).tolist()
        [True, True, False, True]
    """
    s = _check_senses(senses)
    arr = _as_matrix(points, s)
    finite = np.isfinite(arr).all(axis=1)
    mask = np.zeros(len(arr), dtype=bool)
    mask[finite] = _nondominated(_maximised(arr[finite], s))
    return mask


def hypervolume(points: ArrayLike, senses: Sequence[Sense], reference: Sequence[float]) -> float:
    """Dominated hypervolume of ``points`` with respect to ``reference``.

    The volume of the region that at least one point dominates and that itself dominates the reference
    point, the "worst acceptable" corner: for a ``"max"`` objective a point must be above the reference,
    for ``"min"`` below it. Points not strictly better than the reference in every objective, and rows
    with NaN/inf, contribute nothing; dominated points and the order of rows change nothing.

    Exact for any M: a sort-and-sweep in 2-D, slicing along the last objective (HSO) for M ≥ 3, which
    is cheap for the few hundred trials of a study.

    Args:
        points: (N, M) objective values.
        senses: M senses, ``"max"`` or ``"min"``.
        reference: M finite reference values, in the units of the objectives.

    Returns:
        The hypervolume (product of objective units), 0.0 when no point beats the reference.

    Raises:
        ValueError: bad shapes or senses, or a reference of the wrong length or with non-finite values.

    Example:
        >>> # (top-1 %, GFLOPs), reference (50 %, 5 GFLOPs): boxes 20×1 and 10×3 overlap by 10×1
        >>> hypervolume([[70, 4.0], [60, 2.0], [55, 3.0]], ["max", "min"], [50, 5.0])
        40.0
    """
    s = _check_senses(senses)
    arr = _as_matrix(points, s)
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (len(s),):
        raise ValueError(f"reference must have one value per objective ({len(s)}), got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError(f"reference values must be finite, got {ref.tolist()}")
    q = _maximised(arr, s) - _maximised(ref[None, :], s)  # > 0 in every column means "beats the reference"
    q = q[np.isfinite(q).all(axis=1) & (q > 0).all(axis=1)]
    return float(_hv(q))


def _hv(q: np.ndarray) -> float:
    """Volume of the union of boxes [0, q_i] for rows of ``q`` (all entries > 0, larger is better)."""
    n, m = q.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(q.max())
    if m == 2:
        # sweep by decreasing x: each point adds the strip between the best y so far and its own y
        order = np.argsort(-q[:, 0], kind="stable")
        x, y = q[order, 0], np.maximum.accumulate(q[order, 1])
        return float(np.sum(x * np.diff(y, prepend=0.0)))
    q = np.unique(q, axis=0)
    q = q[_nondominated(q)]
    # slab (z_{k-1}, z_k] along the last objective is covered by the points reaching z_k
    volume, previous = 0.0, 0.0
    for z in np.unique(q[:, -1]):
        volume += (z - previous) * _hv(q[q[:, -1] >= z, :-1])
        previous = z
    return volume


# --------------------------------------------------------------------------------------------------
# Fronts of trials
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontPoint:
    """One finished trial as seen by the front.

    Args:
        trial_id: the trial's id (Tune's trial id, or any unique string).
        values: objective name -> value, for the objectives the trial reported (a missing metric is
            absent; a non-finite one is kept as NaN/inf).
        params: the trial's parameters as given (possibly nested).
        on_front: True when the trial is non-dominated among the trials of its study.
    """

    trial_id: str
    values: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    on_front: bool = False


@dataclass(frozen=True)
class Front:
    """The Pareto front of one study: every trial given, flagged, plus the hypervolume.

    Build it with `compute_front`; it round-trips through JSON with `to_dict` / `from_dict`.

    Args:
        objectives: objective metric names, in the order given (the first is the "primary" one).
        senses: one ``"max"`` / ``"min"`` per objective.
        reference: the hypervolume reference point, one value per objective, or None.
        points: every trial given, in input order, each with its ``on_front`` flag.
        hypervolume: dominated hypervolume w.r.t. ``reference``, None without a reference.

    Example:
        >>> f = compute_front([{"trial_id": "t0", "metrics": {"loss": 0.5}, "params": {}}], {"loss": "min"})
        >>> f.front[0].trial_id, Front.from_dict(f.to_dict()) == f
        ('t0', True)
    """

    objectives: tuple[str, ...]
    senses: tuple[Sense, ...]
    reference: tuple[float, ...] | None
    points: tuple[FrontPoint, ...]
    hypervolume: float | None

    @property
    def front(self) -> list[FrontPoint]:
        """Points on the front, best first in the first objective (ties: next objectives, then id)."""
        sign = [-1.0 if s == "max" else 1.0 for s in self.senses]
        return sorted(
            (p for p in self.points if p.on_front),
            key=lambda p: (*(g * p.values[o] for g, o in zip(sign, self.objectives)), p.trial_id),
        )

    def table(self) -> dict[str, list]:
        """Column-oriented table of the front, ready for ``mlflow.log_table(data=...)``.

        Columns: ``trial_id``, one per objective, then one per parameter, nested keys flattened to
        ``"a.b"`` and sorted. A parameter a front trial lacks is None; a parameter whose flattened name
        collides with ``trial_id`` or an objective is prefixed ``"params."``. Rows follow `front`.

        Returns:
            ``{column: [value per front point]}``, every list the same length.
        """
        rows = self.front
        flat = [flatten_dotted(p.params) for p in rows]
        taken = {"trial_id", *self.objectives}
        table: dict[str, list] = {"trial_id": [p.trial_id for p in rows]}
        for o in self.objectives:
            table[o] = [p.values[o] for p in rows]
        for key in sorted({k for f in flat for k in f}):
            table[f"params.{key}" if key in taken else key] = [f.get(key) for f in flat]
        return table

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``.

        Parameters are made JSON-safe too (numpy scalars -> numbers, tuples -> lists, other objects ->
        ``str``), so a tuple parameter comes back as a list from `from_dict`.
        """
        return {
            "objectives": list(self.objectives),
            "senses": list(self.senses),
            "reference": None if self.reference is None else [_enc(v) for v in self.reference],
            "hypervolume": None if self.hypervolume is None else _enc(self.hypervolume),
            "points": [
                {
                    "trial_id": p.trial_id,
                    "values": {k: _enc(v) for k, v in p.values.items()},
                    "params": _jsonable(p.params),
                    "on_front": p.on_front,
                }
                for p in self.points
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Front:
        """Rebuild a `Front` from `to_dict` output (e.g. after ``json.loads``).

        Raises:
            ValueError: a required key is missing or the senses are invalid.
        """
        missing = [k for k in ("objectives", "senses", "reference", "hypervolume", "points") if k not in data]
        if missing:
            raise ValueError(f"Front.from_dict: missing key(s) {missing}; expected the output of Front.to_dict()")
        objectives = tuple(str(o) for o in data["objectives"])
        senses = _check_senses(data["senses"], "Front.from_dict: senses")
        if len(senses) != len(objectives):
            raise ValueError(f"Front.from_dict: {len(objectives)} objectives but {len(senses)} senses")
        ref = data["reference"]
        hv = data["hypervolume"]
        return cls(
            objectives=objectives,
            senses=senses,
            reference=None if ref is None else tuple(_dec(v) for v in ref),
            points=tuple(
                FrontPoint(
                    trial_id=str(p["trial_id"]),
                    values={str(k): _dec(v) for k, v in p["values"].items()},
                    params=dict(p.get("params") or {}),
                    on_front=bool(p["on_front"]),
                )
                for p in data["points"]
            ),
            hypervolume=None if hv is None else _dec(hv),
        )


def compute_front(
    trials: Sequence[Mapping[str, Any]],
    objectives: Mapping[str, Sense],
    reference: Mapping[str, float] | None = None,
) -> Front:
    """The Pareto front of a study's finished trials.

    A trial that lacks an objective metric (absent or None) or reports a non-finite value is kept in
    ``Front.points`` with ``on_front=False``: it is shown in plots where it can be, but never enters
    the front or the hypervolume.

    Args:
        trials: one mapping per finished trial: ``{"trial_id": str, "metrics": {name: value},
            "params": {...}}`` (``params`` optional). Trial ids must be unique.
        objectives: ordered metric name -> sense, e.g. ``{"video_top1": "max", "gflops_avg": "min"}``.
        reference: metric name -> reference value for the hypervolume; must cover every objective
            (other keys are ignored). None: no hypervolume.

    Returns:
        A `Front` with every trial, in input order.

    Raises:
        ValueError: no objectives, a bad sense, a trial without ``trial_id`` / ``metrics``, a duplicate
            id, a metric that is not a number, or a reference missing an objective or non-finite.

    Example:
        >>> f = compute_front(
        ...     [{"trial_id": "a", "metrics": {"video_top1": 70.0, "gflops_avg": 4.0}},
        ...      {"trial_id": "b", "metrics": {"video_top1": 60.0}}],
        ...     {"video_top1": "max", "gflops_avg": "min"})
        >>> [(p.trial_id, p.on_front) for p in f.points]
        [('a', True), ('b', False)]
    """
    names = tuple(objectives)
    senses = _check_senses([objectives[n] for n in names], "objectives' senses")
    ref: tuple[float, ...] | None = None
    if reference is not None:
        for n in names:
            if n not in reference:
                raise ValueError(
                    f"reference has no value for objective {n!r}; it must cover every objective "
                    f"{list(names)} (it has {sorted(reference)})"
                )
        ref = tuple(float(reference[n]) for n in names)
        bad = [n for n, v in zip(names, ref) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"reference values must be finite; {bad} are not")

    seen: set[str] = set()
    ids, values, params = [], [], []
    for i, t in enumerate(trials):
        if "trial_id" not in t or "metrics" not in t:
            raise ValueError(f"trials[{i}] needs 'trial_id' and 'metrics' keys, has {sorted(t)}")
        tid = str(t["trial_id"])
        if tid in seen:
            raise ValueError(f"trial_id {tid!r} appears twice; trial ids must be unique within a study")
        seen.add(tid)
        vals: dict[str, float] = {}
        for n in names:
            v = t["metrics"].get(n)
            if v is None:
                continue
            try:
                vals[n] = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"trial {tid!r}: metric {n!r} is {v!r}, not a number") from None
        ids.append(tid)
        values.append(vals)
        params.append(dict(t.get("params") or {}))

    matrix = np.array([[v.get(n, math.nan) for n in names] for v in values], dtype=float).reshape(-1, len(names))
    mask = pareto_mask(matrix, senses)
    points = tuple(FrontPoint(i, v, p, bool(m)) for i, v, p, m in zip(ids, values, params, mask))
    hv = None if ref is None else hypervolume(matrix, senses, ref)
    return Front(objectives=names, senses=senses, reference=ref, points=points, hypervolume=hv)


# --------------------------------------------------------------------------------------------------
# Text and plots
# --------------------------------------------------------------------------------------------------


def format_front(front: Front) -> str:
    """A plain-text table of the front, for the terminal (``orchestrator pareto STUDY``).

    Args:
        front: a `Front`.

    Returns:
        A summary line, then one aligned row per front point (columns as in `Front.table`).

    Example:
        >>> f = compute_front([{"trial_id": "t0", "metrics": {"loss": 0.5}, "params": {"lr": 0.1}}], {"loss": "min"})
        >>> print(format_front(f))
        Pareto front: loss (min) | 1 of 1 trials on the front
        trial_id  loss  lr
        t0        0.5   0.1
    """
    objs = ", ".join(f"{o} ({s})" for o, s in zip(front.objectives, front.senses))
    n_front = sum(p.on_front for p in front.points)
    summary = f"Pareto front: {objs} | {n_front} of {len(front.points)} trials on the front"
    incomplete = sum(not _complete(p, front.objectives) for p in front.points)
    if incomplete:
        summary += f" ({incomplete} without finite objective values)"
    if front.hypervolume is not None:
        summary += f" | hypervolume {front.hypervolume:.6g} w.r.t. {list(front.reference or ())}"
    table = front.table()
    if not table["trial_id"]:
        return summary + "\n(no trial has finite values for every objective)"
    cols = {k: [format_value(v) for v in vs] for k, vs in table.items()}
    widths = {k: max(len(k), *(len(c) for c in cs)) for k, cs in cols.items()}
    lines = [summary, "  ".join(k.ljust(widths[k]) for k in cols).rstrip()]
    for r in range(len(table["trial_id"])):
        lines.append("  ".join(cols[k][r].ljust(widths[k]) for k in cols).rstrip())
    return "\n".join(lines)


def _complete(p: FrontPoint, objectives: Sequence[str]) -> bool:
    return all(math.isfinite(p.values.get(o, math.nan)) for o in objectives)


def format_value(v: Any) -> str:
    """A front value as text: ``-`` for None, floats to 6 significant digits."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _enc(v: float) -> float | str:
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _dec(v: float | str) -> float:
    return float(v)  # float("nan"), float("inf"), float("-inf") parse the encoded strings


def _jsonable(v: Any) -> Any:
    """Parameters as JSON-safe values (non-finite floats encoded as in `_enc`)."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return _enc(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)
