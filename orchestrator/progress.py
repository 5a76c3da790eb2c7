"""A compact live view of a running study: one line per finished or failed trial with the running
count, the best value of each objective so far and the size of the current front."""
from __future__ import annotations

import math
from typing import Any

from ray import tune
from rich.console import Console

from .pareto import pareto_mask

__all__ = ["ProgressCallback"]


class ProgressCallback(tune.Callback):
    def __init__(self, metrics: list[str], modes: list[str], total: int) -> None:
        self.metrics, self.modes, self.total = metrics, modes, total
        self.points: list[list[float]] = []
        self.done = self.failed = 0

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment state
        return {k: v for k, v in self.__dict__.items() if k != "_console"}

    @property
    def console(self) -> Console:
        if getattr(self, "_console", None) is None:
            self._console = Console(highlight=False)
        return self._console

    def _line(self, text: str) -> None:
        best = []
        for i, (m, mode) in enumerate(zip(self.metrics, self.modes)):
            vals = [p[i] for p in self.points if math.isfinite(p[i])]
            if vals:
                best.append(f"best {m} {(max if mode == 'max' else min)(vals):.4g}")
        front = int(pareto_mask(self.points, self.modes).sum()) if self.points else 0
        self.console.print(f"[{self.done + self.failed}/{self.total}] {text} | {' | '.join(best)} | front {front}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self.done += 1
        if all(m in result for m in self.metrics):
            self.points.append([float(result[m]) for m in self.metrics])
        shown = ", ".join(f"{m}={result[m]:.4g}" for m in self.metrics if m in result)
        self._line(f"trial {trial.trial_id} done: {shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += 1
        self._line(f"trial {trial.trial_id} FAILED")
