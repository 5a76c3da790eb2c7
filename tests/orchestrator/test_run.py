"""Studies end to end on a real local Ray and a real MLflow SQLite store."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cell_search import saved_trials
from orchestrator.models import front_models, register_front, trade_off_order
from orchestrator.preflight import resume_checkpoints
from orchestrator.run import plan, run_study
from orchestrator.tracking import axes_name, close_orphans, study_trials
from orchestrator.validation import load_study
from vared_core.engine import data_lists

from .conftest import runs_with_role

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: what Ray, Tune, Optuna and MLflow print of their own on a study run (hidden unless -v)
BANNERS = ("Token authentication", "A new study created", "Configuration for experiment", "View detailed results",
           "TensorBoard", "MLflow database tables", "max_concurrent_trials", "Number of trials")


def _children(result) -> list:
    return result.tracker.child_runs()


def test_study_runs_and_logs_trials_front_and_artifacts(tmp_path: Path, write_study, local_ray) -> None:
    path = write_study(tmp_path, "e2e", grid={"dims": ["temporal", "both"]}, description="λ_e against dims",
                       sample={"lambda_e": {"loguniform": [0.1, 4.0]}}, num_samples=2,
                       tracking={"system_metrics": True, "system_metrics_interval": 1})  # fmt: skip
    study = load_study(path, {"trial.epochs": 2})  # an override, as --set gives: it is in the logged study file
    before = plan(study)
    assert before["trials"] == 4 and [b["cached"] for b in before["bases"]] == [False]
    result = run_study(study, verbose=0)
    assert [b["cached"] for b in plan(study)["bases"]] == [True]  # the finished base is reused from now on
    client = MlflowClient(study.tracking_uri())
    trials = _children(result)
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    assert len(result.tracker.child_runs(role="base")) == 1  # both cells share one base model
    for run in trials:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
        assert {"video_top1", "gflops_avg", "clip_top1"} <= set(run.data.metrics)
        assert {"axis.dims", "axis.lambda_e", "model", "dynamic.search_space"} <= set(run.data.params)
        arts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
        assert "checkpoint/checkpoint.pt" in arts
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
        assert plots == {"evaluation/feature_ratio.png", "evaluation/policy_by_dimension.png"}
        assert run.data.tags["study"] == "e2e" and run.data.tags["pareto"] in ("true", "false")
    # the same λ_e values are not drawn in both cells
    lambdas = [r.data.params["axis.lambda_e"] for r in trials]
    assert len(set(lambdas)) == 4
    parent = client.get_run(result.tracker.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["pareto_size"] == len(result.front.front) >= 1
    assert parent.data.metrics["hypervolume"] > 0
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "pareto")}
    assert {"pareto/front.png", "pareto/front.html", "pareto/front.json"} <= names
    assert sum(r.data.tags["pareto"] == "true" for r in trials) == len(result.front.front)

    # the parent run carries the study: description, the resolved file (loads back as the same study), settings
    assert parent.data.tags["mlflow.note.content"] == "λ_e against dims"
    logged = Path(client.download_artifacts(parent.info.run_id, "study.yaml", str(tmp_path)))
    assert load_study(logged).model_dump() == study.model_dump()
    assert {"trial.epochs": "2", "data.batch_size": "2", "search.axes": "dims,lambda_e",
            "base.model": "r2plus1d_18_tiny"}.items() <= parent.data.params.items()  # fmt: skip
    assert not [k for k in parent.data.params if k.startswith(("axis.", "search.grid.", "search.sample."))]
    # trial runs: named and tagged by their axes, the data lists as datasets, system metrics every second
    train_list, val_list = data_lists(study.data)
    for run in trials:
        axes = {"dims": run.data.params["axis.dims"], "lambda_e": float(run.data.params["axis.lambda_e"])}
        assert run.info.run_name == axes_name(axes) and run.data.tags["axis.dims"] == axes["dims"]
        inputs = {[t.value for t in d.tags][0]: d.dataset for d in run.inputs.dataset_inputs}
        assert sorted(inputs) == ["training", "validation"]
        assert inputs["validation"].digest == hashlib.sha256(val_list.read_bytes()).hexdigest()[:8]
        assert json.loads(inputs["training"].profile) == {"videos": 6, "classes": 2}  # 2 × 4 videos, 1 in 4 for validation
        assert "system/cpu_utilization_percentage" in run.data.metrics

    # the front's models: registered under the study's name, front-0 the cheapest … the most accurate
    models = front_models(client, "e2e")
    by_run = {r.info.run_id: r for r in trials}
    assert len(models) == len(result.front.front)
    assert [m.aliases for m in models] == [(f"front-{i}",) for i in range(len(models))]
    gflops = [by_run[m.run_id].data.metrics["gflops_avg"] for m in models]
    assert gflops == sorted(gflops) and all(by_run[m.run_id].data.tags["pareto"] == "true" for m in models)
    # a fresh process loads front-0 by its alias and scores the trial's video_top1 on the validation set
    load = ("import sys, json; from orchestrator.models import load_model; from vared_core.engine import evaluate, "
            "build_datasets; from vared_core.models import get_model_cfg; "
            "m, c = load_model(sys.argv[1], tracking_uri=sys.argv[2]); "
            "_, val = build_datasets(c.data, get_model_cfg(c.model), seed=c.seed); "
            "print(json.dumps(evaluate(m, val).metrics()))")  # fmt: skip
    fresh = subprocess.run([sys.executable, "-c", load, "models:/e2e@front-0", study.tracking_uri()],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    scored = json.loads(fresh.stdout.strip().splitlines()[-1])
    for name in ("video_top1", "gflops_avg"):
        assert scored[name] == pytest.approx(by_run[models[0].run_id].data.metrics[name], rel=1e-6)
    # registering again never adds a version; a smaller front moves the aliases and drops the ones beyond it
    assert [m.version for m in register_front(study, result.tracker, result.front, result.trials)] == \
        [m.version for m in models]
    last = trade_off_order(result.front.front, dict(study.objectives))[-1]
    one = dataclasses.replace(result.front, points=tuple(p for p in result.front.points if p.trial_id == last.trial_id))
    (moved,) = register_front(study, result.tracker, one, result.trials)
    assert moved.version == models[-1].version and moved.aliases == ("front-0",)
    assert len(front_models(client, "e2e")) == len(models)
    assert set(client.get_registered_model("e2e").aliases) == {"front-0"}
    shown = subprocess.run([sys.executable, "-m", "orchestrator.cli", "models", str(path), "--set", "trial.epochs=2"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0 and "front-0" in shown.stdout and last.trial_id in shown.stdout, shown.stderr


    # a run left open by a trial Tune no longer lists is ended, tagged and left out; one it lists is not
    experiment = Path(study.storage) / "ray" / "trials"
    lost = result.tracker.trial_run("lost-with-tune-state").run_id
    crashed = trials[0].info.run_id
    client.update_run(crashed, status="RUNNING")
    assert close_orphans(result.tracker, set(saved_trials(experiment))) == [lost]
    assert client.get_run(lost).info.status == "KILLED" and client.get_run(lost).data.tags["orphaned"] == "true"
    assert client.get_run(crashed).info.status == "RUNNING"
    found = study_trials(result.tracker)
    assert lost not in {t["run_id"] for t in found.done + found.failed + found.stopped}


def test_the_seeds_recipe_fine_tunes_the_dynamic_base_and_logs_before_and_after(tmp_path: Path, write_study,
                                                                                local_ray) -> None:
    """Table 4.10 in kind: the base run is the dynamic model from scratch (λ_e 0), the trial its L_e fine-tune."""
    path = write_study(tmp_path, "seed", recipe="seed", grid={"lambda_e": [2.0]})
    result = run_study(load_study(path), verbose=0)
    client = MlflowClient(load_study(path).tracking_uri())
    (base,) = result.tracker.child_runs(role="base")
    (trial,) = _children(result)
    assert (base.data.params["stage"], base.data.params["lambda_e"]) == ("dynamic", "0.0")
    assert base.data.params["base_checkpoint"] == "None" and "dynamic.search_space" in base.data.params
    assert (trial.data.params["stage"], trial.data.params["lambda_e"]) == ("dynamic", "2.0")
    assert trial.data.params["base_checkpoint"].startswith(str(Path(load_study(path).storage) / "bases"))
    for name in ("video_top1", "gflops_avg", "clip_top1"):  # "before" on the trial's run is the base's last epoch
        assert trial.data.metrics[f"start_{name}"] == pytest.approx(base.data.metrics[name])
        assert [m.step for m in client.get_metric_history(trial.info.run_id, f"start_{name}")] == [0]
    assert trial.info.status == "FINISHED"


def test_the_shipped_finetune_study_runs_on_its_cpu_settings(tmp_path: Path, local_ray) -> None:
    """studies/finetune.yaml as shipped, shortened by --set: its base is dynamic, its trial fine-tunes it."""
    overrides = {"storage": str(tmp_path / "runs"), "data.synthetic.root": str(tmp_path / "synth"),
                 "data.synthetic.videos_per_class": 8, "base.epochs": 2, "trial.epochs": 1,
                 "search.grid.lambda_e": [2.0]}  # fmt: skip
    study = load_study(REPO / "studies" / "finetune.yaml", overrides)
    assert study.recipe == "seed"
    result = run_study(study, verbose=0)
    (base,) = result.tracker.child_runs(role="base")
    (trial,) = _children(result)
    assert base.data.params["stage"] == "dynamic" and base.data.params["lambda_e"] == "0.0"
    assert trial.info.status == "FINISHED" and "start_gflops_avg" in trial.data.metrics
    # the optimiser values each stage really used: the study's lr, the warm-up from scratch only
    assert (base.data.params["resolved.lr"], base.data.params["resolved.warmup_epochs"]) == ("0.02", "1.0")
    assert (trial.data.params["resolved.lr"], trial.data.params["resolved.warmup_epochs"]) == ("0.01", "0.0")
    assert trial.data.params["resolved.from_scratch"] == "False" and base.data.params["resolved.from_scratch"] == "True"


def test_a_failing_trial_fails_alone(tmp_path: Path, write_study, local_ray) -> None:
    path = write_study(tmp_path, "nan", grid={"dims": ["both"], "optim.lr": [0.01, 1.0e30]})
    result = run_study(load_study(path), verbose=0)
    assert len(result.trials) == 1 and len(result.failed) == 1
    assert "TrainingDiverged" in result.failed[0]["error"]
    assert result.failed[0]["params"]["optim.lr"] == "1e+30"
    assert MlflowClient(result.study.tracking_uri()).get_run(result.tracker.parent_run_id).info.status == "FINISHED"


def test_unreadable_videos_are_counted_and_reported_on_the_trial_runs(tmp_path: Path, write_study, local_ray) -> None:
    import yaml

    path = write_study(tmp_path, "bad", grid={"dims": ["both"]})
    study = yaml.safe_load(path.read_text())
    synthetic = load_study(path).data
    train_list, val_list = data_lists(synthetic)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\0" * 512)
    # the set's lists with bad rows: a missing video in both, a corrupt one in validation (read in full)
    (tmp_path / "train.csv").write_text(train_list.read_text() + "videos/pan_left/gone.mp4,1,0,0\n")
    (tmp_path / "val.csv").write_text(val_list.read_text() + f"videos/pan_left/gone.mp4,1,0,0\n{corrupt},0,0,0\n")
    study["data"] = {**{k: v for k, v in study["data"].items() if k != "synthetic"},
                     "train_list": str(tmp_path / "train.csv"), "val_list": str(tmp_path / "val.csv"),
                     "root": str(train_list.parent)}  # fmt: skip
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    result = run_study(load_study(path), verbose=0)
    (trial,) = runs_with_role(MlflowClient(result.study.tracking_uri()), "trial")
    (base,) = runs_with_role(MlflowClient(result.study.tracking_uri()), "base")
    for run in (trial, base):  # as metrics every epoch and as a tag
        assert (run.data.metrics["skipped_videos_train"], run.data.metrics["skipped_videos_val"]) == (1.0, 2.0)
        assert run.data.tags["skipped_videos"].startswith("1 train, 2 val")
    assert len(result.trials) == 1 and not result.failed


def test_asha_stops_worse_trials_early_and_keeps_them_off_the_front(tmp_path: Path, write_study, local_ray) -> None:
    """One objective (training loss, min), trials one at a time in grid order of growing λ_e: the loss grows
    with λ_e, so ASHA (grace 1, ×2) lets the first trial run all 3 epochs and stops the others at their
    first rung. Stopped trials end KILLED with the epochs they ran, are not failures, not on the front."""
    path = write_study(tmp_path, "asha", grid={"lambda_e": [0.0, 2.0, 8.0, 32.0]}, max_concurrent=1,
                       objectives={"loss": "min"}, reference={"loss": 100.0},
                       scheduler={"asha": {"grace_period": 1, "reduction_factor": 2}},
                       trial={"epochs": 3, "dynamic": {"search_space": 2}, "threads": 1})  # fmt: skip
    result = run_study(load_study(path), verbose=0)
    client = MlflowClient(result.study.tracking_uri())
    runs = {float(r.data.params["axis.lambda_e"]): r for r in _children(result)}
    assert sorted(runs) == [0.0, 2.0, 8.0, 32.0]
    epochs = {lam: [m.step for m in client.get_metric_history(r.info.run_id, "loss")] for lam, r in runs.items()}
    assert epochs[0.0] == [1, 2, 3] and runs[0.0].info.status == "FINISHED"
    stopped = [lam for lam in (2.0, 8.0, 32.0) if runs[lam].info.status == "KILLED"]
    assert stopped, {lam: (r.info.status, epochs[lam]) for lam, r in runs.items()}
    for lam in stopped:
        assert epochs[lam] and epochs[lam][-1] < 3 and runs[lam].data.tags["stopped_early"] == "true"
    assert not result.failed
    assert {t["trial_id"] for t in result.stopped} == {runs[lam].data.tags["trial_id"] for lam in stopped}
    assert all(p.trial_id not in {t["trial_id"] for t in result.stopped} for p in result.front.front)
    assert result.front.front


def test_a_killed_trial_worker_is_retried_from_its_checkpoint_into_the_same_run(tmp_path: Path,
                                                                                 write_study) -> None:  # fmt: skip
    """kill -9 the process of the running trial mid-fit: Tune retries it (max_failures 1) from its last
    checkpoint, its one MLflow run continues with every epoch logged once and says it took two attempts."""
    import psutil

    epochs = 12
    path = write_study(tmp_path, "worker", grid={"dims": ["both"]}, max_concurrent=1, max_failures=1,
                       trial={"epochs": epochs, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1})  # fmt: skip
    study = load_study(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"PYTHONUNBUFFERED": "1"}
    console = tmp_path / "console.txt"
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path)], start_new_session=True,
                              env=env, stdout=console.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    killed, deadline = None, time.time() + 300
    try:
        while killed is None and time.time() < deadline:
            time.sleep(0.2)
            assert driver.poll() is None, console.read_text()[-3000:]
            if not (Path(study.storage) / "study_state.json").exists():
                continue
            client = MlflowClient(study.tracking_uri())
            runs = [r for r in runs_with_role(client, "trial") if r.info.status == "RUNNING"]
            if not runs or not 2 <= len(client.get_metric_history(runs[0].info.run_id, "loss")) < epochs - 2:
                continue
            workers = [p for p in psutil.Process(driver.pid).children(recursive=True)
                       if "ray::ImplicitFunc" in " ".join(p.cmdline())]  # fmt: skip
            if len(workers) == 1:
                workers[0].kill()  # SIGKILL
                killed = len(client.get_metric_history(runs[0].info.run_id, "loss"))
        assert killed, "the trial did not get going in time"
        assert driver.wait(timeout=300) == 0, console.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    (run,) = runs_with_role(client, "trial")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, epochs + 1)), steps  # every epoch once
    assert run.info.status == "FINISHED" and run.data.tags["attempts"] == "2"
    assert 1 <= int(run.data.tags["resumed_from_epoch"]) <= killed
    assert "video_top1" in run.data.metrics and len(runs_with_role(client, "study")) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tracking_server(folder: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on 127.0.0.1:``port`` with a SQLite store in ``folder``, once it answers."""
    import urllib.request

    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                               "--artifacts-destination", str(folder / "artifacts")],
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        assert server.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not start in 120 s")


@pytest.mark.slow
def test_a_tracking_server_away_within_the_bound_loses_nothing_and_longer_fails_then_resumes(tmp_path: Path,
                                                                                            write_study) -> None:  # fmt: skip
    """The study's real ``mlflow server`` (SQLite behind it) is killed -9 during each of two trials. Answering
    again on the same port 8 s later plus its restart (restarts took 1-16 s on loaded CI cores), within
    ``tracking.outage_s`` = 30: the trial's MLflow calls wait it out (MLflow's HTTP retries, several of which
    fall inside 8 s) and nothing is lost. Away longer: the trial fails naming the server (a
    FAILED run once it is back); ``--resume`` completes the study, every trial one run with every epoch once."""
    port, epochs = _free_port(), 6
    uri = f"http://127.0.0.1:{port}"
    path = write_study(tmp_path, "outage", grid={"dims": ["temporal", "both"]}, max_concurrent=1,
                       tracking={"uri": uri, "register_models": False, "outage_s": 30},
                       trial={"epochs": epochs, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1})  # fmt: skip
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "MLFLOW_"))}
    server = _tracking_server(tmp_path, port)
    console = tmp_path / "console.txt"
    driver = subprocess.Popen(cmd, env=env, stdout=console.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    client = MlflowClient(uri)

    def kill_server_during_trial(finished: int) -> float:
        """kill -9 the server once ``finished`` trials are done and the next has logged an epoch or two."""
        deadline = time.time() + 300
        while time.time() < deadline:
            time.sleep(0.25)
            assert driver.poll() is None, console.read_text()[-3000:]
            runs = runs_with_role(client, "trial")
            running = [r for r in runs if r.info.status == "RUNNING"]
            if sum(r.info.status == "FINISHED" for r in runs) == finished and running and \
                    1 <= len(client.get_metric_history(running[0].info.run_id, "loss")) <= epochs - 3:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                return time.perf_counter()
        pytest.fail(f"trial {finished + 1} did not get going in time")

    try:
        killed = kill_server_during_trial(0)
        time.sleep(8.0)  # a fixed floor: how long the restart itself takes varies too much to aim at a total
        server = _tracking_server(tmp_path, port)
        away_s = time.perf_counter() - killed
        assert 8 < away_s < 30 and driver.poll() is None, away_s  # the trial waited in its MLflow call
        kill_server_during_trial(1)
        deadline = time.time() + 120  # the trial gives up after tracking.outage_s; Tune says it failed
        while " FAILED" not in console.read_text() and time.time() < deadline:
            time.sleep(0.5)
        server = _tracking_server(tmp_path, port)  # while the driver's own calls still wait for it
        assert driver.wait(timeout=300) == 0, console.read_text()[-3000:]
        said = console.read_text()
        assert "1 trial(s) failed:" in said and f"the tracking server {uri} did not answer" in said, said[-3000:]
        (failed,) = [r for r in runs_with_role(client, "trial") if r.info.status == "FAILED"]
        assert f"the tracking server {uri} did not answer within tracking.outage_s = 30 s" in failed.data.tags["error"]
        done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stderr[-3000:]
        runs = runs_with_role(client, "trial")
        assert sorted(r.data.params["axis.dims"] for r in runs) == ["both", "temporal"]  # one run per trial
        for run in runs:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
            assert sorted(steps) == list(range(1, epochs + 1)) and run.info.status == "FINISHED", steps
        assert sorted(r.data.tags["attempts"] for r in runs) == ["1", "2"]  # the failed one went on after --resume
        (parent,) = runs_with_role(client, "study")
        assert parent.info.status == "FINISHED" and parent.data.metrics["num_trials"] == 2
    finally:
        for process in (driver, server):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def test_a_tracking_server_that_never_answers_stops_the_driver_naming_it(tmp_path: Path, write_study) -> None:
    port = _free_port()  # nothing listens there
    path = write_study(tmp_path, "away", grid={"dims": ["both"]},
                       tracking={"uri": f"http://127.0.0.1:{port}", "outage_s": 1})  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "MLFLOW_"))}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"the tracking server http://127.0.0.1:{port} did not answer within tracking.outage_s = 1 s" in done.stderr
    assert f"orchestrator run {path} --resume" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_trial_tune_errors_before_it_starts_fails_in_mlflow_and_the_study_goes_on(tmp_path: Path,
                                                                                   write_study) -> None:  # fmt: skip
    """Tune errors a trial whose reused actor cannot be reset in time, without telling the searcher and
    before the trial opens its MLflow run. Forced here by leaving Tune no wait at all: the study still ends
    (its concurrency limit does not wait on that trial), and the trial is a FAILED run with Tune's error."""
    path = write_study(tmp_path, "reuse", grid={"dims": ["temporal", "channel", "both"]}, max_concurrent=1,
                       trial={"epochs": 1, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1})  # fmt: skip
    study = load_study(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "0"}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path)], env=env, capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_with_role(MlflowClient(study.tracking_uri()), "trial")
    assert sorted(r.data.params["axis.dims"] for r in runs) == ["both", "channel", "temporal"]  # one run per trial
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert failed and all("reset_config" in r.data.tags["error"] for r in failed), [r.data.tags for r in runs]
    assert all(r.info.status == "FINISHED" for r in runs if r not in failed)
    assert f"{len(failed)} trial(s) failed:" in done.stdout and failed[0].data.tags["trial_id"] in done.stdout


def _trial_stubs(state: Path) -> list:
    from ray.tune.experiment.trial import Trial

    return [Trial.from_json_state(t, stub=True) for t, _ in json.loads(state.read_text())["trial_data"]]


def _resumable(experiment: Path) -> dict:
    try:
        return resume_checkpoints(experiment)
    except (OSError, ValueError):  # Tune writing its state file this instant
        return {}


@pytest.mark.parametrize("search", ["grid", "grid+sample"])
def test_killed_driver_resumes_with_every_trial_once(search: str, tmp_path: Path, write_study) -> None:
    if search == "grid":
        axes, dims = {"grid": {"dims": ["temporal", "channel", "both"]}}, ["both", "channel", "temporal"]
    else:  # CellSearch: both cells' Optuna searchers are restored with the experiment
        axes = {"grid": {"dims": ["temporal", "both"]}, "sample": {"lambda_e": {"loguniform": [0.1, 4.0]}},
                "num_samples": 2}  # fmt: skip
        dims = ["both", "both", "temporal", "temporal"]
    path = write_study(tmp_path, "resume", **axes, max_concurrent=1,
                       trial={"epochs": 6, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1})  # fmt: skip
    study = load_study(path)
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(path)]  # the default console, as users see it
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"PYTHONUNBUFFERED": "1"}
    console = tmp_path / "console.txt"
    driver = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=console.open("w"), stderr=subprocess.STDOUT)
    client, second, second_s = None, None, None
    experiment = Path(study.storage) / "ray" / "trials"
    deadline = time.time() + 300
    try:
        # kill once one trial is done and the next has checkpointed an epoch
        while time.time() < deadline:
            time.sleep(0.25)
            assert driver.poll() is None, console.read_text()[-3000:]
            if client is None:  # open the store only once the driver has created it (migrations race)
                if not (Path(study.storage) / "study_state.json").exists():
                    continue
                client = MlflowClient(study.tracking_uri())
                # a second driver of the running study is refused at once, naming the first; it starts nothing
                second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                t0 = time.perf_counter()
            if second.poll() is not None and second_s is None:
                second_s = time.perf_counter() - t0
            runs = runs_with_role(client, "trial")
            if sum(r.info.status == "FINISHED" for r in runs) >= 1 and _resumable(experiment) and second_s:
                break
        else:
            pytest.fail("the study did not get going in time")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        if second is not None and second.poll() is None:
            second.kill()
    second_err = second.communicate(timeout=60)[1]
    assert second.returncode == 2 and f"already running (driver pid {driver.pid} on" in second_err, second_err
    assert second_s < 30 and len(runs_with_role(client, "study")) == 1
    # the dead driver's lock: a plain run is refused and pointed at --resume
    plain = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and "stopped without finishing; continue it with --resume" in plain.stderr
    # a truncated checkpoint that the resume would start from is refused, naming it; MLflow is left as it was
    (trial_id, folder), *_ = resume_checkpoints(experiment).items()
    file = folder / "checkpoint.pt"
    whole = file.read_bytes()
    recorded = [(r.info.run_id, r.info.status, r.data.metrics)
                for r in runs_with_role(client, "trial") + runs_with_role(client, "study")]
    file.write_bytes(whole[: len(whole) // 3])
    refused = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and f"{file}: cannot be read as a checkpoint" in refused.stderr, refused.stderr
    assert trial_id in refused.stderr
    assert [(r.info.run_id, r.info.status, r.data.metrics)
            for r in runs_with_role(client, "trial") + runs_with_role(client, "study")] == recorded  # fmt: skip
    file.write_bytes(whole)
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"took over the lock of a driver that is no longer running (pid {driver.pid} on" in done.stdout
    assert not (Path(study.storage) / "driver.lock").exists()
    # without -v, neither run showed the libraries' banners, warnings or tables; the resume showed its trials
    for shown in (console.read_text(), done.stdout + done.stderr):
        assert not [line for line in shown.splitlines() if any(b in line for b in BANNERS)], shown[-3000:]
    assert "trial" in done.stdout and "MLflow: " in done.stdout
    # a trial lost with Tune's state (see CellSearch) runs again; its first run is kept, tagged orphaned
    runs = [r for r in runs_with_role(client, "trial") if r.data.tags.get("orphaned") != "true"]
    seen = [(r.data.tags.get("trial_id"), r.data.params["axis.dims"], r.info.status, r.data.tags.get("orphaned"),
             r.data.tags.get("attempts")) for r in runs_with_role(client, "trial")]  # fmt: skip
    listed = {f.name: [(t.trial_id, t.config["cell"], t.status) for t in _trial_stubs(f)]
              for f in sorted(experiment.glob("experiment_state-*.json"))}  # fmt: skip
    assert sorted(r.data.params["axis.dims"] for r in runs) == dims, (seen, listed, done.stdout[-3000:])
    if search != "grid":
        assert len({r.data.params["axis.lambda_e"] for r in runs}) == len(dims)
    assert all(r.info.status == "FINISHED" for r in runs)
    parents = runs_with_role(client, "study")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # the resumed study registered its front once: one version per front trial, aliases front-0 … front-k
    front_runs = {r.info.run_id for r in runs if r.data.tags.get("pareto") == "true"}
    models = front_models(client, study.model_name())
    assert front_runs and sorted(m.run_id for m in models) == sorted(front_runs)
    assert [m.aliases for m in models] == [(f"front-{i}",) for i in range(len(models))]
