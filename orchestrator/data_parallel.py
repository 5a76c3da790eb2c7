"""One `fit` on several Ray Train workers: a trial or a base model that trains data-parallel.

Ray Train's `TorchTrainer` starts ``workers`` processes with a torch process group among them (gloo on
CPU, NCCL on GPU) and runs `_worker_loop` on each; `vared_core.engine.fit` sees the group and trains with
DDP (see `docs/distributed.md`). Every rank calls ``ray.train.report`` once per epoch (it is a barrier)
with the whole run's metrics (fit gathers them); only rank 0's report is kept. On the driver's side,
`_EpochLog` logs each epoch to the run's MLflow run and, inside a Tune trial, hands it on to Tune the
way Ray's `TuneReportCallback` does. Resumption is the engine's own: a retried or resumed trial starts
the trainer again and `fit` continues from the newest checkpoint in the run's folder (written by rank 0;
on a cluster the folder must be on storage every node mounts).

A scheduler's stop (ASHA) reaches the workers through `_TuneStop`: Tune stops a function trial by setting
its session's stop event, which only a ``tune.report`` in the trial's own thread would act on, and that
thread waits inside ``TorchTrainer.fit()``: left alone, the workers train on, their next reports fill the
one-item queue the stopped session no longer drains, and the trial's actor can neither end nor be reused.
So a watcher thread copies the event to a 0-CPU actor, rank 0 polls it through `fit`'s ``should_stop``,
every rank leaves at the same step, the Train run ends cleanly, and the trial thread raises ``SystemExit``
as Tune's own stop does in a one-worker trial. Tune sets the event when it stops the trial's actor, which it
does at once for data-parallel studies (`run._reuse_actors`).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train import FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from vared_core.engine import FitStopped, TrainConfig, fit

from .schema import Workers
from .tracking import TrialRun

__all__ = ["fit_on_workers"]


@ray.remote(num_cpus=0)
class _StopFlag:
    """Set once Tune has stopped the trial; read by rank 0 of the trial's Train run."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class _TuneStop:
    """While open, copies the Tune trial's stop event to `flag` (see the module doc); ``seen`` says whether
    Tune stopped the trial."""

    def __init__(self, poll_s: float = 0.2) -> None:
        from ray.train._internal.session import get_session  # the Tune trial's session, as TuneReportCallback

        self._event, self._poll_s = get_session().stop_event, poll_s
        self.flag = _StopFlag.remote()
        self.seen = False
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="tune-stop-watcher", daemon=True)

    def _watch(self) -> None:
        while not self._done.wait(self._poll_s):
            if self._event.is_set():
                self.seen = True
                ray.get(self.flag.set.remote())
                return

    def __enter__(self) -> _TuneStop:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._watcher.join()
        ray.kill(self.flag)


def _polling(flag: Any, every_s: float = 0.5) -> Callable[[], bool]:
    """`fit`'s ``should_stop`` on rank 0: asks ``flag`` at most every ``every_s`` (it is called every step)."""
    last, stopped = -every_s, False

    def should_stop() -> bool:
        nonlocal last, stopped
        now = time.monotonic()
        if not stopped and now - last >= every_s:
            stopped, last = ray.get(flag.is_set.remote()), now
        return stopped

    return should_stop


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """What each Train worker runs: `fit` in the worker group, reporting every epoch, leaving when the
    trial's stop flag is set; rank 0 also draws the final evaluation's policy plots into ``plots_dir``."""
    config: TrainConfig = loop_config["config"]
    rank = ray.train.get_context().get_world_rank()

    def report(epoch: int, metrics: dict[str, float], checkpoint: Path) -> None:
        ray.train.report({**metrics, "epoch": float(epoch), "checkpoint_dir": str(checkpoint)})

    flag = loop_config.get("stop_flag")
    should_stop = None if flag is None else _polling(flag) if rank == 0 else (lambda: False)  # every rank asks
    try:
        result = fit(config, on_epoch=report, should_stop=should_stop)
    except FitStopped:  # Tune stopped the trial: this Train run ends cleanly, the trial thread raises SystemExit
        return
    plots = loop_config.get("plots_dir")
    if plots and rank == 0 and result.evaluation is not None \
            and result.evaluation.layer_names:
        from .trainable import policy_plots  # trainable imports this module

        policy_plots(result.evaluation, Path(plots))


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _EpochLog(UserCallback):
    """Rank 0's report of each epoch → the MLflow run (a base model outside Tune)."""

    def __init__(self, run: TrialRun | None) -> None:
        self.run = run

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if self.run is not None:
            m = metrics[0]
            self.run.log_metrics(_numbers({k: v for k, v in m.items() if k != "epoch"}), int(m["epoch"]))


class _EpochLogAndReport(TuneReportCallback):
    """Rank 0's report of each epoch → the trial's MLflow run, then on to Tune (``extra`` added)."""

    def __init__(self, run: TrialRun, extra: dict[str, Any]) -> None:
        super().__init__()
        self.log, self.extra = _EpochLog(run), extra

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        self.log.after_report(run_context, metrics, checkpoint)
        super().after_report(run_context, [{**metrics[0], **self.extra}], checkpoint)


def fit_on_workers(config: TrainConfig, workers: Workers, *, name: str, storage: Path, run: TrialRun | None,
                   tune_metrics: dict[str, Any] | None = None, plots_dir: Path | None = None) -> None:
    """Train ``config`` on ``workers.workers`` Ray Train workers, continuing from the newest checkpoint in
    ``config.output_dir`` if there is one.

    Args:
        name: the Train run's name (its state under ``storage``).
        run: the MLflow run each epoch is logged to.
        tune_metrics: inside a Tune trial, the extra values of each report to Tune (e.g. the trial id);
            ``None`` outside Tune.
        plots_dir: where rank 0 draws the final evaluation's policy plots.

    Raises:
        ray.train.TrainingFailedError: a worker failed (its error inside); Tune's ``max_failures`` retries.
        SystemExit: inside Tune, the scheduler stopped the trial (the workers left at their next step).
    """
    in_tune = tune_metrics is not None
    with _TuneStop() if in_tune else nullcontext() as stop:
        _trainer(config, workers, name=name, storage=storage, plots_dir=plots_dir,
                 callback=_EpochLogAndReport(run, tune_metrics) if in_tune else _EpochLog(run),  # type: ignore[arg-type]
                 stop_flag=stop.flag if stop is not None else None).fit()  # fmt: skip
    if stop is not None and stop.seen:
        raise SystemExit(0)  # as Tune's own stop does in the trial's thread


def _trainer(config: TrainConfig, workers: Workers, *, name: str, storage: Path, plots_dir: Path | None,
             callback: UserCallback, stop_flag: Any) -> TorchTrainer:  # fmt: skip
    """The `TorchTrainer` of one data-parallel fit; ``stop_flag``, inside Tune, is read by rank 0 every step."""
    gpu = workers.gpu_per_worker > 0
    return TorchTrainer(
        _worker_loop,
        train_loop_config={"config": config.model_copy(update={"resume_from": "last"}),
                           "plots_dir": str(plots_dir) if plots_dir else None, "stop_flag": stop_flag},
        scaling_config=ScalingConfig(num_workers=workers.workers, use_gpu=gpu,
                                     resources_per_worker={"CPU": workers.cpu_per_worker,
                                                           **({"GPU": workers.gpu_per_worker} if gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        # a failed worker fails the run; Tune's retries (the study's max_failures) start it again
        run_config=RunConfig(name=name, storage_path=str(storage), failure_config=FailureConfig(max_failures=0),
                             callbacks=[callback]),
    )  # fmt: skip
