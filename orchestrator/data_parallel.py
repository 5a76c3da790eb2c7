"""One `fit` on several Ray Train workers: a trial or a base model that trains data-parallel.

Ray Train's `TorchTrainer` starts ``workers`` processes with a torch process group among them (gloo on
CPU, NCCL on GPU) and runs `_worker_loop` on each; `vared_core.engine.fit` sees the group and trains with
DDP (see `docs/distributed.md`). Every rank calls ``ray.train.report`` once per epoch (it is a barrier)
with the whole run's metrics (fit gathers them); only rank 0's report is kept. On the driver's side,
`_EpochLog` logs each epoch to the run's MLflow run and, inside a Tune trial, hands it on to Tune the
way Ray's `TuneReportCallback` does. Resumption is the engine's own: a retried or resumed trial starts
the trainer again and `fit` continues from the newest checkpoint in the run's folder (written by rank 0;
on a cluster the folder must be on storage every node mounts).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ray.train
from ray.train import FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from vared_core.engine import TrainConfig, fit

from .schema import Workers
from .tracking import TrialRun

__all__ = ["fit_on_workers"]


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """What each Train worker runs: `fit` in the worker group, reporting every epoch; rank 0 also draws
    the final evaluation's policy plots into ``plots_dir``."""
    config: TrainConfig = loop_config["config"]

    def report(epoch: int, metrics: dict[str, float], checkpoint: Path) -> None:
        ray.train.report({**metrics, "epoch": float(epoch), "checkpoint_dir": str(checkpoint)})

    result = fit(config, on_epoch=report)
    plots = loop_config.get("plots_dir")
    if plots and ray.train.get_context().get_world_rank() == 0 and result.evaluation is not None \
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
    """
    callback = _EpochLog(run) if tune_metrics is None else _EpochLogAndReport(run, tune_metrics)  # type: ignore[arg-type]
    gpu = workers.gpu_per_worker > 0
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": config.model_copy(update={"resume_from": "last"}),
                           "plots_dir": str(plots_dir) if plots_dir else None},
        scaling_config=ScalingConfig(num_workers=workers.workers, use_gpu=gpu,
                                     resources_per_worker={"CPU": workers.cpu_per_worker,
                                                           **({"GPU": workers.gpu_per_worker} if gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        # a failed worker fails the run; Tune's retries (the study's max_failures) start it again
        run_config=RunConfig(name=name, storage_path=str(storage), failure_config=FailureConfig(max_failures=0),
                             callbacks=[callback]),
    )  # fmt: skip
    trainer.fit()
