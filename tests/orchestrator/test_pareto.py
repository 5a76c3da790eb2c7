"""Pareto fronts: masks and hypervolumes on hand-made sets, fronts of trials, JSON round trip, tables."""
from __future__ import annotations

import doctest
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from orchestrator.pareto import (
    Front,
    compute_front,
    format_front,
    hypervolume,
    pareto_mask,
)

ACC_GFLOPS = {"video_top1": "max", "gflops_avg": "min"}


def _trial(tid: str, params: dict | None = None, **metrics: float | None) -> dict:
    return {"trial_id": tid, "metrics": metrics, "params": params or {}}


# ------------------------------------------------------------------------------------------------
# pareto_mask
# ------------------------------------------------------------------------------------------------

def test_mask_max_min_mix() -> None:
    # (top-1 %, GFLOPs): D is dominated by B (less accurate, more GFLOPs), E by everything
    pts = [[80, 6.0], [75, 3.0], [60, 1.0], [70, 4.0], [50, 9.0]]
    assert pareto_mask(pts, ["max", "min"]).tolist() == [True, True, True, False, False]


def test_mask_negated_column_with_flipped_sense_is_the_same() -> None:
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 6, size=(40, 3)).astype(float)  # small integers: plenty of ties
    mask = pareto_mask(pts, ["max", "min", "max"])
    flipped = pts * np.array([1.0, -1.0, -1.0])
    assert mask.tolist() == pareto_mask(flipped, ["max", "max", "min"]).tolist()
    assert mask.any() and not mask.all()


def test_mask_ties_in_one_objective() -> None:
    # same accuracy: the cheaper one wins; same GFLOPs: the more accurate one wins
    assert pareto_mask([[70, 2.0], [70, 3.0]], ["max", "min"]).tolist() == [True, False]
    assert pareto_mask([[70, 2.0], [80, 2.0]], ["max", "min"]).tolist() == [False, True]


def test_mask_exact_duplicates_all_kept_or_all_dropped() -> None:
    pts = [[70, 2.0], [70, 2.0], [60, 3.0], [60, 3.0], [80, 5.0]]
    assert pareto_mask(pts, ["max", "min"]).tolist() == [True, True, False, False, True]


def test_mask_single_point_and_empty() -> None:
    assert pareto_mask([[1.0, 2.0]], ["max", "min"]).tolist() == [True]
    for empty in ([], np.empty((0, 2))):
        mask = pareto_mask(empty, ["max", "min"])
        assert mask.shape == (0,) and mask.dtype == bool


def test_mask_non_finite_rows_never_on_front_and_never_dominate() -> None:
    # rows 0 and 1 would dominate row 2 were their NaN / inf taken at face value
    pts = [[100, math.nan], [math.inf, 1.0], [50, 3.0], [math.nan, math.nan]]
    assert pareto_mask(pts, ["max", "min"]).tolist() == [False, False, True, False]
    assert pareto_mask([[math.nan, 1.0]], ["max", "min"]).tolist() == [False]


def test_mask_three_objectives() -> None:
    # (top-1 max, GFLOPs min, clips/s max)
    pts = [
        [80, 6.0, 10],  # best accuracy
        [70, 2.0, 30],  # cheapest and fastest
        [70, 3.0, 40],  # faster than the previous, so not dominated by it
        [65, 3.0, 35],  # dominated by the previous
        [80, 6.0, 5],   # dominated by the first (slower)
    ]
    assert pareto_mask(pts, ["max", "min", "max"]).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize(
    ("points", "senses", "match"),
    [
        ([[1, 2]], ["max", "biggest"], r"senses\[1\] is 'biggest'.*'max', 'min'"),
        ([[1, 2]], ["max"], "2 objective column.*1 sense"),
        ([1, 2], ["max", "min"], "must be 2-D.*shape \\(2,\\)"),
        (np.zeros((2, 2, 2)), ["max", "min"], "must be 2-D"),
        ([[1, 2]], "max", "got the string 'max'"),
        ([[1, 2]], [], "at least one objective"),
        ([["a", "b"]], ["max", "min"], "numeric"),
    ],
)
def test_mask_errors_name_the_problem(points, senses, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pareto_mask(points, senses)


# ------------------------------------------------------------------------------------------------
# hypervolume
# ------------------------------------------------------------------------------------------------

STAIRCASE = [[80, 6.0], [75, 3.0], [60, 1.0], [70, 4.0]]  # the last is dominated by (75, 3)


def test_hypervolume_2d_staircase_by_hand() -> None:
    # reference (50 %, 8 GFLOPs); relative to it the front is (30, 2), (25, 5), (10, 7):
    # strips by decreasing accuracy: 30*2 + 25*(5-2) + 10*(7-5) = 155
    assert hypervolume(STAIRCASE, ["max", "min"], [50, 8.0]) == pytest.approx(155.0)
    # the same with both columns negated and the senses flipped
    neg = -np.asarray(STAIRCASE)
    assert hypervolume(neg, ["min", "max"], [-50, -8.0]) == pytest.approx(155.0)


def test_hypervolume_3d_by_inclusion_exclusion() -> None:
    # boxes from the reference of sizes a=(2,2,2), b=(3,1,1), c=(1,3,1):
    # 8 + 3 + 3 - |a∩b|=2 - |a∩c|=2 - |b∩c|=1 + |a∩b∩c|=1 = 10; the middle objective is a "min" one
    pts = [[2, 8, 2], [3, 9, 1], [1, 7, 1]]
    assert hypervolume(pts, ["max", "min", "max"], [0, 10, 0]) == pytest.approx(10.0)


def test_hypervolume_ignores_dominated_points_and_order() -> None:
    base = hypervolume(STAIRCASE[:3], ["max", "min"], [50, 8.0])
    extra = STAIRCASE + [[55, 7.0], [75, 3.0], [60, 1.0]]  # dominated points and duplicates
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm = rng.permutation(len(extra))
        assert hypervolume([extra[i] for i in perm], ["max", "min"], [50, 8.0]) == pytest.approx(base)
    pts3 = np.random.default_rng(1).random((30, 3))
    ref3 = [0.0, 1.0, 0.0]
    shuffled = pts3[np.random.default_rng(2).permutation(30)]
    worse = pts3 * np.array([0.5, 1.0, 0.5]) + np.array([0.0, 0.2, 0.0])  # each dominated by its original
    hv = hypervolume(pts3, ["max", "min", "max"], ref3)
    assert hypervolume(shuffled, ["max", "min", "max"], ref3) == pytest.approx(hv)
    assert hypervolume(np.vstack([pts3, worse]), ["max", "min", "max"], ref3) == pytest.approx(hv)


def test_hypervolume_zero_when_nothing_beats_the_reference() -> None:
    assert hypervolume(STAIRCASE, ["max", "min"], [90, 8.0]) == 0.0
    assert hypervolume([[50, 3.0]], ["max", "min"], [50, 8.0]) == 0.0  # equal in one objective: no volume
    assert hypervolume([], ["max", "min"], [50, 8.0]) == 0.0
    assert hypervolume([[math.nan, 1.0]], ["max", "min"], [50, 8.0]) == 0.0
    # a point below the reference in one objective adds nothing to the others' volume
    assert hypervolume([[80, 6.0], [99, 9.0]], ["max", "min"], [50, 8.0]) == pytest.approx(60.0)


def test_hypervolume_one_objective() -> None:
    assert hypervolume([[3.0], [5.0], [1.0]], ["min"], [6.0]) == pytest.approx(5.0)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_counting_unit_cells(m: int) -> None:
    # integer points in [1, 4]^m, reference 0: the union of boxes is made of whole unit cells
    rng = np.random.default_rng(m)
    for _ in range(5):
        pts = rng.integers(1, 5, size=(int(rng.integers(1, 12)), m))
        centres = np.stack(np.meshgrid(*[np.arange(4) + 0.5] * m, indexing="ij"), axis=-1).reshape(-1, m)
        covered = (pts[None, :, :] >= centres[:, None, :]).all(-1).any(-1).sum()
        assert hypervolume(pts, ["max"] * m, [0] * m) == pytest.approx(float(covered))


def test_hypervolume_reference_errors() -> None:
    with pytest.raises(ValueError, match="one value per objective \\(2\\)"):
        hypervolume(STAIRCASE, ["max", "min"], [50])
    with pytest.raises(ValueError, match="finite"):
        hypervolume(STAIRCASE, ["max", "min"], [50, math.inf])


# ------------------------------------------------------------------------------------------------
# compute_front and Front
# ------------------------------------------------------------------------------------------------

TRIALS = [
    _trial("t_a", {"lr": 0.1, "gate": {"tau": 1.0, "kind": "soft"}}, video_top1=80.0, gflops_avg=6.0),
    _trial("t_b", {"lr": 0.2, "gate": {"tau": 0.5, "kind": "soft"}}, video_top1=75.0, gflops_avg=3.0),
    _trial("t_c", {"lr": 0.3}, video_top1=60.0, gflops_avg=1.0, loss=0.9),
    _trial("t_d", {"lr": 0.4}, video_top1=70.0, gflops_avg=4.0),
    _trial("t_missing", {"lr": 0.5}, video_top1=99.0),  # crashed before measuring GFLOPs
    _trial("t_none", {"lr": 0.6}, video_top1=99.0, gflops_avg=None),
    _trial("t_nan", {"lr": 0.7}, video_top1=math.nan, gflops_avg=0.1),
]
REFERENCE = {"video_top1": 50.0, "gflops_avg": 8.0, "clips_per_s": 0.0}  # extra keys are ignored


def test_compute_front_flags_and_hypervolume() -> None:
    f = compute_front(TRIALS, ACC_GFLOPS, REFERENCE)
    assert f.objectives == ("video_top1", "gflops_avg") and f.senses == ("max", "min")
    assert f.reference == (50.0, 8.0)
    assert [p.trial_id for p in f.points] == [t["trial_id"] for t in TRIALS]  # every trial, input order
    assert {p.trial_id for p in f.points if p.on_front} == {"t_a", "t_b", "t_c"}
    assert [p.trial_id for p in f.front] == ["t_a", "t_b", "t_c"]  # best accuracy first
    assert f.hypervolume == pytest.approx(155.0)  # the staircase above: the incomplete trials add nothing
    missing = next(p for p in f.points if p.trial_id == "t_missing")
    assert missing.values == {"video_top1": 99.0} and not missing.on_front
    assert compute_front(TRIALS, ACC_GFLOPS).hypervolume is None


def test_front_order_follows_first_objective_sense() -> None:
    f = compute_front(TRIALS, {"gflops_avg": "min", "video_top1": "max"})
    assert [p.trial_id for p in f.front] == ["t_c", "t_b", "t_a"]  # cheapest first


def test_compute_front_errors() -> None:
    with pytest.raises(ValueError, match="no value for objective 'gflops_avg'.*has \\['gflops', 'video_top1'\\]"):
        compute_front(TRIALS, ACC_GFLOPS, {"video_top1": 50.0, "gflops": 8.0})
    with pytest.raises(ValueError, match="finite"):
        compute_front(TRIALS, ACC_GFLOPS, {"video_top1": math.nan, "gflops_avg": 8.0})
    with pytest.raises(ValueError, match=r"senses\[1\] is 'minimise'"):
        compute_front(TRIALS, {"video_top1": "max", "gflops_avg": "minimise"})
    with pytest.raises(ValueError, match="at least one objective"):
        compute_front(TRIALS, {})
    with pytest.raises(ValueError, match="'t_a' appears twice"):
        compute_front(TRIALS + [TRIALS[0]], ACC_GFLOPS)
    with pytest.raises(ValueError, match=r"trials\[0\] needs 'trial_id' and 'metrics'"):
        compute_front([{"id": "x", "metrics": {}}], ACC_GFLOPS)
    with pytest.raises(ValueError, match="trial 'x': metric 'video_top1' is 'high', not a number"):
        compute_front([_trial("x", video_top1="high", gflops_avg=1.0)], ACC_GFLOPS)


def test_compute_front_empty_and_all_incomplete() -> None:
    f = compute_front([], ACC_GFLOPS, REFERENCE)
    assert f.points == () and f.front == [] and f.hypervolume == 0.0
    g = compute_front([_trial("only", video_top1=70.0)], ACC_GFLOPS, REFERENCE)
    assert g.front == [] and g.hypervolume == 0.0
    assert "no trial has finite values" in format_front(g)


def test_table_columns() -> None:
    f = compute_front(TRIALS, ACC_GFLOPS, REFERENCE)
    table = f.table()
    assert list(table) == ["trial_id", "video_top1", "gflops_avg", "gate.kind", "gate.tau", "lr"]
    assert table["trial_id"] == ["t_a", "t_b", "t_c"]
    assert table["video_top1"] == [80.0, 75.0, 60.0]
    assert table["gate.tau"] == [1.0, 0.5, None]  # t_c has no gate parameters
    assert all(len(col) == 3 for col in table.values())
    # a parameter that shares an objective's name gets a prefix instead of overwriting it
    clash = compute_front([_trial("x", {"video_top1": "p"}, video_top1=1.0, gflops_avg=1.0)], ACC_GFLOPS)
    assert clash.table() == {"trial_id": ["x"], "video_top1": [1.0], "gflops_avg": [1.0], "params.video_top1": ["p"]}


def test_to_dict_from_dict_round_trip() -> None:
    finite = compute_front(TRIALS[:4], ACC_GFLOPS, REFERENCE)
    assert Front.from_dict(json.loads(json.dumps(finite.to_dict()))) == finite
    unreferenced = compute_front(TRIALS[:4], ACC_GFLOPS)
    assert Front.from_dict(json.loads(json.dumps(unreferenced.to_dict()))) == unreferenced
    # NaN / inf survive as strings in strict JSON (NaN != NaN, so compare field by field)
    f = compute_front(TRIALS + [_trial("t_inf", video_top1=math.inf, gflops_avg=1.0)], ACC_GFLOPS, REFERENCE)
    back = Front.from_dict(json.loads(json.dumps(f.to_dict(), allow_nan=False)))
    assert [p.trial_id for p in back.front] == [p.trial_id for p in f.front]
    assert math.isnan(next(p for p in back.points if p.trial_id == "t_nan").values["video_top1"])
    assert next(p for p in back.points if p.trial_id == "t_inf").values["video_top1"] == math.inf
    assert back.hypervolume == f.hypervolume
    with pytest.raises(ValueError, match="missing key.*'points'"):
        Front.from_dict({"objectives": [], "senses": [], "reference": None, "hypervolume": None})


def test_to_dict_makes_params_json_safe() -> None:
    f = compute_front([_trial("x", {"n": np.int64(3), "path": Path("/a"), "sizes": (1, 2)}, loss=0.5)], {"loss": "min"})
    params = json.loads(json.dumps(f.to_dict()))["points"][0]["params"]
    assert params == {"n": 3, "path": "/a", "sizes": [1, 2]}


def test_format_front() -> None:
    text = format_front(compute_front(TRIALS, ACC_GFLOPS, REFERENCE))
    lines = text.splitlines()
    assert "video_top1 (max), gflops_avg (min)" in lines[0] and "3 of 7 trials" in lines[0]
    assert "3 without finite objective values" in lines[0] and "hypervolume 155" in lines[0]
    assert lines[1].split() == ["trial_id", "video_top1", "gflops_avg", "gate.kind", "gate.tau", "lr"]
    assert [ln.split()[0] for ln in lines[2:]] == ["t_a", "t_b", "t_c"]


def test_docstring_examples() -> None:
    result = doctest.testmod(importlib.import_module("orchestrator.pareto"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_no_heavy_imports() -> None:
    src = Path(importlib.import_module("orchestrator.pareto").__file__).read_text()
    assert "import ray" not in src and "import mlflow" not in src
