"""MLflow for studies: one parent run per study, one child run per trial (and per cached base model).

Every MLflow read and write of the orchestrator is here: opening a study's runs (`StudyTracker`),
logging a trial (`TrialRun`), reading a study's trials back (`study_trials`), ending runs a killed
driver lost (`close_orphans`), logging the Pareto front (`log_front`), and the study-state file that
remembers the parent run across restarts (`load_study_state`, `save_study_state`).

The parent run carries the study itself (`describe_study`: its description, the resolved study file as
``study.yaml``, its fixed settings as params); trial runs are named by their axes (`axes_name`) and list
the data lists they read as MLflow datasets (`TrialRun.log_datasets`).

Everything goes through `MlflowClient` with explicit run ids, so the driver and trial processes on
any node agree on the runs without global "active run" state. A trial that is retried or resumed
finds its child run again by its ``trial_id`` tag: no study ever holds two runs for one trial.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

import vared_core

if TYPE_CHECKING:
    from .pareto import Front
    from .schema import Study

__all__ = ["STATE_FILE", "StudyTracker", "StudyTrials", "TrialRun", "axes_name", "close_orphans", "code_version",
           "describe_study", "http_retry_env", "load_study_state", "log_front", "record_errors", "save_study_state",
           "study_params", "study_trials", "trial_tags", "tracking_unreachable", "unreachable_message"]  # fmt: skip

ROLE_TRIAL, ROLE_BASE = "trial", "base"
STOPPED_TAG = "stopped_early"  # "true" on a trial run the scheduler (ASHA) stopped before its last epoch
ORPHANED_TAG = "orphaned"  # "true" on a trial run whose Tune trial a killed driver lost (run again under a new id)
BASE_DONE_FILE = "done.json"  # written in a base model's folder once its training finished (a cached base)
STATE_FILE = "study_state.json"  # in a study's storage: its parent run id, so a resumed study reopens that run
DESCRIPTION_TAG = "mlflow.note.content"  # a run's description in the MLflow UI
#: MLflow 3's UI opens an experiment in its GenAI view (traces) unless the experiment says it is model training
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
STUDY_FILE = "study.yaml"  # the parent run's artifact: the study as it ran (after --set, paths absolute)
#: short labels of axes in trial run names (`axes_name`)
_AXIS_LABELS = {"lambda_e": "λe", "search_space": "S", "dynamic.search_space": "S", "optim.lr": "lr"}


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


def http_retry_env(outage_s: float) -> dict[str, str]:
    """The MLflow client settings that keep retrying a call for at least ``outage_s`` seconds: retries with
    backoff factor 1, which urllib3 spaces 0, 2, 4, 8 … s apart (each wait at most 120 s). MLflow reads them
    on every call; the driver and every trial and base process set them (Ray workers on other nodes do not
    inherit the driver's environment).

    Example:
        >>> http_retry_env(25)
        {'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '5', 'MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR': '1'}
    """
    retries, waited = 1, 0.0  # the first retry follows at once
    while waited < outage_s:
        retries += 1
        waited += min(2.0 ** (retries - 1), 120.0)
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def unreachable_message(uri: str, outage_s: float) -> str:
    """What a trial's error and the driver say when the tracking server stayed away past the bound."""
    return f"the tracking server {uri} did not answer within tracking.outage_s = {outage_s:g} s"


def tracking_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is MLflow giving up on a tracking server that did not answer."""
    from mlflow.exceptions import MlflowException

    while error is not None:
        if isinstance(error, MlflowException) and "Max retries exceeded" in str(error):
            return True
        error = error.__cause__
    return False


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
            exp_id = client.create_experiment(experiment, artifact_location=location,
                                              tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})  # fmt: skip
        else:
            exp_id = exp.experiment_id
            if exp.tags.get(EXPERIMENT_KIND_TAG) is None:  # an experiment made before this tag
                client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        if parent_run_id is None:
            run = client.create_run(exp_id, run_name=study_name, tags={"study": study_name, "role": "study",
                                                                      "code_version": code_version()})
            parent_run_id = run.info.run_id
        else:
            client.update_run(parent_run_id, status="RUNNING")
        return cls(uri, exp_id, parent_run_id)

    @classmethod
    def of_run(cls, uri: str, parent_run_id: str) -> StudyTracker:
        """The tracker of an existing study run (its experiment read from MLflow)."""
        return cls(uri, MlflowClient(uri).get_run(parent_run_id).info.experiment_id, parent_run_id)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(node_uri(self.uri))

    def child_runs(self, role: str | None = ROLE_TRIAL, *, running: bool = False) -> list[Any]:
        """Child runs of the study (optionally only trials or only bases; only the RUNNING ones with
        ``running``), oldest first."""
        filt = f"tags.mlflow.parentRunId = '{self.parent_run_id}'"
        if role is not None:
            filt += f" and tags.role = '{role}'"
        if running:
            filt += " and attributes.status = 'RUNNING'"
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

    def tags(self) -> dict[str, str]:
        """The run's tags as MLflow holds them now."""
        return dict(MlflowClient(node_uri(self.uri)).get_run(self.run_id).data.tags)

    def logged_steps(self, metric: str) -> set[int]:
        """The steps (epochs) at which ``metric`` was logged on this run."""
        return {m.step for m in MlflowClient(node_uri(self.uri)).get_metric_history(self.run_id, metric)}

    def set_tags(self, tags: Mapping[str, str]) -> None:
        client = MlflowClient(node_uri(self.uri))
        for k, v in tags.items():
            client.set_tag(self.run_id, k, v)

    def log_datasets(self, lists: Mapping[str, Path], root: Path | None = None) -> None:
        """List the data lists this run reads (context → list file, e.g. ``{"training": …, "validation": …}``)
        as MLflow datasets: named by the list's folder and file, with the list's content digest and, as the
        profile, its videos and classes. A retried run that lists them already logs nothing."""
        from vared_core.data import read_list

        client = MlflowClient(node_uri(self.uri))
        if client.get_run(self.run_id).inputs.dataset_inputs:
            return
        inputs = []
        for context, path in lists.items():
            path = Path(path).absolute()
            videos = read_list(path, root=root)
            dataset = Dataset(name=f"{path.parent.name}/{path.name}", digest=hashlib.sha256(path.read_bytes()).hexdigest()[:8],
                              source_type="local", source=json.dumps({"uri": path.as_uri()}),
                              profile=json.dumps({"videos": len(videos.records), "classes": len(videos.classes)}))  # fmt: skip
            inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
        client.log_inputs(self.run_id, datasets=inputs)

    @contextlib.contextmanager
    def system_metrics(self, interval: float | None) -> Iterator[None]:
        """MLflow's system metrics (``system/cpu_utilization_percentage``, memory, GPU, …) of this process's
        machine, one sample every ``interval`` seconds while the block runs; ``None``: none."""
        if interval is None:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, resume_logging=True,
                                       tracking_uri=node_uri(self.uri))  # fmt: skip
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        MlflowClient(node_uri(self.uri)).log_artifacts(self.run_id, str(local_dir), artifact_path)

    def end(self, status: str = RunStatus.to_string(RunStatus.FINISHED)) -> None:
        MlflowClient(node_uri(self.uri)).set_terminated(self.run_id, status=status)


def latest_baseline_run(uri: str, experiment: str, study: str, exclude: str | None) -> str | None:
    """The newest study run of ``study`` tagged ``nightly=pass`` or ``nightly.baseline=true`` (other than
    ``exclude``), or ``None``: the baseline a nightly compares against by default."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = []
    for tag in ("tags.nightly = 'pass'", "tags.`nightly.baseline` = 'true'"):  # MLflow filters have no OR
        found += client.search_runs([exp.experiment_id], f"tags.role = 'study' and tags.study = '{study}' and {tag}",
                                    max_results=5, order_by=["attributes.start_time DESC"])  # fmt: skip
    found = sorted((r for r in found if r.info.run_id != exclude), key=lambda r: r.info.start_time, reverse=True)
    return found[0].info.run_id if found else None


def record_nightly(uri: str, run_id: str, *, verdict: str, baseline_source: str, regressions: int,
                   is_baseline: bool, report_folder: Path) -> None:  # fmt: skip
    """Tag a nightly's study run with its verdict (``nightly=pass|fail|error``), where its baseline came
    from and whether it is now a baseline; log its regression count and its report folder as
    ``nightly/``."""
    client = MlflowClient(uri)
    client.set_tag(run_id, "nightly", verdict)
    if is_baseline:
        client.set_tag(run_id, "nightly.baseline", "true")
    client.set_tag(run_id, "nightly.baseline_source", baseline_source[:5000])
    client.log_metric(run_id, "nightly_regressions", float(regressions))
    client.log_artifacts(run_id, str(report_folder), "nightly")


def load_study_state(storage: Path) -> dict[str, Any]:
    """The study-state file in ``storage`` (``{}`` when the study never ran there)."""
    p = Path(storage) / STATE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def save_study_state(storage: Path, state: dict[str, Any]) -> None:
    """Write the study-state file atomically (a kill mid-write leaves the old one)."""
    tmp = Path(storage) / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, Path(storage) / STATE_FILE)


def study_params(study: Study) -> dict[str, Any]:
    """The study's fixed settings as dotted params (``data.batch_size``, ``trial.epochs``, ``search.sampler``,
    …): everything but its axes (the trials' own params) and its description."""
    from vared_core.engine.dotted import flatten_dotted

    tree = study.model_dump(mode="json", exclude={"description", "nightly"})
    search = tree.pop("search")
    tree["search"] = {"axes": ",".join([*search["grid"], *search["sample"]]),
                      **{k: v for k, v in search.items() if k not in ("grid", "sample")}}  # fmt: skip
    return {k: v for k, v in flatten_dotted(tree).items() if v is not None}


def study_yaml(study: Study) -> str:
    """The study as it runs, as a study file: ``--set`` overrides applied, relative paths made absolute."""
    import yaml

    head = f"# {study.name}: the study as it ran" + (f", from {study.source}" if study.source else "") + \
        " (--set overrides applied, paths absolute)\n"
    return head + yaml.safe_dump(study.model_dump(mode="json", exclude_unset=True), sort_keys=False, allow_unicode=True)


def describe_study(tracker: StudyTracker, study: Study) -> None:
    """Give the study's parent run the study itself: its description (the run's description in the UI), the
    resolved study file as ``study.yaml`` (`study_yaml`), and its fixed settings as params (`study_params`;
    a resumed run keeps the params it has, as MLflow params never change)."""
    client = tracker.client
    if study.description:
        client.set_tag(tracker.parent_run_id, DESCRIPTION_TAG, study.description)
    TrialRun(tracker.uri, tracker.parent_run_id).log_params(study_params(study))
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / STUDY_FILE).write_text(study_yaml(study))
        client.log_artifact(tracker.parent_run_id, str(Path(d) / STUDY_FILE))


def axes_name(axes: Mapping[str, Any]) -> str:
    """A trial's run name from its axes, e.g. ``both · λe 0.83``: text values as they are, numbers with a
    short label and three significant digits.

    Example:
        >>> axes_name({"dims": "both", "lambda_e": 0.8312})
        'both · λe 0.831'
    """
    parts = []
    for k, v in axes.items():
        label = _AXIS_LABELS.get(k, k)
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, float):
            parts.append(f"{label} {v:.3g}")
        else:
            parts.append(f"{label} {v}")
    return " · ".join(parts)


class StudyTrials(NamedTuple):
    """A study's trials as MLflow recorded them, one dict each (trial_id, run_id, metrics, params,
    status, error): ``done`` ran to the end, ``failed`` raised or were cut off, ``stopped`` were stopped
    early by the scheduler (ASHA) and are neither failures nor candidates for the front. Runs tagged
    orphaned (see `close_orphans`) are in none of the lists."""

    done: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    stopped: list[dict[str, Any]]


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


def close_orphans(tracker: StudyTracker, listed_trials: set[str]) -> list[str]:
    """End the RUNNING trial runs whose trial id is not in ``listed_trials`` (the trials Tune's finished
    experiment lists), and return their run ids.

    A driver killed while Tune copied its state can lose a trial that had already opened its MLflow
    run; on resume `CellSearch` runs that trial again under a new id. The old run would stay RUNNING:
    it is ended KILLED and tagged ``orphaned=true`` (its metrics stay recorded), and `study_trials`
    leaves it out. A RUNNING run of a trial Tune does list (a crashed worker) is left as it is.
    """
    return _end_running(tracker, lambda trial_id: trial_id not in listed_trials, ORPHANED_TAG)


def close_stopped(tracker: StudyTracker, terminated: set[str]) -> list[str]:
    """End KILLED, tagged ``stopped_early``, the RUNNING runs of trials Tune lists as terminated (``terminated``),
    and return their run ids.

    A trial that runs to its end ends its run before Tune learns it is done; one still RUNNING when Tune has
    terminated it was stopped by the scheduler (ASHA) before its own code could end the run: a data-parallel
    trial's actor is ended right after the stop (see `stopped_runs`).
    """
    return _end_running(tracker, lambda trial_id: trial_id in terminated, STOPPED_TAG)


def _end_running(tracker: StudyTracker, which: Callable[[str | None], bool], tag: str) -> list[str]:
    """End KILLED, tagged ``tag=true``, the RUNNING trial runs whose trial id ``which`` picks; their run ids."""
    ended = [r.info.run_id for r in tracker.child_runs(running=True) if which(r.data.tags.get("trial_id"))]
    for run_id in ended:
        tracker.client.set_tag(run_id, tag, "true")
        tracker.client.set_terminated(run_id, status="KILLED")
    return ended


def trial_tags(study: str, cell: Mapping[str, Any], sampled: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A trial's axes (its grid cell, then its sampled values) and the tags that identify its run: the study,
    the cell as stable text (``cell``) and every axis (``axis.<name>``)."""
    axes = {**cell, **sampled}
    tags = {"study": study, "cell": json.dumps(dict(cell), sort_keys=True, default=str),
            **{f"axis.{k}": str(v) for k, v in axes.items()}}  # fmt: skip
    return axes, tags


def record_errors(tracker: StudyTracker, study: str, errored: Mapping[str, tuple[dict[str, Any], str]]) -> list[str]:
    """Make every trial Tune ended in error (``errored``: trial id → (its Tune config ``{"cell": …,
    **sampled}``, Tune's error text)) a FAILED run with that error: a run left RUNNING (its process could not
    reach MLflow to end it) is ended so; a trial that errored before it opened its run gets one, with its
    axes, so `study_trials` lists it as failed instead of it missing from MLflow. Returns the run ids."""
    have = {r.data.tags.get("trial_id"): r for r in tracker.child_runs()}
    made = []
    for trial_id, (config, error) in errored.items():
        if trial_id in have:
            run = have[trial_id]
            if run.info.status == "RUNNING":
                tracker.client.set_tag(run.info.run_id, "error", error[-5000:])
                tracker.client.set_terminated(run.info.run_id, status="FAILED")
                made.append(run.info.run_id)
            continue
        axes, tags = trial_tags(study, config.get("cell", {}), {k: v for k, v in config.items() if k != "cell"})
        run = tracker.trial_run(trial_id, name=axes_name(axes) or trial_id, tags={**tags, "error": error[-5000:]})
        run.log_params({f"axis.{k}": v for k, v in axes.items()})
        run.end(RunStatus.to_string(RunStatus.FAILED))
        made.append(run.run_id)
    return made


def log_front(study: Study, tracker: StudyTracker, trials: list[dict[str, Any]]) -> Front:
    """Compute the study's front over ``trials`` and log it to the parent run: ``pareto_size``,
    ``num_trials`` and ``hypervolume`` metrics, ``pareto/front.json`` (the front as a table),
    ``pareto/front_all.json``, a PNG and an HTML scatter; every trial run gets ``pareto=true|false``."""
    from .front_plots import plot_front_html, plot_front_png
    from .pareto import compute_front

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
