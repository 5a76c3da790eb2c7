"""A live view of a running study: on a terminal, a table redrawn in place (one row per trial, named by its
axes: status, epoch, its objectives, ★ when on the current front; a caption with the trials done / running / failed, an ETA from the rate
at which trials finish, the best value of each objective so far and the size of the current front);
elsewhere (CI logs, files) one unwrapped line per finished or failed trial with the same running summary."""
from __future__ import annotations

import math
import time
from typing import Any

from ray import tune
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .pareto import pareto_mask
from .tracking import axes_name

__all__ = ["ProgressCallback"]


class ProgressCallback(tune.Callback):
    def __init__(self, metrics: list[str], modes: list[str], total: int) -> None:
        self.metrics, self.modes, self.total = metrics, modes, total
        self.points: list[list[float]] = []
        self.done = self.failed = 0
        self.rows: dict[str, dict[str, Any]] = {}  # trial id → status, epoch, metrics (the live table)
        self.started: float | None = None  # when the first trial started (this driver)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment state
        return {k: v for k, v in self.__dict__.items() if k not in ("_console", "_live")}

    @property
    def console(self) -> Console:
        if getattr(self, "_console", None) is None:
            self._console = Console(highlight=False)
        return self._console

    def _summary(self) -> str:
        best = []
        for i, (m, mode) in enumerate(zip(self.metrics, self.modes)):
            vals = [p[i] for p in self.points if math.isfinite(p[i])]
            if vals:
                best.append(f"best {m} {(max if mode == 'max' else min)(vals):.4g}")
        front = int(pareto_mask(self.points, self.modes).sum()) if self.points else 0
        running = sum(r["status"] == "running" for r in self.rows.values())
        counts = f"{self.done}/{self.total} done, {running} running" + (f", {self.failed} failed" if self.failed else "")
        return " | ".join([counts, *self._eta(), *best, f"front {front}"])

    def _eta(self) -> list[str]:
        """``["ETA 1m05s"]`` once a trial has finished in this driver: the remaining trials at the rate so far."""
        finished = self.done + self.failed
        if self.started is None or not finished or finished >= self.total:
            return []
        left = (time.monotonic() - self.started) / finished * (self.total - finished)
        return [f"ETA {int(left // 60)}m{int(left % 60):02d}s"]

    def _table(self) -> Table:
        table = Table(title="study progress", caption=self._summary(), caption_justify="left")
        for col in ("trial", "status", "epoch", *self.metrics, "front"):
            table.add_column(col, justify="right" if col in ("epoch", *self.metrics) else "left")
        done = [t for t, r in self.rows.items() if r["status"] == "done" and all(m in r["metrics"] for m in self.metrics)]
        mask = pareto_mask([[self.rows[t]["metrics"][m] for m in self.metrics] for t in done], self.modes) if done else []
        on_front = {t for t, on in zip(done, mask) if on}  # the current front, among the finished trials
        for trial_id, row in self.rows.items():
            shown = [f"{row['metrics'][m]:.4g}" if m in row["metrics"] else "" for m in self.metrics]
            table.add_row(row["name"], row["status"], str(row["epoch"] or ""), *shown, "★" if trial_id in on_front else "")
        return table

    def _update(self, trial: Any, status: str, text: str | None = None) -> None:
        result = trial.last_result or {}
        if self.started is None:
            self.started = time.monotonic()
        self.rows[trial.trial_id] = {"status": status, "epoch": result.get("epoch") and int(result["epoch"]),
                                     "name": _name(trial),
                                     "metrics": {m: float(result[m]) for m in self.metrics if m in result}}  # fmt: skip
        if not self.console.is_terminal:
            if text is not None:  # one line however narrow the pipe's notional width
                self.console.print(f"{text} | {self._summary()}", soft_wrap=True)
            return
        if getattr(self, "_live", None) is None:
            self._live = Live(self._table(), console=self.console, auto_refresh=False)
            self._live.start()
        self._live.update(self._table(), refresh=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "running")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._update(trial, "running")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self.done += 1
        if all(m in result for m in self.metrics):
            self.points.append([float(result[m]) for m in self.metrics])
        shown = ", ".join(f"{m}={result[m]:.4g}" for m in self.metrics if m in result)
        skipped = {k: int(result.get(f"skipped_videos_{k}", 0)) for k in ("train", "val")}
        if any(skipped.values()):  # unreadable videos: said on the line, not only in the run's metrics
            shown += f" (skipped unreadable videos: {skipped['train']} train, {skipped['val']} val)"
        self._update(trial, "done", f"trial {_name(trial)} done: {shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += 1
        self._update(trial, "FAILED", f"trial {_name(trial)} FAILED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if getattr(self, "_live", None) is not None:
            self._live.stop()
            self._live = None


def _name(trial: Any) -> str:
    """``both · λe 0.831 (945322cb)``: the trial's axes, as its MLflow run is named, and its id."""
    config = dict(getattr(trial, "config", None) or {})
    axes = {**config.pop("cell", {}), **config}
    name = axes_name(axes) if axes else ""
    return f"{name} ({trial.trial_id})" if name else trial.trial_id
