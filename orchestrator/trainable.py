"""What runs inside Ray: the Tune function of one trial (`run_trial`), and the task that trains a
shared base model (`train_base`).

A trial waits for its base model, turns its parameters into a `TrainConfig` (`Study.trial_config`), calls `vared_core.engine.fit`
and, after every epoch, reports metrics and the checkpoint to Tune and to its MLflow child run. A
retried or resumed trial continues from Tune's last checkpoint and logs into the same child run.

With ``resources.workers`` > 1 (``resources.base.workers`` for a base model) the fit runs data-parallel on
Ray Train workers (`data_parallel.fit_on_workers`); the trial keeps one MLflow run, rank 0's metrics are
reported, and a retry continues from the newest checkpoint in the trial's folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import ray
from mlflow.entities import RunStatus
from ray import tune

from vared_core.engine import data_lists, fit, latest_checkpoint, load_checkpoint, resolve_optim
from vared_core.engine.dotted import flatten_dotted
from vared_core.models import get_model_cfg

from .bases import base_folder, base_id, base_overrides
from .schema import Study, Workers
from .tracking import (BASE_DONE_FILE, ROLE_BASE, STOPPED_TAG, StudyTracker, TrialRun, axes_name, http_retry_env,
                       tracking_unreachable, trial_tags, unreachable_message)  # fmt: skip

__all__ = ["ATTEMPTS_TAG", "policy_plots", "run_trial", "train_base", "train_trial", "warm_up"]

_FAILED = RunStatus.to_string(RunStatus.FAILED)
ATTEMPTS_TAG = "attempts"  # a trial run's attempts: above 1 when Tune retried or resumed it
_KILLED = RunStatus.to_string(RunStatus.KILLED)


def warm_up() -> int:
    """A no-op task whose worker process has imported this module (torch, vared_core, mlflow, Tune) by
    the time it runs; returns the process id."""
    return os.getpid()


def _placement() -> dict[str, str]:
    """Tags saying where this process runs: the Ray node id and the host name."""
    return {"ray.node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}


def _open_run(run: TrialRun, study: Study, config: Any, params: dict[str, Any]) -> None:
    """What every base and trial run records before its fit: where it runs, its params, the data lists it
    reads (MLflow datasets; a synthetic set is written here if missing)."""
    run.set_tags(_placement())
    run.log_params(params)
    train_list, val_list = data_lists(config.data)
    run.log_datasets({"training": train_list, "validation": val_list}, root=config.data.root)


def _metrics_interval(study: Study) -> float | None:
    return study.tracking.system_metrics_interval if study.tracking.system_metrics else None


def train_base(study: Study, overrides: dict[str, Any], tracker: StudyTracker | None) -> str:
    """Train the base model with these grid ``overrides`` unless its folder (`bases.base_folder`) holds a
    finished one; return its checkpoint.

    Every study and trial asking for the same recipe shares that folder: on a cluster, put ``storage``
    on a shared file system.
    """
    os.environ.update(http_retry_env(study.tracking.outage_s))
    out = base_folder(study, overrides)
    marker = out / BASE_DONE_FILE
    if marker.exists():
        return json.loads(marker.read_text())["checkpoint"]
    config = study.base_config(out, overrides).model_copy(update={"resume_from": "last"})
    workers = study.resources.for_base()
    run = None
    if tracker is not None:
        run = tracker.trial_run(f"base-{out.name}", role=ROLE_BASE, name=f"base {out.name[:8]}")
        _open_run(run, study, config, {**flatten_dotted(config.to_dict()), **_resolved_params(config, workers)})
    monitor = run.system_metrics(_metrics_interval(study)) if run is not None else contextlib.nullcontext()
    try:
        t0 = time.perf_counter()
        with monitor:
            if workers.workers > 1:
                from .data_parallel import fit_on_workers

                fit_on_workers(config, workers, name=f"base-{out.name}", storage=Path(study.storage).absolute() / "ray",
                               run=run)  # fmt: skip
                checkpoint = latest_checkpoint(out)
                metrics = load_checkpoint(checkpoint)["metrics"]  # type: ignore[arg-type]
            else:
                result = fit(config, on_epoch=(lambda e, m, c: run.log_metrics(m, e)) if run else None)
                checkpoint, metrics = result.checkpoint, result.metrics
        if run is not None:
            run.log_metrics({"fit_time_s": time.perf_counter() - t0}, config.epochs)
            _tag_skipped(run, Path(checkpoint))
    except BaseException:
        if run is not None:
            run.end(_FAILED)
        raise
    marker.write_text(json.dumps({"checkpoint": str(checkpoint), "metrics": metrics}))
    if run is not None:
        run.end()
    return str(checkpoint)


#: metrics of the model a trial starts from, logged on the trial's run as ``start_<name>`` (the seed's Table 4.10:
#: before and after the L_e fine-tune)
START_METRICS = ("clip_top1", "video_top1", "video_top5", "gflops_avg", "gflops_max", "gflops_min")


def _resolved_params(config: Any, workers: Workers) -> dict[str, Any]:
    """The optimiser values the run really uses on its workers (the backbone's recipe, the batch split, the lr
    scaling), as ``resolved.*``."""
    r = resolve_optim(config, get_model_cfg(config.model), workers=workers.workers)
    return {f"resolved.{k}": v for k, v in r.to_dict().items()}


def _log_missing_epochs(run: Any, checkpoint: Path) -> None:
    """Log the epochs of ``checkpoint``'s history that ``run`` does not have yet, and tag where the attempt
    continues from (``resumed_from_epoch``)."""
    history = load_checkpoint(checkpoint).get("history", [])
    logged = run.logged_steps("loss")
    for metrics in history:
        if int(metrics["epoch"]) not in logged:
            run.log_metrics(metrics, int(metrics["epoch"]))
    run.set_tags({"resumed_from_epoch": str(len(history))})


def _start_metrics(base_checkpoint: Path) -> dict[str, float]:
    """The base model's final evaluation, as ``start_*`` metrics (empty if its last epoch was not evaluated)."""
    metrics = load_checkpoint(base_checkpoint).get("metrics", {})
    return {f"start_{k}": float(metrics[k]) for k in START_METRICS if k in metrics}


def policy_plots(evaluation: Any, folder: Path) -> Path:
    """The final evaluation's policy heatmaps (seed Figures 4-1, B-4, B-5) as PNGs in ``folder``."""
    from vared_core.analysis.plots import plot_feature_ratio, plot_policy_by_dimension

    folder.mkdir(parents=True, exist_ok=True)
    plot_feature_ratio(evaluation, folder / "feature_ratio.png")
    plot_policy_by_dimension(evaluation, folder / "policy_by_dimension.png")
    return folder


#: how long Tune, reusing this trial's actor for the next trial, waits for this trial's thread to exit (its
#: default, 2 s, is exceeded on a loaded machine; the next trial then errors before it starts); also how long
#: a stopped trial's actor waits for it before it ends (`WaitsForItsTrial`)
REUSE_WAIT_S = "120"


class WaitsForItsTrial:
    """A mixin for the class Tune makes of `run_trial` (pass it as the function's ``__mixins__``, which Tune's
    ``wrap_function`` puts before ``FunctionTrainable``): when Tune ends the trial's actor, it first waits for
    the trial's thread, as Tune does before reusing an actor (``REUSE_WAIT_S``).

    Tune's own end of a function trial sets the stop event and ends the actor at once. A data-parallel
    trial's thread then still has to stop its Ray Train run (`data_parallel`); ended under it, the Train
    controller dies without releasing its workers' placement group, whose CPUs or GPUs the next trials then
    wait for. Threads that have already ended (a finished trial) or that leave at their next report (a
    one-worker trial) cost nothing here.
    """

    def cleanup(self) -> None:
        from ray.train._internal.session import get_session  # the session Tune's FunctionTrainable uses

        try:
            get_session().finish(timeout=int(REUSE_WAIT_S))
        finally:
            super().cleanup()  # type: ignore[misc]


def run_trial(params: dict[str, Any], *, study: Study, bases: dict[str, Any], tracker: StudyTracker) -> None:
    """The Tune function: ``params`` is ``{"cell": grid cell, **sampled values}``; ``bases`` maps base ids
    (`bases.base_id`) to the ObjectRefs of the base tasks' checkpoint paths, waited for here, before any
    MLflow run is opened."""
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", REUSE_WAIT_S)  # read by Tune in this actor's process
    os.environ.update(http_retry_env(study.tracking.outage_s))
    sampled = {k: v for k, v in params.items() if k != "cell"}
    cell = params["cell"]
    base_checkpoint = ray.get(bases[base_id(study, base_overrides(study, cell))])
    train_trial(sampled, study=study, cell=cell, tracker=tracker, base_checkpoint=base_checkpoint)


def train_trial(params: dict[str, Any], *, study: Study, cell: dict[str, Any], base_checkpoint: str,
                tracker: StudyTracker) -> None:  # fmt: skip
    """One dynamic fine-tune of the cell's base model, reporting to Tune and to its MLflow run."""
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    axes, tags = trial_tags(study.name, cell, params)
    out = Path(study.storage).absolute() / "trials" / trial_id
    config = study.trial_config(axes, out, Path(base_checkpoint))
    run = tracker.trial_run(trial_id, name=axes_name(axes) or trial_id, tags=tags)
    workers = study.resources
    _open_run(run, study, config, {**{f"axis.{k}": v for k, v in axes.items()}, **flatten_dotted(config.to_dict()),
                                   **_resolved_params(config, workers)})  # fmt: skip

    # the attempt's number: a retry (its worker died) or a resume (the driver died) logs into the same run
    attempt = int(run.tags().get(ATTEMPTS_TAG, "0")) + 1
    run.set_tags({ATTEMPTS_TAG: str(attempt)})
    logged = run.logged_steps("loss") if attempt > 1 else set()  # epochs an earlier attempt logged already

    def report(epoch: int, metrics: dict[str, float], ckpt: Path) -> None:
        if epoch not in logged:  # re-run after a checkpoint older than the last logged epoch: logged once
            run.log_metrics(metrics, epoch)
        tune.report({**metrics, "trial_id": trial_id}, checkpoint=tune.Checkpoint.from_directory(str(ckpt)))

    status: str | None = _FAILED
    try:
        with run.system_metrics(_metrics_interval(study)):
            _fit_trial(config, run, report, study=study, workers=workers, trial_id=trial_id, out=out,
                       base_checkpoint=Path(base_checkpoint))  # fmt: skip
        status = RunStatus.to_string(RunStatus.FINISHED)
    except SystemExit:  # a scheduler (ASHA) stopped the trial
        status = _KILLED
        run.set_tags({STOPPED_TAG: "true"})
        raise
    except BaseException as e:
        if tracking_unreachable(e):  # every further call would wait out tracking.outage_s again: fail now
            status = None  # the driver ends the run FAILED with Tune's error once MLflow answers
            raise RuntimeError(unreachable_message(tracker.uri, study.tracking.outage_s)) from e
        run.set_tags({"error": f"{type(e).__name__}: {e}"[:5000]})
        if os.environ.get("VARED_TRACEBACKS"):
            traceback.print_exc()
        raise
    finally:
        if status is not None:
            run.end(status)


def _tag_skipped(run: TrialRun, checkpoint: Path) -> None:
    """Tag the run ``skipped_videos`` when its fit met listed videos it could not read (the per-epoch
    ``skipped_videos_*`` metrics say when)."""
    metrics = load_checkpoint(checkpoint).get("metrics", {})
    train, val = (int(metrics.get(f"skipped_videos_{k}", 0)) for k in ("train", "val"))
    if train or val:
        run.set_tags({"skipped_videos": f"{train} train, {val} val (missing or corrupt; see the run's log)"})


def _fit_trial(config: Any, run: TrialRun, report: Any, *, study: Study, workers: Workers, trial_id: str, out: Path,
               base_checkpoint: Path) -> Path:  # fmt: skip
    """The trial's fit (this attempt), its time, final checkpoint and evaluation plots logged; returns the
    final checkpoint."""
    t0 = time.perf_counter()
    if workers.workers > 1:  # Ray Train; a retry continues from the newest checkpoint in the trial's folder
        from .data_parallel import fit_on_workers

        newest = latest_checkpoint(out)
        if newest is None:  # a first attempt: where the fine-tune starts, at step 0
            run.log_metrics(_start_metrics(Path(base_checkpoint)), 0)
        else:  # a retry: epochs checkpointed but not yet logged (killed in between) are logged from the checkpoint
            _log_missing_epochs(run, newest)
        fit_on_workers(config, workers, name=f"trial-{trial_id}", storage=Path(study.storage).absolute() / "ray",
                       run=run, tune_metrics={"trial_id": trial_id}, plots_dir=out / "evaluation")  # fmt: skip
        final = latest_checkpoint(out)
    else:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:  # a retry or resume: continue from Tune's newest checkpoint
            with checkpoint.as_directory() as d:
                _log_missing_epochs(run, Path(d))
                result = fit(config.model_copy(update={"resume_from": Path(d)}), on_epoch=report)
        else:  # a first attempt: where the fine-tune starts, at step 0
            run.log_metrics(_start_metrics(Path(base_checkpoint)), 0)
            result = fit(config, on_epoch=report)
        final = result.checkpoint
        if result.evaluation is not None and result.evaluation.layer_names:
            policy_plots(result.evaluation, out / "evaluation")
    run.log_metrics({"fit_time_s": time.perf_counter() - t0}, config.epochs)  # of this attempt
    _tag_skipped(run, final)
    run.log_artifacts(final, "checkpoint")  # type: ignore[arg-type]
    if (out / "evaluation").is_dir():
        run.log_artifacts(out / "evaluation", "evaluation")
    return final
