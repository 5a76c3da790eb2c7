"""`CellSearch`: one Optuna search per grid cell behind a single Tune searcher.

Tune cannot cross a ``grid_search`` with a searcher, and one `Tuner` per cell pays a Tune experiment's
start-up (fresh trial actors importing torch and mlflow) once per cell. `CellSearch` runs every cell's
trials in one experiment instead: it asks the cells' own searchers in turn for ``num_samples`` trials
each, tags every suggestion with its cell, and routes results back to the searcher that made it, so
each cell's sampler still learns from its own trials only (an ablation cell's λ_e front is its own).

Example:
    >>> search = CellSearch([searcher_for(0), searcher_for(1)], cells, num_samples=2)   # doctest: +SKIP
    >>> search.suggest("t1")                                                            # doctest: +SKIP
    {'cell': {'dims': 'temporal'}, 'lambda_e': 0.53}
"""
from __future__ import annotations

import pickle
from typing import Any

from ray.tune.search import Searcher

__all__ = ["CellSearch"]


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
        self.turn = 0

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
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
