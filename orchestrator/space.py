"""A study's search, in the terms of Optuna and Ray Tune: distributions, sampler, searcher, scheduler.

Each function maps one validated part of a `Study` and refuses, in a sentence, what it cannot map (a
sampler or distribution kind this module does not know, a scheduler on a two-objective study), so a
schema that grows a value nobody translated fails here and not as a ``KeyError`` deep inside a run.

Example:
    >>> from orchestrator.schema import Distribution
    >>> distribution("search.sample.lambda_e", Distribution.model_validate({"loguniform": [0.1, 4.0]}))
    FloatDistribution(high=4.0, log=True, low=0.1, step=None)
"""
from __future__ import annotations

from typing import Any

import optuna

from .schema import Distribution, Study

__all__ = ["SAMPLERS", "distribution", "sampler", "scheduler", "searcher"]

#: ``search.sampler`` → the Optuna sampler class it names (``grid`` needs none: the cells are the trials)
SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "random": optuna.samplers.RandomSampler,
}


def distribution(where: str, dist: Distribution) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of one ``search.sample`` entry; ``where`` names it in the error."""
    low_high = dist.args
    if dist.kind == "uniform":
        return optuna.distributions.FloatDistribution(low_high[0], low_high[1])
    if dist.kind == "loguniform":
        return optuna.distributions.FloatDistribution(low_high[0], low_high[1], log=True)
    if dist.kind == "int":
        return optuna.distributions.IntDistribution(low_high[0], low_high[1])
    if dist.kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(dist.args))
    raise ValueError(f"{where}: the distribution kind {dist.kind!r} has no Optuna distribution "
                     "(uniform, loguniform, int or choice)")  # fmt: skip


def sampler(study: Study, seed: int) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler ``search.sampler`` names."""
    name = study.search.sampler
    if name not in SAMPLERS:
        choices = ", ".join(SAMPLERS)
        raise ValueError(f"search.sampler: {name!r} has no Optuna sampler here ({choices}; 'grid' samples nothing)")
    return SAMPLERS[name](seed=seed)


def searcher(study: Study, cell_index: int) -> Any:
    """The `OptunaSearch` of one grid cell: the study's sampled axes, its objectives (multi-objective
    with two), and the sampler seeded with ``search.seed + cell_index`` so cells do not all sample the
    same values."""
    from ray.tune.search.optuna import OptunaSearch

    if not study.search.sample:
        raise ValueError("search.sample is empty: a pure grid runs each cell once and needs no searcher")
    metrics, modes = study.objective_senses()
    space = {key: distribution(f"search.sample.{key}", d) for key, d in study.search.sample.items()}
    algo = sampler(study, study.search.seed + cell_index)
    if len(metrics) == 1:
        return OptunaSearch(space=space, metric=metrics[0], mode=modes[0], sampler=algo)
    return OptunaSearch(space=space, metric=metrics, mode=modes, sampler=algo)


def scheduler(study: Study) -> Any:
    """Tune's trial scheduler for ``scheduler:`` (``None``: every trial runs all its epochs)."""
    if study.scheduler is None or study.scheduler.asha is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    metrics, modes = study.objective_senses()
    if len(metrics) != 1:
        raise ValueError(f"scheduler.asha compares trials on one objective; this study has {len(metrics)} "
                         f"({', '.join(metrics)})")  # fmt: skip
    asha = study.scheduler.asha
    return ASHAScheduler(metric=metrics[0], mode=modes[0], time_attr="epoch", grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor, max_t=10**6)  # fmt: skip
