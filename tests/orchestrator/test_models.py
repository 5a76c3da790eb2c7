"""`orchestrator.models`: the order of the front's aliases (registering on a real store: `test_run`)."""
from __future__ import annotations

from orchestrator.models import FrontModel, trade_off_order
from orchestrator.pareto import FrontPoint


def _point(tid: str, top1: float, gflops: float) -> FrontPoint:
    return FrontPoint(trial_id=tid, values={"video_top1": top1, "gflops_avg": gflops}, on_front=True)


def test_front_0_is_the_cheapest_and_the_last_the_most_accurate() -> None:
    points = [_point("b", 80.0, 0.5), _point("c", 90.0, 0.9), _point("a", 60.0, 0.1)]
    order = trade_off_order(points, {"video_top1": "max", "gflops_avg": "min"})
    assert [p.trial_id for p in order] == ["a", "b", "c"]
    # the objectives' order in the file does not matter; equal cost: the more accurate first
    tied = [_point("x", 70.0, 0.3), _point("y", 75.0, 0.3)]
    assert [p.trial_id for p in trade_off_order(tied, {"gflops_avg": "min", "video_top1": "max"})] == ["y", "x"]


def test_a_single_maximised_objective_orders_from_worst_to_best() -> None:
    points = [_point("b", 80.0, 0.5), _point("a", 60.0, 0.1)]
    assert [p.trial_id for p in trade_off_order(points, {"video_top1": "max"})] == ["a", "b"]


def test_a_version_is_named_by_its_alias_or_its_number() -> None:
    assert FrontModel("smoke", "3", ("front-1",), "r", "t", {}).uri == "models:/smoke@front-1"
    assert FrontModel("smoke", "3", (), "r", "t", {}).uri == "models:/smoke/3"
