"""`run_study`: a validated study → base models → Ray Tune trials → MLflow runs → Pareto front.

1. The MLflow store, experiment and parent run are created here, in the driver, before any trial
   (several processes creating one SQLite store race in its migrations).
2. Every distinct base recipe is trained once, as a Ray task, into ``storage/bases/<hash>``; a
   finished one is reused (by later grid cells, later studies, a resumed study). Trials receive the
   tasks' ObjectRefs and wait for their base themselves, so when every base task fits on the
   cluster at once, Tune starts its trial actors while the bases train.
3. All trials run in one `Tuner` (one set of reused actors) through `CellSearch`: a pure grid gives
   each cell one trial; a grid with sampled axes gives every cell its own seeded `OptunaSearch`
   (multi-objective with two objectives) and ``num_samples`` trials.
4. The study's trials are read back from MLflow (the record that survives restarts), the front and
   its hypervolume computed, and logged to the parent run with a table, a PNG and an HTML scatter;
   front trials get the tag ``pareto=true``.

``resume=True`` restores the Tuner from its experiment folder (finished trials stay finished, an
interrupted one continues from its checkpoint under its own trial id) and reopens the same parent
run, so a study killed mid-run ends with every trial exactly once in MLflow. `CellSearch` reconciles
its quotas with the restored trial list, which a kill during Tune's background copy can leave out of
step with the searcher's saved state.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .pareto import Front, compute_front, format_front, plot_front_html, plot_front_png
from .schema import Study
from .tracking import BASE_DONE_FILE, ORPHANED_TAG, STOPPED_TAG, StudyTracker

__all__ = ["StudyResult", "StudyTrials", "run_study", "study_trials", "plan"]

_STATE = "study_state.json"
_EXPERIMENT = "trials"  # the Tune experiment folder under <storage>/ray


@dataclass
class StudyResult:
    """What a finished `run_study` produced."""

    study: Study
    tracker: StudyTracker
    front: Front
    trials: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    stopped: list[dict[str, Any]] = field(default_factory=list)


class StudyTrials(NamedTuple):
    """A study's trials as MLflow recorded them, one dict each (trial_id, run_id, metrics, params,
    status, error): ``done`` ran to the end, ``failed`` raised or were cut off, ``stopped`` were stopped
    early by the scheduler (ASHA) and are neither failures nor candidates for the front. Runs tagged
    orphaned (see `close_orphans`) are in none of the lists."""

    done: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    stopped: list[dict[str, Any]]


def _base_overrides(study: Study, cell: dict[str, Any]) -> dict[str, Any]:
    keys = study.base_keys()
    return {k: v for k, v in cell.items() if k in keys}


def _base_dir(study: Study, overrides: dict[str, Any]) -> Path:
    """Content address of a base recipe: the hash of its full config (output folder left out)."""
    root = Path(study.storage).absolute() / "bases"
    cfg = study.base_config(root / "_", overrides).to_dict()
    cfg.pop("output_dir", None)
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    return root / digest


def _num_trials(study: Study) -> int:
    return len(study.grid_cells()) * (study.search.num_samples if study.search.sample else 1)


def plan(study: Study) -> dict[str, Any]:
    """What a run would do: grid cells, base models (cached or to train), trials, where it logs."""
    cells = study.grid_cells()
    bases = {}
    for cell in cells:
        d = _base_dir(study, _base_overrides(study, cell))
        bases[str(d)] = (d / BASE_DONE_FILE).exists()
    return {
        "study": study.name, "cells": cells, "trials": _num_trials(study),
        "bases": [{"dir": d, "cached": c} for d, c in bases.items()],
        "tracking_uri": study.tracking_uri(), "experiment": study.experiment_name(),
        "storage": str(Path(study.storage).absolute()),
    }  # fmt: skip


def _searcher(study: Study, cell_index: int) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    metrics, modes = study.objective_senses()
    seed = study.search.seed + cell_index  # cells must not all sample the same values
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }[study.search.sampler]()
    space = {}
    for key, dist in study.search.sample.items():
        kind, args = dist.kind, dist.args
        if kind == "uniform":
            space[key] = optuna.distributions.FloatDistribution(args[0], args[1])
        elif kind == "loguniform":
            space[key] = optuna.distributions.FloatDistribution(args[0], args[1], log=True)
        elif kind == "int":
            space[key] = optuna.distributions.IntDistribution(args[0], args[1])
        else:
            space[key] = optuna.distributions.CategoricalDistribution(list(args))
    if len(metrics) == 1:
        return OptunaSearch(space=space, metric=metrics[0], mode=modes[0], sampler=sampler)
    return OptunaSearch(space=space, metric=metrics, mode=modes, sampler=sampler)


def _scheduler(study: Study) -> Any:
    if study.scheduler is None or study.scheduler.asha is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    metrics, modes = study.objective_senses()
    asha = study.scheduler.asha
    return ASHAScheduler(metric=metrics[0], mode=modes[0], time_attr="epoch", grace_period=asha.grace_period,
                         reduction_factor=asha.reduction_factor, max_t=10**6)  # fmt: skip


def _load_state(storage: Path) -> dict[str, Any]:
    p = storage / _STATE
    return json.loads(p.read_text()) if p.exists() else {}


def _save_state(storage: Path, state: dict[str, Any]) -> None:
    tmp = storage / f".{_STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, storage / _STATE)


def study_trials(tracker: StudyTracker) -> StudyTrials:
    """A study's trials as recorded in MLflow, finished, failed and stopped early (see `StudyTrials`)."""
    found = StudyTrials([], [], [])
    for run in tracker.child_runs():
        if run.data.tags.get(ORPHANED_TAG) == "true":
            continue
        row = {
            "trial_id": run.data.tags.get("trial_id", run.info.run_id), "run_id": run.info.run_id,
            "metrics": dict(run.data.metrics),
            "params": {k[5:]: v for k, v in run.data.params.items() if k.startswith("axis.")},
            "status": run.info.status, "error": run.data.tags.get("error"),
        }  # fmt: skip
        if run.info.status == "FINISHED":
            found.done.append(row)
        elif run.data.tags.get(STOPPED_TAG) == "true":
            found.stopped.append(row)
        else:
            found.failed.append(row)
    return found


def close_orphans(tracker: StudyTracker, experiment: Path) -> list[str]:
    """End the trial runs that Tune's finished experiment no longer lists, and return their run ids.

    A driver killed while Tune copied its state can lose a trial that had already opened its MLflow
    run; on resume `CellSearch` runs that trial again under a new id. The old run would stay RUNNING:
    it is ended KILLED and tagged ``orphaned=true`` (its metrics stay recorded), and `study_trials`
    leaves it out. A RUNNING run of a trial Tune does list (a crashed worker) is left as it is.
    """
    from .cell_search import saved_trials

    listed = saved_trials(experiment) or {}
    orphans = [r.info.run_id for r in tracker.child_runs()
               if r.info.status == "RUNNING" and r.data.tags.get("trial_id") not in listed]  # fmt: skip
    for run_id in orphans:
        tracker.client.set_tag(run_id, ORPHANED_TAG, "true")
        tracker.client.set_terminated(run_id, status="KILLED")
    return orphans


def _log_front(study: Study, tracker: StudyTracker, trials: list[dict[str, Any]]) -> Front:
    front = compute_front(trials, dict(study.objectives), study.reference)
    client = tracker.client
    pid = tracker.parent_run_id
    metrics = {"pareto_size": float(len(front.front)), "num_trials": float(len(trials))}
    if front.hypervolume is not None:
        metrics["hypervolume"] = float(front.hypervolume)
    for k, v in metrics.items():
        client.log_metric(pid, k, v)
    if front.front:
        client.log_table(pid, data=front.table(), artifact_file="pareto/front.json")
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "front_all.json").write_text(json.dumps(front.to_dict(), indent=2, default=str))
        if len(study.objectives) >= 2 and trials:
            plot_front_png({study.name: front}, Path(d) / "front.png")
            plot_front_html({study.name: front}, Path(d) / "front.html")
        client.log_artifacts(pid, d, "pareto")
    on_front = {p.trial_id for p in front.front}
    for t in trials:
        client.set_tag(t["run_id"], "pareto", "true" if t["trial_id"] in on_front else "false")
    return front


def run_study(study: Study, *, address: str | None = None, resume: bool = False, verbose: int = 1) -> StudyResult:
    """Run (or, with ``resume``, continue) a validated study; see the module doc."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")  # experiment state written at once: exact resume
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # that is wanted
    import ray
    from ray import tune

    from .progress import ProgressCallback
    from .cell_search import CellSearch, GridCell
    from .trainable import base_key, train_base, warm_up

    storage = Path(study.storage).absolute()
    storage.mkdir(parents=True, exist_ok=True)
    state = _load_state(storage) if resume else {}
    ray_address = address or os.environ.get("RAY_ADDRESS") or study.ray.address
    with ThreadPoolExecutor(1) as pool:  # MLflow's store is set up while Ray starts
        opening = pool.submit(StudyTracker.open, study.tracking_uri(), study.experiment_name(),
                              storage / "mlartifacts", study.name, parent_run_id=state.get("parent_run_id"))  # fmt: skip
        if not ray.is_initialized():
            # "local": a Ray of its own, never a cluster some other command left running on this machine
            ray.init(address=ray_address or "local", include_dashboard=False, log_to_driver=verbose > 1,
                     logging_level="ERROR", configure_logging=verbose > 1)  # fmt: skip
        # workers import torch, vared_core and mlflow meanwhile; the base tasks that follow reuse them
        warm = ray.remote(num_cpus=study.resources.cpu, num_gpus=study.resources.gpu)(warm_up)
        warming = [warm.remote() for _ in range(study.max_concurrent)]
        tracker = opening.result()
    _save_state(storage, {"parent_run_id": tracker.parent_run_id, "study": study.name})
    ray.get(warming)
    cells = study.grid_cells()
    metrics, modes = study.objective_senses()
    status = "FAILED"
    try:
        # 1. shared base models, each trained once (in parallel as Ray tasks)
        recipes = {base_key(o): o for o in (_base_overrides(study, cell) for cell in cells)}
        all_fit = _fit_at_once(ray.available_resources(), len(recipes), study.resources.cpu, study.resources.gpu)
        remote_base = ray.remote(num_cpus=study.resources.cpu, num_gpus=study.resources.gpu)(train_base)
        bases = {key: remote_base.remote(study, overrides, str(_base_dir(study, overrides)), tracker)
                 for key, overrides in recipes.items()}  # base key → ObjectRef of its checkpoint path
        if not all_fit:
            # trials wait in ray.get for their base while holding their resources: start them only once
            # no base still needs resources, or a base could wait behind the trials waiting for it
            ray.get(list(bases.values()))
        # else Tune starts (its actors import torch, mlflow, …) while the bases train beside it

        # 2. trials
        resources = {"cpu": study.resources.cpu, "gpu": study.resources.gpu}
        callbacks = [ProgressCallback(metrics, modes, total=_num_trials(study))] if verbose else []
        run_cfg = dict(storage_path=str(storage / "ray"), verbose=0, callbacks=callbacks,
                       failure_config=tune.FailureConfig(max_failures=study.max_failures),
                       checkpoint_config=tune.CheckpointConfig(num_to_keep=1))  # fmt: skip
        trainable = tune.with_resources(tune.with_parameters(_trial, study=study, bases=bases, tracker=tracker),
                                        resources)  # fmt: skip
        if study.search.sample:  # every cell's own seeded Optuna search, all in one experiment
            searchers, per_cell = [_searcher(study, i) for i in range(len(cells))], study.search.num_samples
        else:  # a pure grid: every cell one trial
            searchers, per_cell = [GridCell() for _ in cells], 1
        search_alg = CellSearch(searchers, cells, per_cell).search_alg()
        # num_samples=-1: the cells' quotas say when the study is done (Tune's own count can go stale on resume)
        tune_config = tune.TuneConfig(num_samples=-1, search_alg=search_alg, reuse_actors=True,
                                      max_concurrent_trials=study.max_concurrent, scheduler=_scheduler(study))
        path = storage / "ray" / _EXPERIMENT
        if resume and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=False)  # fmt: skip
        else:
            tuner = tune.Tuner(trainable, run_config=tune.RunConfig(name=_EXPERIMENT, **run_cfg),
                               tune_config=tune_config)  # fmt: skip
        tuner.fit()
        close_orphans(tracker, path)
        ray.get(list(bases.values()))  # a base that failed fails the study (its trials failed waiting for it)

        # 3. the front, from what MLflow recorded
        trials, failed, stopped = study_trials(tracker)
        front = _log_front(study, tracker, trials)
        status = "FINISHED"
        if verbose:
            print(format_front(front))
            if failed:
                print(f"{len(failed)} trial(s) failed:")
                for f in failed:
                    print(f"  {f['trial_id']}: {f['error'] or f['status']}")
            if stopped:
                print(f"{len(stopped)} trial(s) stopped early by the scheduler (not on the front)")
        return StudyResult(study=study, tracker=tracker, front=front, trials=trials, failed=failed, stopped=stopped)
    finally:
        tracker.set_status(status)


def _fit_at_once(available: dict[str, float], jobs: int, cpu: float, gpu: float) -> bool:
    """Whether ``jobs`` tasks of ``cpu`` CPUs and ``gpu`` GPUs each all fit in the ``available`` resources."""
    return jobs * cpu <= available.get("CPU", 0.0) and jobs * gpu <= available.get("GPU", 0.0)


def _trial(params: dict[str, Any], *, study: Study, bases: dict[str, Any], tracker: StudyTracker) -> None:
    """The Tune function: ``params`` is ``{"cell": grid cell, **sampled values}``; ``bases`` maps base
    keys to the ObjectRefs of the base tasks' checkpoint paths (waited for here, before any MLflow run)."""
    import ray

    from .trainable import base_key, train_trial

    sampled = {k: v for k, v in params.items() if k != "cell"}
    cell = params["cell"]
    base_checkpoint = ray.get(bases[base_key(_base_overrides(study, cell))])
    train_trial(sampled, study=study, cell=cell, tracker=tracker, base_checkpoint=base_checkpoint)
