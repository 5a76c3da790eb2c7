"""The study's live view: a redrawn table on a terminal, summary lines elsewhere."""
from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

from rich.console import Console

from orchestrator.progress import ProgressCallback


def _trial(trial_id: str, config: dict | None = None, **result: float) -> SimpleNamespace:
    """What Tune hands a callback: id, config (a grid cell and sampled values), last result."""
    return SimpleNamespace(trial_id=trial_id, config=config or {}, last_result=result)


def _drive(terminal: bool, width: int = 120) -> str:
    cb = ProgressCallback(["video_top1", "gflops_avg"], ["max", "min"], total=3)
    out = io.StringIO()
    cb._console = Console(file=out, force_terminal=terminal, width=width, color_system=None)
    cb.on_trial_start(0, [], _trial("t1"))
    cb.on_trial_result(0, [], _trial("t1", epoch=1, video_top1=50.0, gflops_avg=0.2), {})
    cb.on_trial_complete(0, [], _trial("t1", epoch=2, video_top1=60.0, gflops_avg=0.1))
    cb.on_trial_start(0, [], _trial("t2", {"cell": {"dims": "both"}, "lambda_e": 0.8312}))
    cb.on_trial_complete(0, [], _trial("t2", {"cell": {"dims": "both"}, "lambda_e": 0.8312}, epoch=2,
                                       video_top1=70.0, gflops_avg=0.3, skipped_videos_val=2.0))  # fmt: skip
    cb.on_trial_error(0, [], _trial("t3", epoch=1))
    assert pickle.loads(pickle.dumps(cb)).done == 2  # Tune pickles callbacks; the console/live stay behind
    cb.on_experiment_end([])
    return out.getvalue()


def test_lines_carry_counts_eta_best_values_and_front_size_unwrapped() -> None:
    text = _drive(terminal=False, width=40)  # a pipe's notional width does not wrap the lines
    lines = text.strip().splitlines()
    assert len(lines) == 3  # finished and failed trials only
    assert lines[0].startswith("trial t1 done: video_top1=60, gflops_avg=0.1 | 1/3 done, 0 running | ETA 0m0")
    assert lines[1].startswith("trial both · λe 0.831 (t2) done: video_top1=70, gflops_avg=0.3 (skipped unreadable "
                               "videos: 0 train, 2 val) | 2/3 done, 0 running | ETA ")  # fmt: skip
    assert lines[1].endswith("best video_top1 70 | best gflops_avg 0.1 | front 2")  # t1 and t2 trade off
    assert "trial t3 FAILED | 2/3 done, 0 running, 1 failed | best" in lines[2]  # no ETA once all are in


def test_a_terminal_gets_a_table_of_every_trial() -> None:
    text = _drive(terminal=True)
    last = text[text.rindex("study progress"):]  # the final redraw
    for row in ("t1", "t2", "t3"):
        assert row in last
    assert "FAILED" in last and "done" in last and "front 2" in last
    front_rows = [line for line in last.splitlines() if "★" in line]
    assert len(front_rows) == 2 and all("t1" in r or "t2" in r for r in front_rows)  # t3 failed: not a candidate
