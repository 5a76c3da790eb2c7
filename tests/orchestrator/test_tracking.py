"""`orchestrator.tracking` on a real MLflow SQLite store: the study's runs, read back and written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.util import Retry

from orchestrator.validation import load_study
from orchestrator.tracking import (
    STATE_FILE,
    StudyTracker,
    close_orphans,
    describe_study,
    http_retry_env,
    latest_baseline_run,
    load_study_state,
    log_front,
    record_errors,
    record_nightly,
    save_study_state,
    study_params,
    study_trials,
)


@pytest.fixture
def tracker(tmp_path: Path) -> StudyTracker:
    return StudyTracker.open(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", tmp_path / "mlartifacts", "study",
                             parent_run_id=None)  # fmt: skip


def _finished(tracker: StudyTracker, trial_id: str, metrics: dict[str, float], **params: str) -> str:
    run = tracker.trial_run(trial_id)
    run.log_params({f"axis.{k}": v for k, v in params.items()})
    run.log_metrics(metrics, 1)
    run.end()
    return run.run_id


def test_open_makes_the_parent_run_and_reopening_finds_it(tracker: StudyTracker, tmp_path: Path) -> None:
    client = MlflowClient(tracker.uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == "RUNNING" and parent.data.tags["role"] == "study"
    assert parent.data.tags["study"] == "study" and parent.data.tags["code_version"]
    # a local store keeps the artifacts in the study's folder, not in the working directory
    assert client.get_experiment(tracker.experiment_id).artifact_location == (tmp_path / "mlartifacts").as_uri()
    tracker.set_status("FAILED")
    again = StudyTracker.open(tracker.uri, "exp", tmp_path / "mlartifacts", "study", parent_run_id=tracker.parent_run_id)
    assert again == tracker and client.get_run(tracker.parent_run_id).info.status == "RUNNING"
    assert StudyTracker.of_run(tracker.uri, tracker.parent_run_id) == tracker


def test_a_retried_trial_logs_into_its_first_run(tracker: StudyTracker) -> None:
    first = tracker.trial_run("t1")
    first.log_params({"axis.lambda_e": 0.8})
    first.end("FAILED")
    second = tracker.trial_run("t1")
    second.log_params({"axis.lambda_e": 0.8, "model": "tiny"})  # a param logged before is not logged again
    assert second.run_id == first.run_id and len(tracker.child_runs()) == 1
    run = tracker.client.get_run(first.run_id)
    assert run.info.status == "RUNNING" and run.data.params == {"axis.lambda_e": "0.8", "model": "tiny"}


def test_study_trials_sorts_runs_by_how_they_ended(tracker: StudyTracker) -> None:
    done = _finished(tracker, "done", {"video_top1": 80.0, "gflops_avg": 0.1}, lambda_e="0.8")
    failed = tracker.trial_run("failed")
    failed.set_tags({"error": "RuntimeError: boom"})
    failed.end("FAILED")
    stopped = tracker.trial_run("stopped")
    stopped.set_tags({"stopped_early": "true"})
    stopped.end("KILLED")
    orphan = tracker.trial_run("orphan")
    orphan.set_tags({"orphaned": "true"})
    orphan.end("KILLED")
    tracker.trial_run("base-1", role="base").end()  # a base model's run is not a trial
    found = study_trials(tracker)
    assert [t["run_id"] for t in found.done] == [done]
    assert found.done[0]["params"] == {"lambda_e": "0.8"} and found.done[0]["metrics"]["video_top1"] == 80.0
    assert [(t["trial_id"], t["error"]) for t in found.failed] == [("failed", "RuntimeError: boom")]
    assert [t["trial_id"] for t in found.stopped] == ["stopped"]


def test_close_orphans_ends_only_running_runs_tune_does_not_list(tracker: StudyTracker) -> None:
    lost, crashed = tracker.trial_run("lost"), tracker.trial_run("crashed")
    finished = _finished(tracker, "finished", {"video_top1": 1.0})
    assert close_orphans(tracker, {"crashed"}) == [lost.run_id]
    client = tracker.client
    assert client.get_run(lost.run_id).info.status == "KILLED"
    assert client.get_run(lost.run_id).data.tags["orphaned"] == "true"
    assert client.get_run(crashed.run_id).info.status == "RUNNING"
    assert client.get_run(finished).info.status == "FINISHED"
    assert "lost" not in {t["trial_id"] for t in [*study_trials(tracker).failed, *study_trials(tracker).done]}


def test_record_errors_fails_a_running_run_and_gives_a_run_to_a_trial_that_never_opened_one(tracker: StudyTracker) -> None:
    crashed = tracker.trial_run("crashed")
    finished = _finished(tracker, "finished", {"video_top1": 1.0})
    errored = {"crashed": ({"cell": {"dims": "both"}}, "RayActorError: the worker died"),
               "unstarted": ({"cell": {"dims": "channel"}, "lambda_e": 0.5}, "reset_config() returned False"),
               "finished": ({"cell": {"dims": "both"}}, "stale")}  # fmt: skip
    made = record_errors(tracker, "study", errored)
    client = tracker.client
    assert client.get_run(crashed.run_id).info.status == "FAILED"
    assert client.get_run(crashed.run_id).data.tags["error"] == "RayActorError: the worker died"
    assert client.get_run(finished).info.status == "FINISHED"  # a run that ended is left as it ended
    (new,) = [r for r in tracker.child_runs() if r.data.tags["trial_id"] == "unstarted"]
    assert new.info.status == "FAILED" and new.data.params == {"axis.dims": "channel", "axis.lambda_e": "0.5"}
    assert new.data.tags["error"] == "reset_config() returned False" and new.data.tags["axis.dims"] == "channel"
    assert sorted(made) == sorted([crashed.run_id, new.info.run_id])
    assert {t["trial_id"] for t in study_trials(tracker).failed} == {"crashed", "unstarted"}
    assert record_errors(tracker, "study", errored) == []  # once


@pytest.mark.parametrize("outage_s, retries", [(1, 2), (6, 3), (25, 5), (30, 5), (240, 8), (480, 10)])
def test_http_retries_wait_out_at_least_the_outage(outage_s: float, retries: int) -> None:
    env = http_retry_env(outage_s)
    assert env == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    # the waits urllib3 (MLflow's HTTP client) makes before each retry of a call that cannot connect
    retry, waits = Retry(total=retries, connect=retries, backoff_factor=1, backoff_jitter=0), []
    for _ in range(retries):
        retry = retry.increment(method="POST", url="/api", error=ConnectTimeoutError("refused"))
        waits.append(retry.get_backoff_time())
    with pytest.raises(MaxRetryError):  # and then it gives up
        retry.increment(method="POST", url="/api", error=ConnectTimeoutError("refused"))
    assert sum(waits) >= outage_s > sum(waits[:-1]), waits  # the fewest retries that wait it out


def test_log_front_logs_the_front_to_the_parent_and_tags_every_trial(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "fronts"))
    tracker = StudyTracker.open(study.tracking_uri(), study.experiment_name(), tmp_path / "art", study.name,
                                parent_run_id=None)  # fmt: skip
    cheap = _finished(tracker, "cheap", {"video_top1": 70.0, "gflops_avg": 0.05})
    good = _finished(tracker, "good", {"video_top1": 90.0, "gflops_avg": 0.09})
    dominated = _finished(tracker, "dominated", {"video_top1": 60.0, "gflops_avg": 0.10})
    front = log_front(study, tracker, study_trials(tracker).done)
    assert {p.trial_id for p in front.front} == {"cheap", "good"}
    client = tracker.client
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.metrics["pareto_size"] == 2 and parent.data.metrics["num_trials"] == 3
    # the dominated region of (video_top1 max, gflops min) w.r.t. the reference (0, 1): 70·0.95 + (90-70)·0.91
    assert parent.data.metrics["hypervolume"] == pytest.approx(70 * 0.95 + 20 * 0.91)
    assert {a.path for a in client.list_artifacts(tracker.parent_run_id, "pareto")} >= {
        "pareto/front.json", "pareto/front_all.json", "pareto/front.png", "pareto/front.html"}
    tags = {r: client.get_run(r).data.tags["pareto"] for r in (cheap, good, dominated)}
    assert tags == {cheap: "true", good: "true", dominated: "false"}


def test_the_study_state_file_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    assert load_study_state(tmp_path) == {}
    save_study_state(tmp_path, {"parent_run_id": "a"})
    save_study_state(tmp_path, {"parent_run_id": "b", "study": "s"})
    assert load_study_state(tmp_path) == {"parent_run_id": "b", "study": "s"}
    assert json.loads((tmp_path / STATE_FILE).read_text())["parent_run_id"] == "b"
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary file left behind


def test_the_baseline_is_the_newest_passing_nightly_of_the_study(tmp_path: Path) -> None:
    uri, folder = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "report"
    folder.mkdir()
    (folder / "report.md").write_text("ok")
    runs = [StudyTracker.open(uri, "exp", tmp_path / "art", "nightly", parent_run_id=None) for _ in range(3)]
    assert latest_baseline_run(uri, "exp", "nightly", exclude=None) is None
    assert latest_baseline_run(uri, "no-such-experiment", "nightly", exclude=None) is None
    record_nightly(uri, runs[0].parent_run_id, verdict="pass", baseline_source="none", regressions=0,
                   is_baseline=True, report_folder=folder)  # fmt: skip
    record_nightly(uri, runs[1].parent_run_id, verdict="fail", baseline_source="x", regressions=2,
                   is_baseline=False, report_folder=folder)  # fmt: skip
    assert latest_baseline_run(uri, "exp", "nightly", exclude=None) == runs[0].parent_run_id
    assert latest_baseline_run(uri, "exp", "nightly", exclude=runs[0].parent_run_id) is None
    failed = MlflowClient(uri).get_run(runs[1].parent_run_id)
    assert failed.data.tags["nightly"] == "fail" and failed.data.metrics["nightly_regressions"] == 2
    assert [a.path for a in MlflowClient(uri).list_artifacts(runs[1].parent_run_id, "nightly")] == ["nightly/report.md"]


def test_the_parent_run_gets_the_studys_description_file_and_fixed_settings(tracker: StudyTracker, tmp_path: Path,
                                                                            make_study, write_file) -> None:  # fmt: skip
    path = write_file(tmp_path, make_study(description="what this study asks"))
    study = load_study(path, {"trial.epochs": 3})
    describe_study(tracker, study)
    describe_study(tracker, study)  # a resumed study: params are not logged twice (MLflow refuses changed ones)
    client = MlflowClient(tracker.uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.tags["mlflow.note.content"] == "what this study asks"
    assert parent.data.params == {k: str(v) for k, v in study_params(study).items()}
    assert parent.data.params["trial.epochs"] == "3" and "name" in parent.data.params
    text = Path(client.download_artifacts(tracker.parent_run_id, "study.yaml", str(tmp_path))).read_text()
    assert text.startswith(f"# {study.name}: the study as it ran, from {study.source}")
    assert "epochs: 3" in text
    # the UI opens the experiment as model training (runs, charts), not as a GenAI app (traces)
    assert client.get_experiment(tracker.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
