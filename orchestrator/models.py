"""A study's front as registered MLflow models: where a researcher picks a trade-off and loads it.

After a study's front is computed (`run.run_study`), every front trial's final checkpoint becomes an MLflow
model (PyTorch flavour, pickled module, with an input example, its signature and the run's `TrainConfig`
as metadata), logged as ``model`` on the trial's run and registered as a version of the study's model
(`Study.model_name`, the study name unless ``tracking.model_name`` says otherwise). Its aliases name the
trade-off: ``front-0`` is the cheapest front point … ``front-k`` the most accurate. A re-run or resumed
study moves the aliases to its own front and never registers one trial run twice.

    orchestrator models studies/smoke.yaml                        # the versions and their aliases
    model, config = load_model("models:/smoke@front-0")           # in any process that reaches the store

`load_model` returns the module and its `TrainConfig`, ready for `vared_core.engine.evaluate`;
``mlflow.pytorch.load_model("models:/smoke@front-0")`` gives the same module alone.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:
    from torch import nn

    from vared_core.engine import TrainConfig

    from .pareto import Front, FrontPoint
    from .schema import Study
    from .tracking import StudyTracker

__all__ = ["ALIAS_PREFIX", "FrontModel", "front_models", "load_model", "register_front", "trade_off_order"]

ALIAS_PREFIX = "front-"  # front-0 the cheapest … front-k the most accurate
MODEL_PATH = "model"  # the artifact folder of the logged model on the trial's run
_CONFIG_KEY = "train_config"  # the run's TrainConfig in the MLmodel metadata


@dataclass(frozen=True)
class FrontModel:
    """One registered version of a study's model."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    trial_id: str
    metrics: dict[str, float]

    @property
    def uri(self) -> str:
        """``models:/name@alias`` when the version has an alias, else ``models:/name/version``."""
        return f"models:/{self.name}@{self.aliases[0]}" if self.aliases else f"models:/{self.name}/{self.version}"


def trade_off_order(points: Sequence[FrontPoint], objectives: dict[str, str]) -> list[FrontPoint]:
    """Front points from the cheapest to the most accurate: by the first minimised objective (GFLOPs) rising,
    ties by the first maximised one; with no minimised objective, by the first objective from worst to best."""
    mins = [k for k, s in objectives.items() if s == "min"]
    maxs = [k for k, s in objectives.items() if s == "max"]
    if mins:
        return sorted(points, key=lambda p: (p.values[mins[0]], -p.values[maxs[0]] if maxs else 0.0))
    first = next(iter(objectives))
    return sorted(points, key=lambda p: p.values[first])


def _log_model(client: MlflowClient, run_id: str, trial_id: str, study: Study) -> str:
    """Log the trial run's final checkpoint as an MLflow PyTorch model under ``model``; returns its source URI."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    import vared_core
    from vared_core.engine import clip_geometry, load_model as load_checkpoint_model
    from vared_core.models import get_model_cfg

    with tempfile.TemporaryDirectory() as d:
        checkpoint = Path(client.download_artifacts(run_id, "checkpoint", d))
        model, config = load_checkpoint_model(checkpoint)
        model.eval()
        geo = clip_geometry(config.data, get_model_cfg(config.model))
        example = torch.randn(1, 3, geo.num_frames, geo.test_crop_size, geo.test_crop_size,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
        with torch.no_grad():
            logits = model(example)
        folder = Path(d) / MODEL_PATH
        mlflow.pytorch.save_model(
            model, str(folder), serialization_format="pickle",  # dynamic layers are data-dependent: no torch.export
            signature=infer_signature(example.numpy(), logits.numpy()), input_example=example.numpy(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"vared=={vared_core.__version__}"],
            metadata={_CONFIG_KEY: config.to_dict(), "study": study.name, "trial_id": trial_id},
        )  # fmt: skip
        client.log_artifacts(run_id, str(folder), MODEL_PATH)
    return f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"


def register_front(study: Study, tracker: StudyTracker, front: Front, trials: list[dict[str, Any]]) -> list[FrontModel]:
    """Register the front's trials as versions of the study's model and point ``front-0`` … ``front-k`` at them
    (see the module doc); aliases beyond this front's size are removed. Returns the front's versions, cheapest first."""
    client = tracker.client
    name = study.model_name()
    try:
        client.create_registered_model(name, tags={"study": study.name},
                                       description=f"Front models of the study {study.name!r}: " +
                                                   f"{ALIAS_PREFIX}0 the cheapest … the most accurate.")  # fmt: skip
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    runs = {t["trial_id"]: t for t in trials}
    objectives = dict(study.objectives)
    registered = []
    for i, point in enumerate(trade_off_order(front.front, objectives)):
        trial = runs[point.trial_id]
        found = client.search_model_versions(f"name = '{name}' and run_id = '{trial['run_id']}'")
        if found:
            version = found[0].version
        else:
            source = _log_model(client, trial["run_id"], point.trial_id, study)
            tags = {"trial_id": point.trial_id, "study": study.name,
                    **{k: f"{v:.6g}" for k, v in point.values.items()}}  # fmt: skip
            version = client.create_model_version(name, source, run_id=trial["run_id"], tags=tags).version
        client.set_registered_model_alias(name, f"{ALIAS_PREFIX}{i}", version)
        registered.append(str(version))
    stale = [a for a in client.get_registered_model(name).aliases
             if a.startswith(ALIAS_PREFIX) and a[len(ALIAS_PREFIX):].isdigit() and int(a[len(ALIAS_PREFIX):]) >= len(registered)]  # fmt: skip
    for alias in stale:
        client.delete_registered_model_alias(name, alias)
    by_version = {m.version: m for m in front_models(client, name)}
    return [by_version[v] for v in registered]


def front_models(client: MlflowClient, name: str) -> list[FrontModel]:
    """Every version of the registered model ``name``, those with ``front-*`` aliases first in alias order."""
    try:
        aliases = client.get_registered_model(name).aliases  # alias → version (searches leave aliases out)
    except MlflowException:
        return []
    models = [FrontModel(name, str(v.version), tuple(sorted(a for a, n in aliases.items() if str(n) == str(v.version))),
                         v.run_id or "", v.tags.get("trial_id", ""),
                         {k: float(x) for k, x in v.tags.items() if k not in ("trial_id", "study")})
              for v in client.search_model_versions(f"name = '{name}'")]  # fmt: skip

    def order(m: FrontModel) -> tuple[int, int]:
        fronts = [int(a[len(ALIAS_PREFIX):]) for a in m.aliases if a[len(ALIAS_PREFIX):].isdigit()]
        return (min(fronts), 0) if fronts else (1 << 30, -int(m.version))

    return sorted(models, key=order)


def load_model(uri: str, *, tracking_uri: str | None = None, device: str = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The module and `TrainConfig` of a logged model: ``models:/smoke@front-0``, ``models:/smoke/3``,
    ``runs:/<run_id>/model`` or a local folder. ``tracking_uri``: the store to resolve it in (default
    ``MLFLOW_TRACKING_URI`` / ``mlflow.set_tracking_uri``)."""
    import mlflow.artifacts
    import mlflow.pytorch
    from mlflow.models import Model

    from vared_core.engine import TrainConfig

    source = uri
    if uri.startswith("models:/"):  # resolved in the given store (MLflow would use the process-wide registry)
        client = MlflowClient(tracking_uri)
        name, sep, alias = uri[len("models:/"):].partition("@")
        if sep:
            source = client.get_model_version_by_alias(name, alias).source
        else:
            name, _, version = name.partition("/")
            source = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory() as d:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=d, tracking_uri=tracking_uri)
        metadata = Model.load(local).metadata or {}
        if _CONFIG_KEY not in metadata:
            raise ValueError(f"{uri}: not a vared model (its MLmodel has no {_CONFIG_KEY!r} metadata)")
        model = mlflow.pytorch.load_model(local, map_location=device)
    return model, TrainConfig.model_validate(metadata[_CONFIG_KEY])
