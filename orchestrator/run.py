"""`run_study`: a validated study → base models → Ray Tune trials → MLflow runs → Pareto front.

1. The MLflow store, experiment and parent run are created here, in the driver, before any trial
   (several processes creating one SQLite store race in its migrations).
2. Every distinct base recipe is trained once, as a Ray task, into ``storage/bases/<id>`` (`bases`); a
   finished one is reused (by later grid cells, later studies, a resumed study). Trials receive the
   tasks' ObjectRefs and wait for their base themselves, so when every base task fits on the
   cluster at once, Tune starts its trial actors while the bases train.
3. All trials run in one `Tuner` (one set of reused actors) through `CellSearch`: a pure grid gives
   each cell one trial; a grid with sampled axes gives every cell its own seeded `OptunaSearch`
   (multi-objective with two objectives) and ``num_samples`` trials.
4. The study's trials are read back from MLflow (the record that survives restarts), the front and
   its hypervolume computed, and logged to the parent run with a table, a PNG and an HTML scatter;
   front trials get the tag ``pareto=true`` and their models are registered with the aliases
   ``front-0`` … ``front-k`` (`models.register_front`).

The parent run carries the study: its description, the resolved file as ``study.yaml``, its fixed
settings as params (`tracking.describe_study`).

``resume=True`` restores the Tuner from its experiment folder (finished trials stay finished, an
interrupted one continues from its checkpoint under its own trial id) and reopens the same parent
run, so a study killed mid-run ends with every trial exactly once in MLflow. `CellSearch` reconciles
its quotas with the restored trial list, which a kill during Tune's background copy can leave out of
step with the searcher's saved state.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bases import base_folder, base_id, base_overrides, is_trained
from .console import quiet_libraries, scoped_environment
from .models import register_front
from .pareto import Front, format_front
from .preflight import check_checkpoints, check_storage
from .schema import Study, Workers
from .study_lock import StudyLock
from .tracking import (StudyTracker, close_orphans, close_stopped, describe_study, http_retry_env, load_study_state,
                       log_front, record_errors, save_study_state, study_trials, tracking_unreachable)  # fmt: skip

__all__ = ["StudyResult", "check_cluster", "cluster_shape", "plan", "run_study"]

_EXPERIMENT = "trials"  # the Tune experiment folder under <storage>/ray

#: Tune settings read from the environment by the driver while `Tuner.fit` runs: write the experiment
#: state after every trial event (an exact resume), and do not warn that doing so takes time
_TUNE_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "0", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def _tune_env(study: Study) -> dict[str, str]:
    """`_TUNE_ENV` and how many trials Tune may hold pending (created, actor not yet started): the study's
    ``max_concurrent``. Tune's own default for a searcher it does not know to limit concurrency is one, so it
    asked `CellSearch` for the next trial only once the last one's actor had started (imported torch, vared_core
    and MLflow): trials started one after another, some seconds apart, however many fit at once."""
    return {**_TUNE_ENV, "TUNE_MAX_PENDING_TRIALS_PG": str(study.max_concurrent)}


@dataclass
class StudyResult:
    """What a finished `run_study` produced."""

    study: Study
    tracker: StudyTracker
    front: Front
    trials: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    stopped: list[dict[str, Any]] = field(default_factory=list)


def _num_trials(study: Study) -> int:
    return len(study.grid_cells()) * (study.search.num_samples if study.search.sample else 1)


def plan(study: Study) -> dict[str, Any]:
    """What a run would do: grid cells, base models (cached or to train), trials, where it logs."""
    cells = study.grid_cells()
    folders = dict.fromkeys(str(base_folder(study, base_overrides(study, cell))) for cell in cells)
    return {
        "study": study.name, "cells": cells, "trials": _num_trials(study),
        "bases": [{"dir": d, "cached": is_trained(Path(d))} for d in folders],
        "tracking_uri": study.tracking_uri(), "experiment": study.experiment_name(),
        "storage": str(Path(study.storage).absolute()),
    }  # fmt: skip


def run_study(study: Study, *, address: str | None = None, resume: bool = False, verbose: int = 1) -> StudyResult:
    """Run (or, with ``resume``, continue) a validated study; see the module doc. ``verbose``: 0 prints
    nothing, 1 a line per finished trial and the front, 2 also the libraries' own logs (`quiet_libraries`)."""
    with quiet_libraries(verbose):
        return _run_study(study, address=address, resume=resume, verbose=verbose)


def _run_study(study: Study, *, address: str | None, resume: bool, verbose: int) -> StudyResult:
    storage = check_storage(study.storage, study.min_free_gb)
    lock = StudyLock.acquire(storage, study.name, resume=resume)  # one driver per study, before anything runs
    try:
        if verbose and lock.took_over:
            print(lock.describe_takeover())
        check_checkpoints(storage, resume=resume, experiment=_EXPERIMENT)
    except BaseException:
        lock.give_back()  # nothing ran: the storage is left as it was found
        raise
    finished = False
    try:
        with scoped_environment(http_retry_env(study.tracking.outage_s), override=True):
            result = _run_locked(study, storage, address=address, resume=resume, verbose=verbose)
        finished = True
        return result
    finally:  # interrupted or failed: the record stays, so a plain run points at --resume
        lock.release(keep_record=not finished)


def _reuse_actors(study: Study) -> bool:
    """Whether Tune reuses a finished trial's actor for the next trial: for one-worker trials only. Tune keeps
    the actor of a trial the scheduler stopped and tells the trial only when the next trial takes the actor
    over; a one-worker trial waits meanwhile in its next report, but a data-parallel trial's Ray Train workers
    would train on, and their reports, which the stopped trial no longer passes on, would block it. Not
    reused, the stopped trial is told at once, and its actor waits for it to stop its workers
    (`trainable.WaitsForItsTrial`)."""
    return study.resources.workers == 1


def _run_locked(study: Study, storage: Path, *, address: str | None, resume: bool, verbose: int) -> StudyResult:
    import ray
    from ray import tune

    from .cell_search import CellSearch, GridCell, errored_trials, saved_trials, terminated_trials
    from .progress import ProgressCallback
    from .stopped_runs import CloseStoppedRuns
    from .space import scheduler, searcher
    from .trainable import WaitsForItsTrial, run_trial, train_base, warm_up

    state = load_study_state(storage) if resume else {}
    ray_address = address or os.environ.get("RAY_ADDRESS") or study.ray.address
    with ThreadPoolExecutor(1) as pool:  # MLflow's store is set up while Ray starts
        opening = pool.submit(StudyTracker.open, study.tracking_uri(), study.experiment_name(),
                              storage / "mlartifacts", study.name, parent_run_id=state.get("parent_run_id"))  # fmt: skip
        if not ray.is_initialized():
            # "local": a Ray of its own, never a cluster some other command left running on this machine
            ray.init(address=ray_address or "local", include_dashboard=False, log_to_driver=verbose > 1,
                     logging_level="ERROR", configure_logging=verbose > 1)  # fmt: skip
        check_cluster(study, ray.cluster_resources())
        cells = study.grid_cells()
        recipes = {base_id(study, o): o for o in (base_overrides(study, cell) for cell in cells)}
        base_workers = study.resources.for_base()
        # workers import torch, vared_core and mlflow meanwhile; the base tasks that follow reuse them (Tune's
        # trial actors start processes of their own: a worker warmed beyond the base tasks imports for nothing)
        warm = ray.remote(**_task_resources(base_workers))(warm_up)
        warming = [warm.remote() for _ in range(min(len(recipes), study.max_concurrent))]
        tracker = opening.result()
        describe_study(tracker, study)
    save_study_state(storage, {"parent_run_id": tracker.parent_run_id, "study": study.name})
    ray.get(warming)
    metrics, modes = study.objective_senses()
    status: str | None = "FAILED"
    try:
        # 1. shared base models, each trained once (in parallel as Ray tasks)
        all_fit = _fit_at_once(ray.available_resources(), len(recipes), base_workers.cpu, base_workers.gpu)
        remote_base = ray.remote(**_task_resources(base_workers))(train_base)
        bases = {key: remote_base.remote(study, overrides, tracker)
                 for key, overrides in recipes.items()}  # base id → ObjectRef of its checkpoint path
        if not all_fit:
            # trials wait in ray.get for their base while holding their resources: start them only once
            # no base still needs resources, or a base could wait behind the trials waiting for it
            ray.get(list(bases.values()))
        # else Tune starts (its actors import torch, mlflow, …) while the bases train beside it

        # 2. trials
        resources = _trial_resources(study.resources)
        callbacks = [ProgressCallback(metrics, modes, total=_num_trials(study))] if verbose else []
        run_cfg = dict(storage_path=str(storage / "ray"), verbose=0, callbacks=callbacks,
                       failure_config=tune.FailureConfig(max_failures=study.max_failures),
                       checkpoint_config=tune.CheckpointConfig(num_to_keep=1))  # fmt: skip
        trial_fn = tune.with_parameters(run_trial, study=study, bases=bases, tracker=tracker)
        trial_fn.__mixins__ = (WaitsForItsTrial,)  # type: ignore[attr-defined]
        trainable = tune.with_resources(trial_fn, resources)
        if study.search.sample:  # every cell's own seeded Optuna search, all in one experiment
            searchers, per_cell = [searcher(study, i) for i in range(len(cells))], study.search.num_samples
        else:  # a pure grid: every cell one trial
            searchers, per_cell = [GridCell() for _ in cells], 1
        cell_search = CellSearch(searchers, cells, per_cell, max_concurrent=study.max_concurrent)
        run_cfg["callbacks"] = [*callbacks, cell_search.callback(), CloseStoppedRuns(tracker)]
        # num_samples=-1: the cells' quotas say when the study is done (Tune's own count can go stale on resume)
        tune_config = tune.TuneConfig(num_samples=-1, search_alg=cell_search.search_alg(),
                                      reuse_actors=_reuse_actors(study),
                                      scheduler=scheduler(study))  # max_concurrent: in search_alg
        path = storage / "ray" / _EXPERIMENT
        if resume and tune.Tuner.can_restore(str(path)):
            # errored trials too (e.g. the tracking server was away longer than tracking.outage_s): each goes on
            # from its last checkpoint into its one run
            tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True,
                                       restart_errored=False)  # fmt: skip
        else:
            tuner = tune.Tuner(trainable, run_config=tune.RunConfig(name=_EXPERIMENT, **run_cfg),
                               tune_config=tune_config)  # fmt: skip
        with scoped_environment(_tune_env(study)):
            tuner.fit()
        close_orphans(tracker, set(saved_trials(path) or {}))
        close_stopped(tracker, terminated_trials(path))
        record_errors(tracker, study.name, errored_trials(path))
        ray.get(list(bases.values()))  # a base that failed fails the study (its trials failed waiting for it)

        # 3. the front, from what MLflow recorded
        trials, failed, stopped = study_trials(tracker)
        front = log_front(study, tracker, trials)
        models = register_front(study, tracker, front, trials) if study.tracking.register_models else []
        status = "FINISHED"
        if verbose:
            print(format_front(front))
            if models:
                print(f"registered as MLflow model {study.model_name()!r}: " +
                      ", ".join(f"{m.aliases[0] if m.aliases else 'v' + m.version} (v{m.version})" for m in models))
            if failed:
                print(f"{len(failed)} trial(s) failed:")
                for f in failed:
                    print(f"  {f['trial_id']}: {f['error'] or f['status']}")
                print(f"each goes on from its last checkpoint with: orchestrator run {study.source or '<study>'} --resume")
            if stopped:
                print(f"{len(stopped)} trial(s) stopped early by the scheduler (not on the front)")
        return StudyResult(study=study, tracker=tracker, front=front, trials=trials, failed=failed, stopped=stopped)
    except BaseException as e:
        if tracking_unreachable(e):  # ending the parent run would wait out tracking.outage_s again
            status = None
        raise
    finally:
        if status is not None:
            tracker.set_status(status)


def _task_resources(workers: Workers) -> dict[str, float]:
    """What the Ray task or Tune trial of a run holds: its one worker's share, or for several workers
    nothing (it only coordinates: Ray Train reserves the workers' own resources)."""
    if workers.workers > 1:
        return {"num_cpus": 0, "num_gpus": 0}
    return {"num_cpus": workers.cpu_per_worker, "num_gpus": workers.gpu_per_worker}


def _trial_resources(workers: Workers) -> Any:
    """What Tune reserves for one trial: its one worker's share; for several workers (Ray Train reserves
    theirs) a token bundle of 1 MiB of memory, as Tune needs a non-empty one and a CPU share would keep the
    workers from fitting where they exactly fill the cluster."""
    from ray.tune import PlacementGroupFactory

    if workers.workers > 1:
        return PlacementGroupFactory([{"memory": float(2**20)}])
    return {"cpu": workers.cpu_per_worker, "gpu": workers.gpu_per_worker}


def check_cluster(study: Study, cluster: dict[str, float], cluster_name: str = "the Ray cluster") -> None:
    """Refuse, before anything runs, a study whose trial or base model needs more CPUs or GPUs than the whole
    cluster has (``ray.cluster_resources()``, or `cluster_shape`), with the numbers and the field to change.

    Raises:
        ValueError: naming the study file, the field, what it needs and what ``cluster_name`` has.
    """
    where = str(study.source) if study.source is not None else study.name
    for name, w in (("resources", study.resources), ("resources.base", study.resources.for_base())):
        for kind, need, per in (("CPU", w.cpu, w.cpu_per_worker), ("GPU", w.gpu, w.gpu_per_worker)):
            have = cluster.get(kind, 0.0)
            if need > have:
                raise ValueError(f"{where}: {name}: {w.workers} worker(s) × {per:g} {kind} = {need:g} {kind}, but "
                                 f"{cluster_name} has {have:g} {kind}; lower {name}.workers or "
                                 f"{name}.{kind.lower()}_per_worker, or add nodes")  # fmt: skip


def cluster_shape(address: str | None) -> tuple[dict[str, float], str]:
    """The CPUs and GPUs a study would run on, and how to name them: the Ray cluster at ``address`` (joined
    for a moment, as a driver), or with no address the local Ray `run_study` would start on this machine
    (its CPUs and CUDA devices, counted without starting Ray)."""
    if address:
        import ray

        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            return dict(ray.cluster_resources()), f"the Ray cluster at {address}"
        finally:
            ray.shutdown()
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"CPU": float(cpus), "GPU": float(torch.cuda.device_count())}, "a local Ray on this machine"


def _fit_at_once(available: dict[str, float], jobs: int, cpu: float, gpu: float) -> bool:
    """Whether ``jobs`` tasks of ``cpu`` CPUs and ``gpu`` GPUs each all fit in the ``available`` resources."""
    return jobs * cpu <= available.get("CPU", 0.0) and jobs * gpu <= available.get("GPU", 0.0)

