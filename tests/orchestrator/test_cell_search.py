"""CellSearch with real Optuna searchers: round-robin over cells, per-cell quotas, results routed to the
searcher that made the suggestion, a save/restore round trip, and reconciling with a restored trial list."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestrator.cell_search import CellSearch, saved_trials


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


def test_reconcile_owes_a_lost_suggestion_again_and_adopts_an_unknown_trial() -> None:
    cells = [{"dims": "temporal"}, {"dims": "both"}]
    search = CellSearch([_optuna(0), _optuna(1)], cells, num_samples=2)
    got = [search.suggest(f"t{i}") for i in range(3)]  # temporal, both, temporal
    # Tune's restored list: t2 never made it, t9 (a "both" trial) the saved searcher never suggested
    search.reconcile({"t0": got[0], "t1": got[1], "t9": {"cell": {"dims": "both"}, "lambda_e": 1.0}})
    assert search.left == [1, 0] and search.owner == {"t0": 0, "t1": 1, "t9": 1}
    temporal = search.searchers[0]._ot_study
    assert [t.state for t in temporal.trials] == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL]

    again = search.suggest("t10")
    assert again["cell"] == {"dims": "temporal"} and search.suggest("t11") == Searcher.FINISHED
    search.on_trial_complete("t9", {"video_top1": 60.0})  # adopted: its cell's sampler never saw it
    search.on_trial_complete("t1", {"video_top1": 55.0})
    assert [t.value for t in search.searchers[1]._ot_study.trials] == [55.0]


def _no_op(config: dict) -> dict:
    return {"video_top1": config["lambda_e"]}


@pytest.mark.slow
def test_resume_runs_a_trial_the_saved_trial_list_lost(tmp_path: Path, local_ray) -> None:
    """A torn experiment-state copy, made by hand: the searcher's saved state holds a suggestion the saved
    trial list lacks. On resume that trial is owed again and every cell still ends with its samples."""
    from ray import tune

    cells = [{"dims": "temporal"}, {"dims": "both"}]

    def tuner() -> tune.Tuner:
        config = tune.TuneConfig(num_samples=-1, search_alg=CellSearch([_optuna(0), _optuna(1)], cells, 2).search_alg(),
                                 max_concurrent_trials=1)  # fmt: skip
        return tune.Tuner(_no_op, tune_config=config,
                          run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0))  # fmt: skip

    first = tuner().fit()
    assert len(first) == 4
    state_file = max((tmp_path / "exp").glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    lost = json.loads(state["trial_data"].pop()[0])["trial_id"]
    state_file.write_text(json.dumps(state))
    assert lost not in saved_trials(tmp_path / "exp")

    second = tune.Tuner.restore(str(tmp_path / "exp"), _no_op, resume_unfinished=True).fit()
    configs = [r.config for r in second]
    assert len(configs) == 4 and lost not in {r.metrics["trial_id"] for r in second}
    assert sorted(c["cell"]["dims"] for c in configs) == ["both", "both", "temporal", "temporal"]
