"""The driver ends a trial's MLflow run ``KILLED``, tagged ``stopped_early``, as soon as Tune completes the trial
while the run is still open: the scheduler (ASHA) stopped it before the trial's own code could end it.

A stopped trial ends its own run when Tune tells it to stop, which may come late (a one-worker trial whose
actor Tune keeps for the next trial) or never (at the study's end Tune gives a stopping actor 10 s before
it kills it, which may be too short for a data-parallel trial to stop its Ray Train workers). Ending the run
here shows the trial as stopped in MLflow at once; the trial's own end, if it comes, sets the same status.
`tracking.close_stopped` does this for every terminated trial again once Tune's experiment is over (a
tracking server away when the trial completed).
"""
from __future__ import annotations

import warnings
from typing import Any

from ray import tune

from .tracking import StudyTracker, close_stopped

__all__ = ["CloseStoppedRuns"]


class CloseStoppedRuns(tune.Callback):
    """Tune callback: `tracking.close_stopped` for each trial Tune completes."""

    def __init__(self, tracker: StudyTracker) -> None:
        self.tracker = tracker

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        try:
            close_stopped(self.tracker, {trial.trial_id})
        except Exception as e:  # MLflow away: never stop the study for it; the pass after the experiment retries
            warnings.warn(f"trial {trial.trial_id}: could not end its stopped run now ({e}); retried at the end",
                          stacklevel=2)
