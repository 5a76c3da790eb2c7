"""Trials and base models on two Ray Train workers (gloo, real local Ray): one MLflow run per trial, metrics
over the whole validation set, a base model that matches one process on the same global batch, a worker
killed mid-trial retried by Tune from the trial's checkpoint, a killed driver's 2-worker trial continued by
``--resume``, ASHA stopping 2-worker trials; and a study that asks for more than the cluster has refused
before anything runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.run import check_cluster, run_study
from orchestrator.validation import load_study
from vared_core.engine import evaluate, fit, load_checkpoint, load_model
from vared_core.engine.data import build_datasets
from vared_core.models import get_model_cfg

from .conftest import runs_with_role


def _two_worker_study(tmp_path: Path, write_study) -> Path:
    """X3D-M tiny without dropout (its training is well conditioned: see tests/vared_core/engine/
    test_distributed.py), a base on 2 workers × 2 clips = 4 per step, one 2-worker dynamic trial of 3 epochs
    that Tune may retry once."""
    return write_study(
        tmp_path, "dp",
        base={"model": "x3d_m_tiny", "dropout": 0.0, "epochs": 2, "threads": 1,
              "optim": {"lr": 0.05, "warmup_epochs": 0.5, "total_batch": 4}},
        trial={"epochs": 3, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1},
        resources={"workers": 2, "cpu_per_worker": 1, "gpu_per_worker": 0},
        max_concurrent=1, max_failures=1,
    )  # fmt: skip


@pytest.mark.slow
def test_a_two_worker_study_survives_a_killed_worker_with_one_run_scored_on_the_whole_validation_set(
    tmp_path: Path, write_study, local_ray
) -> None:
    """One study: a 2-worker base, then a 2-worker trial, one of whose Ray Train workers is killed (-9) once the
    trial has checkpointed epoch 1; Tune retries the trial from that checkpoint (one study, so one Ray Train
    start-up for each fit instead of two studies)."""
    study = load_study(_two_worker_study(tmp_path, write_study))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_after, args=(Path(study.storage), 1, killed), daemon=True)
    killer.start()
    result = run_study(study, verbose=0)
    killer.join(timeout=5)
    assert killed, "no Ray Train worker was found to kill"
    client = MlflowClient(study.tracking_uri())
    trials = result.tracker.child_runs()
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"  # one run, finished by the retry
    assert not result.failed
    run = trials[0]
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == [1, 2, 3]  # every epoch once: none lost with the worker, none logged twice
    assert int(run.data.tags["resumed_from_epoch"]) >= 1  # the retry continued from a checkpoint
    assert run.data.params["resolved.workers"] == "2" and run.data.params["resolved.total_batch"] == "4"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")} == {
        "evaluation/feature_ratio.png", "evaluation/policy_by_dimension.png"}

    # the trial's video_top1 and GFLOPs are those of its final model on every validation video
    trial_dir = Path(study.storage) / "trials" / run.data.tags["trial_id"]
    assert load_checkpoint(trial_dir / "checkpoints" / "epoch_0003")["recipe"]["workers"] == 2  # trained on both
    model, config = load_model(trial_dir / "checkpoints" / "epoch_0003")
    _, val_set = build_datasets(config.data, get_model_cfg(config.model), seed=config.seed)
    again = evaluate(model, val_set, batch_size=2)
    assert again.num_videos == len(val_set) > 1
    assert run.data.metrics["video_top1"] == pytest.approx(again.video_top1)
    assert run.data.metrics["gflops_avg"] == pytest.approx(again.gflops_avg, rel=1e-6)

    # the base model trained on 2 workers is the one process trains on the same 4 clips a step
    base_run = result.tracker.child_runs(role="base")[0]
    assert base_run.data.params["resolved.workers"] == "2"
    base_dir = next((Path(study.storage) / "bases").iterdir())
    one = fit(study.base_config(tmp_path / "one_process", {}).model_copy(
        update={"data": study.data.model_copy(update={"batch_size": 4})}))
    two = load_checkpoint(base_dir / "checkpoints" / "epoch_0002")["model"]
    for key, value in load_checkpoint(one.checkpoint)["model"].items():
        if value.is_floating_point():
            assert (value - two[key]).norm() <= 1e-4 * value.norm().clamp(min=1e-3), key


@pytest.mark.slow
def test_a_killed_driver_resumes_its_two_worker_trial_from_the_trial_checkpoint(tmp_path: Path, write_study) -> None:
    """kill -9 the driver's whole session (driver, local Ray, the trial's Ray Train workers) once the 2-worker
    trial has checkpointed an epoch: ``orchestrator run --resume`` continues it on two workers from its newest
    checkpoint, into its one MLflow run, every epoch logged once."""
    epochs = 4
    path = write_study(
        tmp_path, "dp_resume", grid={"dims": ["both"]}, max_concurrent=1,
        base={"model": "x3d_m_tiny", "dropout": 0.0, "epochs": 1, "threads": 1, "optim": {"lr": 0.05}},
        trial={"epochs": epochs, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1},
        resources={"workers": 2, "cpu_per_worker": 1, "gpu_per_worker": 0, "base": {"workers": 1}},
    )  # fmt: skip
    study = load_study(path)
    storage = Path(study.storage)
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    console = tmp_path / "console.txt"
    driver = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=console.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 400
        while not list(storage.glob("trials/*/checkpoints/epoch_0001")):
            assert driver.poll() is None, console.read_text()[-3000:]
            assert time.monotonic() < deadline, "the trial did not checkpoint an epoch in time"
            time.sleep(0.2)
        assert len(_train_workers()) == 2, "the trial is not training on two Ray Train workers"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    for pid in _train_workers():  # whatever outlived the session must not train on beside the resumed study
        os.kill(pid, signal.SIGKILL)
    checkpointed = len(list(storage.glob("trials/*/checkpoints/epoch_*")))
    assert checkpointed < epochs

    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(study.tracking_uri())
    (run,) = runs_with_role(client, "trial")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, epochs + 1)) and run.info.status == "FINISHED", steps
    assert 1 <= int(run.data.tags["resumed_from_epoch"]) <= checkpointed  # continued, not started over
    assert run.data.tags["attempts"] == "2" and run.data.params["resolved.workers"] == "2"
    trial_dir = storage / "trials" / run.data.tags["trial_id"]
    assert load_checkpoint(trial_dir / "checkpoints" / f"epoch_{epochs:04d}")["recipe"]["workers"] == 2


@pytest.mark.slow
def test_asha_stops_two_worker_trials_which_end_killed_and_let_the_next_trial_start(tmp_path: Path, write_study,
                                                                                    local_ray) -> None:  # fmt: skip
    """ASHA (grace 1, ×2) over 2-worker trials one at a time in order of growing λ_e, objective the training
    loss: the first runs its 3 epochs, the others lose at their first rung. Tune's stop must reach the Ray Train
    workers: a stopped trial ends KILLED and tagged, with the epochs it ran, not failed, and the trial after it
    starts on the reused Tune actor (before, the stopped trial's workers trained on, it was recorded failed and
    the next trial could not start)."""
    path = write_study(
        tmp_path, "dp_asha", grid={"lambda_e": [0.0, 8.0, 32.0]}, max_concurrent=1,
        objectives={"loss": "min"}, reference={"loss": 100.0},
        scheduler={"asha": {"grace_period": 1, "reduction_factor": 2}},
        base={"model": "x3d_m_tiny", "dropout": 0.0, "epochs": 1, "threads": 1, "optim": {"lr": 0.05}},
        trial={"epochs": 3, "dynamic": {"search_space": 2}, "threads": 1},
        resources={"workers": 2, "cpu_per_worker": 1, "gpu_per_worker": 0, "base": {"workers": 1}},
    )  # fmt: skip
    result = run_study(load_study(path), verbose=0)
    client = MlflowClient(result.study.tracking_uri())
    runs = {float(r.data.params["axis.lambda_e"]): r for r in result.tracker.child_runs()}
    assert sorted(runs) == [0.0, 8.0, 32.0]  # every trial once
    epochs = {lam: [m.step for m in client.get_metric_history(r.info.run_id, "loss")] for lam, r in runs.items()}
    status = {lam: (r.info.status, epochs[lam]) for lam, r in runs.items()}
    assert not result.failed, status
    assert runs[0.0].info.status == "FINISHED" and epochs[0.0] == [1, 2, 3], status
    stopped = [lam for lam in (8.0, 32.0) if runs[lam].info.status == "KILLED"]
    assert stopped and all(runs[lam].info.status in ("KILLED", "FINISHED") for lam in (8.0, 32.0)), status
    for lam in stopped:
        assert epochs[lam] and epochs[lam][-1] < 3 and runs[lam].data.tags["stopped_early"] == "true", status
        assert runs[lam].data.params["resolved.workers"] == "2"
    assert {t["trial_id"] for t in result.stopped} == {runs[lam].data.tags["trial_id"] for lam in stopped}


def test_a_study_asking_for_more_than_the_cluster_is_refused_with_the_numbers(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "big", resources={"workers": 2, "cpu_per_worker": 1,
                                                              "base": {"workers": 8, "cpu_per_worker": 1, "gpu_per_worker": 1}}))
    check_cluster(load_study(write_study(tmp_path, "fits", resources={"workers": 2, "cpu_per_worker": 1})),
                  {"CPU": 2.0})  # fmt: skip
    with pytest.raises(ValueError, match=r"big.yaml: resources.base: 8 worker\(s\) × 1 CPU = 8 CPU, but the Ray "
                                         r"cluster has 2 CPU"):
        check_cluster(study, {"CPU": 2.0})
    with pytest.raises(ValueError, match=r"resources.base: 8 worker\(s\) × 1 GPU = 8 GPU, but the Ray cluster has 0 GPU"):
        check_cluster(study, {"CPU": 16.0})


def _train_workers() -> list[int]:
    """Process ids of the Ray Train worker actors running now."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if "RayTrainWorker" in line]


def _kill_a_worker_after(storage: Path, epoch: int, killed: list[int], timeout: float = 600) -> None:
    """Once some trial has checkpointed ``epoch``, kill -9 one of its Ray Train workers (mid-epoch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not killed:
        if list(storage.glob(f"trials/*/checkpoints/epoch_{epoch:04d}")) and (pids := _train_workers()):
            os.kill(max(pids), signal.SIGKILL)
            killed.append(max(pids))
        time.sleep(0.2)
