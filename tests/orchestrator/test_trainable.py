"""`orchestrator.trainable.train_base`: a shared base model is trained once, and its run says how."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.bases import base_folder
from orchestrator.validation import load_study
from orchestrator.tracking import StudyTracker
from orchestrator.trainable import train_base

pytestmark = pytest.mark.slow


def test_a_base_is_trained_once_and_then_reused(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "bases"))
    checkpoint = Path(train_base(study, {}, None))
    folder = base_folder(study, {})
    assert checkpoint.is_relative_to(folder) and checkpoint.exists()
    assert json.loads((folder / "done.json").read_text())["checkpoint"] == str(checkpoint)
    stamp = checkpoint.stat().st_mtime_ns
    assert Path(train_base(study, {}, None)) == checkpoint and checkpoint.stat().st_mtime_ns == stamp


def test_the_base_run_logs_its_config_and_the_resolved_optimiser(tmp_path: Path, write_study, local_ray) -> None:
    study = load_study(write_study(tmp_path, "bases", base={"model": "r2plus1d_18_tiny", "epochs": 1,
                                                            "optim": {"lr": 0.02, "warmup_epochs": 1}}))  # fmt: skip
    tracker = StudyTracker.open(study.tracking_uri(), study.experiment_name(), tmp_path / "art", study.name,
                                parent_run_id=None)  # fmt: skip
    train_base(study, {}, tracker)
    (run,) = tracker.child_runs(role="base")
    assert run.info.status == "FINISHED" and run.data.tags["trial_id"] == f"base-{base_folder(study, {}).name}"
    params = run.data.params
    assert params["model"] == "r2plus1d_18_tiny" and params["optim.lr"] == "0.02"
    assert float(params["resolved.lr"]) == 0.02 and float(params["resolved.warmup_epochs"]) == 1
    assert {"ray.node_id", "host"} <= set(run.data.tags)
    history = MlflowClient(tracker.uri).get_metric_history(run.info.run_id, "video_top1")
    assert [m.step for m in history] == [1] and "fit_time_s" in run.data.metrics
