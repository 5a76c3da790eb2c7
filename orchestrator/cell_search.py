"""`CellSearch`: one Optuna search per grid cell behind a single Tune searcher.

Tune cannot cross a ``grid_search`` with a searcher, and one `Tuner` per cell pays a Tune experiment's
start-up (fresh trial actors importing torch and mlflow) once per cell. `CellSearch` runs every cell's
trials in one experiment instead: it asks the cells' own searchers in turn for ``num_samples`` trials
each, tags every suggestion with its cell, and routes results back to the searcher that made it, so
each cell's sampler still learns from its own trials only (an ablation cell's λ_e front is its own).

On resume it reconciles its bookkeeping with the trial list Tune restored. Tune saves that list and the
searcher's state as separate files and copies them to storage in the background, so a driver killed
mid-copy can leave a searcher that has suggested a trial the list never got (which would then never
run), or a list holding a trial the searcher does not know. `reconcile` makes the restored list the
truth: a lost suggestion is owed again (and failed in its cell's sampler), an unknown trial is adopted.
Give Tune a `CellSearch` wrapped by `CellSearch.search_alg()`, whose restored state never says "finished"
on its own (the saved flag can be as stale as the list), and ``num_samples=-1``: the cells' quotas decide.
Pass `CellSearch.callback()` to Tune as well: Tune ends some trials without telling the searcher (a reused
actor that cannot be reset errors the trial it was given), and the callback tells it, so the concurrency
limit never waits on a trial that no longer runs.

Example:
    >>> search = CellSearch([searcher_for(0), searcher_for(1)], cells, num_samples=2)   # doctest: +SKIP
    >>> search.suggest("t1")                                                            # doctest: +SKIP
    {'cell': {'dims': 'temporal'}, 'lambda_e': 0.53}
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search import SearchGenerator, Searcher

__all__ = ["CellSearch", "GridCell", "errored_trials", "saved_trials"]


class CellSearch(Searcher):
    """Round-robin over per-cell searchers; suggestions are ``{"cell": cell, **sampled}``.

    Args:
        searchers: one searcher per cell, already configured (space, metric(s), mode(s), seed).
        cells: the grid cells, in the same order.
        num_samples: trials per cell.
        max_concurrent: at most this many trials run at once (``None``: as many as the cluster holds). Tune
            ignores ``TuneConfig.max_concurrent_trials`` for a search algorithm that is already a
            `SearchGenerator`, and its `ConcurrencyLimiter` forgets the running trials on a resume (it would
            then keep their results from the cells' samplers), so the limit is kept here, restored from
            the trial states Tune saved.
    """

    def __init__(self, searchers: list[Searcher], cells: list[dict[str, Any]], num_samples: int,
                 max_concurrent: int | None = None) -> None:  # fmt: skip
        if len(searchers) != len(cells):
            raise ValueError(f"CellSearch: {len(searchers)} searchers for {len(cells)} cells")
        super().__init__()
        self.searchers = searchers
        self.cells = cells
        self.left = [num_samples] * len(cells)  # suggestions each cell still owes
        self.owner: dict[str, int] = {}  # trial id → cell index
        self.adopted: set[str] = set()  # restored trials this searcher's saved state did not know
        self.turn = 0
        self.max_concurrent = max_concurrent
        self.live: set[str] = set()  # trials suggested or restored that have not completed

    def search_alg(self) -> SearchGenerator:
        """This searcher in the Tune wrapper to pass as ``TuneConfig(search_alg=…, num_samples=-1)``."""
        return _QuotaGenerator(self)

    def callback(self) -> Callback:
        """The Tune callback to pass with `search_alg` in ``RunConfig(callbacks=[…])`` (see the module doc)."""
        return _EndedTrials(self)

    def sync_ended(self, ended: dict[str, bool]) -> list[str]:
        """Complete the live trials Tune has ended (trial id → whether it errored) without telling this
        searcher; each is reported to its cell's searcher as failed (it never reported a result). Returns
        their ids."""
        missed = sorted(t for t in self.live if t in ended)
        for trial_id in missed:
            self.on_trial_complete(trial_id, error=ended[trial_id])
        return missed

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the cells' searchers carry their own objectives and spaces

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if all(left <= 0 for left in self.left):
            return Searcher.FINISHED
        if self.max_concurrent is not None and len(self.live) >= self.max_concurrent:
            return None  # Tune asks again when a trial completes
        n = len(self.cells)
        for k in range(n):
            i = (self.turn + k) % n
            if self.left[i] <= 0:
                continue
            params = self.searchers[i].suggest(trial_id)
            if params == Searcher.FINISHED:
                self.left[i] = 0
                continue
            if params is None:  # that searcher waits for results; ask the next cell
                continue
            self.left[i] -= 1
            self.owner[trial_id] = i
            self.live.add(trial_id)
            self.turn = (i + 1) % n
            return {"cell": self.cells[i], **params}
        return Searcher.FINISHED if all(left <= 0 for left in self.left) else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner and trial_id not in self.adopted:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.live.discard(trial_id)
        if trial_id in self.owner and trial_id not in self.adopted:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def reconcile(self, trials: dict[str, dict[str, Any]], unfinished: set[str] | None = None) -> None:
        """Make the bookkeeping agree with the trials Tune restored (trial id → config).

        A trial this searcher suggested but the list lacks is owed again, and reported failed to its
        cell's searcher so that sampler does not wait on it. A listed trial this searcher does not know
        is adopted: it counts against its cell, its results are not fed to that cell's sampler (which
        never saw its suggestion). The running trials are the restored ``unfinished`` ones (Tune runs them
        again and reports their completion).
        """
        self.live = set(unfinished or ()) & set(trials)
        for trial_id, i in list(self.owner.items()):
            if trial_id not in trials:
                del self.owner[trial_id]
                self.adopted.discard(trial_id)
                self.left[i] += 1
                self.searchers[i].on_trial_complete(trial_id, error=True)
        for trial_id, config in trials.items():
            if trial_id not in self.owner and config.get("cell") in self.cells:
                i = self.cells.index(config["cell"])
                self.owner[trial_id] = i
                self.adopted.add(trial_id)
                self.left[i] -= 1

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        self.__dict__.setdefault("adopted", set())  # a state saved before adoption existed
        self.__dict__.setdefault("max_concurrent", None)  # and before the concurrency limit
        states = _saved_states(Path(checkpoint_path).parent)
        if states is not None:
            self.reconcile({t.trial_id: t.config for t in states},
                           {t.trial_id for t in states if t.status != "TERMINATED"})  # a resume reruns ERROR ones


class GridCell(Searcher):
    """The searcher of a cell with no sampled axes: every suggestion is empty (the cell is the config).
    A pure grid runs as ``CellSearch([GridCell()] * len(cells), cells, num_samples=1)``, so it resumes
    through the same reconciliation as a sampled one."""

    def suggest(self, trial_id: str) -> dict[str, Any]:
        return {}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


class _EndedTrials(Callback):
    """After every step of Tune's loop, `CellSearch.sync_ended` with the trials Tune has ended. Tune pickles
    this callback with the search algorithm, so a restored experiment's callback holds the restored searcher."""

    def __init__(self, search: CellSearch) -> None:
        self.search = search

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.search.live:
            self.search.sync_ended({t.trial_id: t.status == "ERROR" for t in trials
                                    if t.status in ("TERMINATED", "ERROR")})  # fmt: skip


class _QuotaGenerator(SearchGenerator):
    """Tune's searcher wrapper, minus its own saved "finished" flag: after a resume the searcher's
    reconciled quotas decide whether trials are still owed (it answers FINISHED once none are)."""

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "finished": False})


def _saved_states(experiment_dir: Path) -> list[Any] | None:
    """The trials (stubs, with id, config and status) in the newest Tune experiment state under
    ``experiment_dir`` (the file Tune resumes from: the greatest ``experiment_state-*.json`` name), or None."""
    from ray.tune.experiment.trial import Trial

    states = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    if not states:
        return None
    trial_data = json.loads(states[-1].read_text())["trial_data"]
    return [Trial.from_json_state(state, stub=True) for state, _metadata in trial_data]


def errored_trials(experiment_dir: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Trial id → (config, Tune's error: the last line of its ``error.txt``, and where that file is) of the
    trials the newest Tune experiment state under ``experiment_dir`` lists as errored (empty if none)."""
    found = {}
    for trial in _saved_states(experiment_dir) or []:
        if trial.status == "ERROR":
            logdir = Path(experiment_dir) / (trial.relative_logdir or "")
            error = logdir / "error.txt"
            lines = error.read_text(errors="replace").strip().splitlines() if error.is_file() else []
            # Tune's file holds the traceback; its last line is the error itself
            text = f"{lines[-1]} (Tune's full error: {error})" if lines else "Tune ended it with an error"
            found[trial.trial_id] = (trial.config, text)
    return found


def terminated_trials(experiment_dir: Path) -> set[str]:
    """Ids of the trials the newest Tune experiment state under ``experiment_dir`` lists as terminated: run
    to their end, or stopped by the scheduler (empty if there is no state)."""
    return {t.trial_id for t in _saved_states(experiment_dir) or [] if t.status == "TERMINATED"}


def saved_trials(experiment_dir: Path) -> dict[str, dict[str, Any]] | None:
    """Trial id → config of the trials in the newest Tune experiment state under ``experiment_dir``, or None
    if there is none."""
    states = _saved_states(experiment_dir)
    return None if states is None else {t.trial_id: t.config for t in states}
