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

from ray.tune.search import SearchGenerator, Searcher

__all__ = ["CellSearch", "GridCell", "saved_trials"]


class CellSearch(Searcher):
    """Round-robin over per-cell searchers; suggestions are ``{"cell": cell, **sampled}``.

    Args:
        searchers: one searcher per cell, already configured (space, metric(s), mode(s), seed).
        cells: the grid cells, in the same order.
        num_samples: trials per cell.
    """

    def __init__(self, searchers: list[Searcher], cells: list[dict[str, Any]], num_samples: int) -> None:
        if len(searchers) != len(cells):
            raise ValueError(f"CellSearch: {len(searchers)} searchers for {len(cells)} cells")
        super().__init__()
        self.searchers = searchers
        self.cells = cells
        self.left = [num_samples] * len(cells)  # suggestions each cell still owes
        self.owner: dict[str, int] = {}  # trial id → cell index
        self.adopted: set[str] = set()  # restored trials this searcher's saved state did not know
        self.turn = 0

    def search_alg(self) -> SearchGenerator:
        """This searcher in the Tune wrapper to pass as ``TuneConfig(search_alg=…, num_samples=-1)``."""
        return _QuotaGenerator(self)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the cells' searchers carry their own objectives and spaces

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
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
            self.turn = (i + 1) % n
            return {"cell": self.cells[i], **params}
        return Searcher.FINISHED if all(left <= 0 for left in self.left) else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner and trial_id not in self.adopted:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.owner and trial_id not in self.adopted:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def reconcile(self, trials: dict[str, dict[str, Any]]) -> None:
        """Make the bookkeeping agree with the trials Tune restored (trial id → config).

        A trial this searcher suggested but the list lacks is owed again, and reported failed to its
        cell's searcher so that sampler does not wait on it. A listed trial this searcher does not know
        is adopted: it counts against its cell, its results are not fed to that cell's sampler (which
        never saw its suggestion).
        """
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
        trials = saved_trials(Path(checkpoint_path).parent)
        if trials is not None:
            self.reconcile(trials)


class GridCell(Searcher):
    """The searcher of a cell with no sampled axes: every suggestion is empty (the cell is the config).
    A pure grid runs as ``CellSearch([GridCell()] * len(cells), cells, num_samples=1)``, so it resumes
    through the same reconciliation as a sampled one."""

    def suggest(self, trial_id: str) -> dict[str, Any]:
        return {}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


class _QuotaGenerator(SearchGenerator):
    """Tune's searcher wrapper, minus its own saved "finished" flag: after a resume the searcher's
    reconciled quotas decide whether trials are still owed (it answers FINISHED once none are)."""

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "finished": False})


def saved_trials(experiment_dir: Path) -> dict[str, dict[str, Any]] | None:
    """Trial id → config of the trials in the newest Tune experiment state under ``experiment_dir``
    (the file Tune resumes from: the greatest ``experiment_state-*.json`` name), or None if there is none."""
    from ray.tune.experiment.trial import Trial

    states = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    if not states:
        return None
    trial_data = json.loads(states[-1].read_text())["trial_data"]
    trials = (Trial.from_json_state(state, stub=True) for state, _metadata in trial_data)
    return {t.trial_id: t.config for t in trials}
