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


def test_max_concurrent_holds_suggestions_until_a_trial_completes_and_counts_restored_running_trials() -> None:
    cells = [{"dims": "temporal"}, {"dims": "both"}]
    search = CellSearch([_optuna(0), _optuna(1)], cells, num_samples=2, max_concurrent=2)
    first = [search.suggest("t0"), search.suggest("t1")]
    assert all(isinstance(g, dict) for g in first)
    assert search.suggest("t2") is None  # two running: wait (None), not FINISHED
    search.on_trial_complete("t0", {"video_top1": 50.0})
    assert isinstance(search.suggest("t2"), dict) and search.suggest("t3") is None
    # a resume: Tune restored t1 and t2 as still running, t0 finished; only one more may start once one ends
    search.reconcile({"t0": first[0], "t1": first[1], "t2": {"cell": cells[0]}}, unfinished={"t1", "t2"})
    assert search.live == {"t1", "t2"} and search.suggest("t4") is None
    search.on_trial_complete("t2", {"video_top1": 40.0})
    last = search.suggest("t4")
    assert last["cell"] == {"dims": "both"} and search.live == {"t1", "t4"}
    assert search.suggest("t5") == Searcher.FINISHED  # every cell's quota spent: done, however many run


def test_a_trial_tune_ended_without_telling_the_searcher_frees_its_place_and_fails_in_its_sampler() -> None:
    cells = [{"dims": "temporal"}, {"dims": "both"}]
    search = CellSearch([_optuna(0), _optuna(1)], cells, num_samples=2, max_concurrent=1)
    assert isinstance(search.suggest("t0"), dict) and search.suggest("t1") is None
    assert search.sync_ended({"t9": False}) == [] and search.suggest("t1") is None  # not one of its live trials
    assert search.sync_ended({"t0": True}) == ["t0"] and search.live == set()
    assert [t.state for t in search.searchers[0]._ot_study.trials] == [optuna.trial.TrialState.FAIL]
    assert search.suggest("t1")["cell"] == {"dims": "both"}
    search.on_trial_complete("t1", {"video_top1": 50.0})  # Tune told it: nothing left to sync
    assert search.sync_ended({"t0": True, "t1": False}) == []


def _no_op(config: dict) -> dict:
    return {"video_top1": config["lambda_e"]}


@pytest.mark.slow
def test_resume_runs_a_trial_the_saved_trial_list_lost(tmp_path: Path, local_ray) -> None:
    """A torn experiment-state copy, made by hand: the searcher's saved state holds a suggestion the saved
    trial list lacks. On resume that trial is owed again and every cell still ends with its samples."""
    from ray import tune

    cells = [{"dims": "temporal"}, {"dims": "both"}]

    def tuner() -> tune.Tuner:
        search = CellSearch([_optuna(0), _optuna(1)], cells, 2, max_concurrent=1)
        config = tune.TuneConfig(num_samples=-1, search_alg=search.search_alg())
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
