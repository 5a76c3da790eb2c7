"""CellSearch with real Optuna searchers: round-robin over cells, per-cell quotas, results routed to the
searcher that made the suggestion, and a save/restore round trip."""
from __future__ import annotations

from pathlib import Path

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestrator.cell_search import CellSearch


def _optuna(seed: int) -> OptunaSearch:
    space = {"lambda_e": optuna.distributions.FloatDistribution(0.1, 4.0, log=True)}
    return OptunaSearch(space=space, metric="video_top1", mode="max", sampler=optuna.samplers.TPESampler(seed=seed))


def test_cells_take_turns_until_each_has_its_samples(tmp_path: Path) -> None:
    cells = [{"dims": "temporal"}, {"dims": "both"}]
    search = CellSearch([_optuna(0), _optuna(1)], cells, num_samples=2)
    got = [search.suggest(f"t{i}") for i in range(4)]
    assert [g["cell"]["dims"] for g in got] == ["temporal", "both", "temporal", "both"]
    assert all(0.1 <= g["lambda_e"] <= 4.0 for g in got) and len({g["lambda_e"] for g in got}) == 4
    assert search.suggest("t4") == Searcher.FINISHED

    for i, g in enumerate(got):
        search.on_trial_complete(f"t{i}", {"video_top1": 50.0 + i, "lambda_e": g["lambda_e"]})
    temporal, both = (s._ot_study for s in search.searchers)
    assert [t.value for t in temporal.trials] == [50.0, 52.0]  # each cell's sampler saw only its trials
    assert [t.value for t in both.trials] == [51.0, 53.0]

    search.save(str(tmp_path / "state.pkl"))
    restored = CellSearch([_optuna(0), _optuna(1)], cells, num_samples=2)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.left == [0, 0] and restored.owner == search.owner
    assert [t.value for t in restored.searchers[1]._ot_study.trials] == [51.0, 53.0]
