"""Pictures of fronts: PNG and HTML files of one or several studies, and what they refuse."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.front_plots import plot_front_html, plot_front_png
from orchestrator.pareto import Front, compute_front

ACC_GFLOPS = {"video_top1": "max", "gflops_avg": "min"}
REFERENCE = {"video_top1": 50.0, "gflops_avg": 8.0}


def _trial(tid: str, params: dict | None = None, **metrics: float | None) -> dict:
    return {"trial_id": tid, "metrics": metrics, "params": params or {}}


TRIALS = [
    _trial("t_a", {"lr": 0.1, "gate": {"tau": 1.0, "kind": "soft"}}, video_top1=80.0, gflops_avg=6.0),
    _trial("t_b", {"lr": 0.2, "gate": {"tau": 0.5, "kind": "soft"}}, video_top1=75.0, gflops_avg=3.0),
    _trial("t_c", {"lr": 0.3}, video_top1=60.0, gflops_avg=1.0, loss=0.9),
    _trial("t_d", {"lr": 0.4}, video_top1=70.0, gflops_avg=4.0),
    _trial("t_nan", {"lr": 0.7}, video_top1=math.nan, gflops_avg=0.1),  # never drawn
]


def _two_studies() -> dict[str, Front]:
    other = [_trial(f"u{i}", {"lr": i / 10}, video_top1=55.0 + 4 * i, gflops_avg=1.0 + i) for i in range(5)]
    return {"base": compute_front(TRIALS, ACC_GFLOPS, REFERENCE), "sweep": compute_front(other, ACC_GFLOPS, REFERENCE)}


def test_plot_png(tmp_path: Path) -> None:
    out = plot_front_png(_two_studies(), tmp_path / "sub" / "front.png")
    assert out == tmp_path / "sub" / "front.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    three = compute_front(
        [_trial(f"t{i}", video_top1=60.0 + i, gflops_avg=1.0 + i, clips_per_s=10.0 - i) for i in range(4)],
        {"video_top1": "max", "gflops_avg": "min", "clips_per_s": "max"},
    )
    assert plot_front_png({"3obj": three}, tmp_path / "three.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_html(tmp_path: Path) -> None:
    out = plot_front_html(_two_studies(), tmp_path / "front.html")
    text = out.read_text(encoding="utf-8")
    assert 1_000_000 < len(text) < 6_000_000  # plotly.js inlined, so it opens offline
    for tid in ("t_a", "t_b", "t_c", "t_d", "u0", "u4"):
        assert tid in text
    assert "video_top1 (max)" in text and "gflops_avg (min)" in text and "gate.tau" in text


def test_plots_refuse_mismatched_or_missing_axes(tmp_path: Path) -> None:
    fronts = _two_studies()
    flipped = compute_front(TRIALS, {"gflops_avg": "min", "video_top1": "max"})
    for plot in (plot_front_png, plot_front_html):
        with pytest.raises(ValueError, match="no fronts"):
            plot({}, tmp_path / "x")
        with pytest.raises(ValueError, match="'flipped' plots.*same first two objectives"):
            plot({**fronts, "flipped": flipped}, tmp_path / "x")
        with pytest.raises(ValueError, match="plotting needs at least 2"):
            plot({"one": compute_front(TRIALS, {"loss": "min"})}, tmp_path / "x")
