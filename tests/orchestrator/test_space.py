"""`orchestrator.space`: a study's search in Optuna's and Tune's terms, and what it refuses."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from orchestrator.schema import Distribution
from orchestrator.validation import load_study
from orchestrator.space import distribution, sampler, scheduler, searcher


@pytest.mark.parametrize(("yaml_form", "expected"), [
    ({"uniform": [0.1, 0.9]}, optuna.distributions.FloatDistribution(0.1, 0.9)),
    ({"loguniform": [0.1, 4.0]}, optuna.distributions.FloatDistribution(0.1, 4.0, log=True)),
    ({"int": [2, 4]}, optuna.distributions.IntDistribution(2, 4)),
    ({"choice": ["temporal", "both"]}, optuna.distributions.CategoricalDistribution(["temporal", "both"])),
])  # fmt: skip
def test_each_distribution_kind_maps_to_its_optuna_distribution(yaml_form, expected) -> None:
    assert distribution("search.sample.x", Distribution.model_validate(yaml_form)) == expected


def test_an_unknown_kind_or_sampler_is_refused_in_a_sentence(tmp_path: Path, write_study) -> None:
    odd = Distribution.model_construct(kind="normal", args=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"search.sample.lambda_e: the distribution kind 'normal'"):
        distribution("search.sample.lambda_e", odd)
    study = load_study(write_study(tmp_path, "s", sample={"lambda_e": {"loguniform": [0.1, 4.0]}}, num_samples=2))
    cmaes = study.model_copy(update={"search": study.search.model_copy(update={"sampler": "cmaes"})})
    with pytest.raises(ValueError, match=r"search.sampler: 'cmaes' has no Optuna sampler"):
        sampler(cmaes, 0)


def test_the_searcher_is_multi_objective_and_seeded_per_cell(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "s", grid={"dims": ["temporal", "both"]},
                                   sample={"lambda_e": {"loguniform": [0.1, 4.0]}}, num_samples=2))  # fmt: skip
    search = searcher(study, 1)
    assert isinstance(search, OptunaSearch)
    assert search.metric == ["video_top1", "gflops_avg"] and search.mode == ["max", "min"]

    def first_draws(seed: int) -> list[float]:
        s = optuna.create_study(sampler=sampler(study, seed), directions=["maximize", "minimize"])
        space = {"lambda_e": distribution("lambda_e", study.search.sample["lambda_e"])}
        return [s.ask(space).params["lambda_e"] for _ in range(3)]

    assert first_draws(0) == first_draws(0) != first_draws(1)


def test_a_pure_grid_needs_no_searcher_and_no_scheduler_runs_without_asha(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "g", grid={"dims": ["both"]}))
    with pytest.raises(ValueError, match="search.sample is empty"):
        searcher(study, 0)
    assert scheduler(study) is None


def test_asha_compares_trials_by_epoch_on_the_single_objective(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "a", grid={"dims": ["both", "temporal"]},
                                   objectives={"video_top1": "max"}, reference={"video_top1": 0.0},
                                   scheduler={"asha": {"grace_period": 1, "reduction_factor": 2}}))  # fmt: skip
    asha = scheduler(study)
    assert isinstance(asha, ASHAScheduler)
    assert (asha.metric, asha._mode, asha._time_attr, asha._reduction_factor) == ("video_top1", "max", "epoch", 2)
