"""``max_concurrent`` trials run at once: on a local Ray that offers more CPUs than trials (four logical CPUs,
as a cluster would), every trial of a study starts before the first one ends."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.run import run_study
from orchestrator.validation import load_study

from .conftest import start_local_ray

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def four_cpu_ray():
    yield from start_local_ray(4)


def test_max_concurrent_trials_start_together(tmp_path: Path, write_study, four_cpu_ray) -> None:
    """Three cells, ``max_concurrent`` 3, room for all three: Tune must ask `CellSearch` for every trial at once.
    Left to its default (one pending trial for a searcher it does not know), it asked for the next trial only
    once the last one's actor had started, so trials started one after another: here each about when the one
    before it ended."""
    study = load_study(write_study(tmp_path, "together", grid={"dims": ["temporal", "both", "channel"]},
                                   max_concurrent=3))  # fmt: skip
    result = run_study(study, verbose=0)
    trials = result.tracker.child_runs()
    assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)
    first_end = min(r.info.end_time for r in trials)
    started = sorted((r.info.start_time - first_end) / 1000 for r in trials)
    assert started[-1] < 0, f"trial runs started {started} s after the first one ended"
