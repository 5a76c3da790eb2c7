"""MLflow for studies: one parent run per study, one child run per trial (and per cached base model).

Everything goes through `MlflowClient` with explicit run ids, so the driver and trial processes on
any node agree on the runs without global "active run" state. A trial that is retried or resumed
finds its child run again by its ``trial_id`` tag: no study ever holds two runs for one trial.
"""
from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

import vared_core

__all__ = ["StudyTracker", "TrialRun", "code_version", "flatten"]

ROLE_TRIAL, ROLE_BASE = "trial", "base"
STOPPED_TAG = "stopped_early"  # "true" on a trial run the scheduler (ASHA) stopped before its last epoch
ORPHANED_TAG = "orphaned"  # "true" on a trial run whose Tune trial a killed driver lost (run again under a new id)
BASE_DONE_FILE = "done.json"  # written in a base model's folder once its training finished (a cached base)


def code_version() -> str:
    """``vared_core.__version__`` plus the git commit of the checkout when there is one."""
    version = vared_core.__version__
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts → ``{"a.b": "value"}`` with string values (MLflow params)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def node_uri(uri: str) -> str:
    """The tracking URI to use on this process's node: its own ``MLFLOW_TRACKING_URI`` when set (a trial
    in a container reaches the server as ``http://mlflow:5000`` while the laptop that started the study
    used ``http://127.0.0.1:5000``), else the study's."""
    return os.environ.get("MLFLOW_TRACKING_URI") or uri


def _finite_metrics(metrics: Mapping[str, float], step: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)]


@dataclass(frozen=True)
class StudyTracker:
    """Where a study's runs live: tracking URI, experiment id and the parent run id (picklable, so
    trials on other processes and nodes receive it)."""

    uri: str
    experiment_id: str
    parent_run_id: str

    @classmethod
    def open(cls, uri: str, experiment: str, artifact_root: Path, study_name: str, *, parent_run_id: str | None) -> StudyTracker:
        """Create (or open) the experiment and the study's parent run; ``parent_run_id`` reopens one."""
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            # a tracking server stores (or proxies) artifacts itself; a local store keeps them in the study folder
            remote = uri.split(":", 1)[0] in ("http", "https", "databricks")
            location = None if remote else Path(artifact_root).absolute().as_uri()
            exp_id = client.create_experiment(experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        if parent_run_id is None:
            run = client.create_run(exp_id, run_name=study_name, tags={"study": study_name, "role": "study",
                                                                      "code_version": code_version()})
            parent_run_id = run.info.run_id
        else:
            client.update_run(parent_run_id, status="RUNNING")
        return cls(uri, exp_id, parent_run_id)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(node_uri(self.uri))

    def child_runs(self, role: str | None = ROLE_TRIAL) -> list[Any]:
        """Child runs of the study (optionally only trials or only bases), oldest first."""
        filt = f"tags.mlflow.parentRunId = '{self.parent_run_id}'"
        if role is not None:
            filt += f" and tags.role = '{role}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=filt, max_results=50000,
                                       order_by=["attributes.start_time ASC"])  # fmt: skip
        return list(runs)

    def trial_run(self, trial_id: str, *, role: str = ROLE_TRIAL, name: str | None = None,
                  tags: Mapping[str, str] | None = None) -> TrialRun:  # fmt: skip
        """The child run of ``trial_id``: found again when it exists, created otherwise."""
        client = self.client
        found = client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and tags.trial_id = '{trial_id}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            all_tags = {"mlflow.parentRunId": self.parent_run_id, "trial_id": trial_id, "role": role,
                        "code_version": code_version(), **(tags or {})}  # fmt: skip
            run_id = client.create_run(self.experiment_id, run_name=name or trial_id, tags=all_tags).info.run_id
        return TrialRun(self.uri, run_id)

    def set_status(self, status: str) -> None:
        self.client.set_terminated(self.parent_run_id, status=status)


@dataclass(frozen=True)
class TrialRun:
    """One child run: log params, per-epoch metrics, artifacts; end with a status."""

    uri: str
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        client = MlflowClient(node_uri(self.uri))
        existing = client.get_run(self.run_id).data.params
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), 100):
            client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        MlflowClient(node_uri(self.uri)).log_batch(self.run_id, metrics=_finite_metrics(metrics, step))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        client = MlflowClient(node_uri(self.uri))
        for k, v in tags.items():
            client.set_tag(self.run_id, k, v)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        MlflowClient(node_uri(self.uri)).log_artifacts(self.run_id, str(local_dir), artifact_path)

    def end(self, status: str = RunStatus.to_string(RunStatus.FINISHED)) -> None:
        MlflowClient(node_uri(self.uri)).set_terminated(self.run_id, status=status)
