"""What `run_study` checks of the study's storage before any trial starts (`PreflightError` names the path).

* `check_storage`: the folder can be created and written (a probe file is written and removed) and has
  ``min_free_gb`` free: a study that would fail on its first checkpoint fails here instead, before its
  MLflow runs are opened.
* `check_checkpoints`: every checkpoint the run would start from is readable: the cached base models'
  (``storage/bases/*``) and, on ``--resume``, each unfinished trial's newest Tune checkpoint. A truncated
  or foreign file is refused naming it, before anything in MLflow changes (a cached base can be deleted
  and is trained again).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from vared_core.engine import CheckpointError, load_checkpoint

__all__ = ["PreflightError", "check_checkpoints", "check_storage", "resume_checkpoints"]


class PreflightError(RuntimeError):
    """The study's storage cannot hold the run, or a checkpoint it would start from is unreadable."""


def check_storage(storage: str | os.PathLike[str], min_free_gb: float, *, field: str = "storage") -> Path:
    """Create ``storage`` if needed and check that it is writable with ``min_free_gb`` GB free; return it.

    Raises:
        PreflightError: naming the folder (and the study's ``field``) and what failed.
    """
    folder = Path(storage).absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{uuid.uuid4().hex}"
        with probe.open("wb") as f:  # os.access says yes to root on a read-only mount: write for real
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise PreflightError(f"{field} {folder}: not writable ({e.strerror or e})") from None
    free_gb = shutil.disk_usage(folder).free / 1e9
    if free_gb < min_free_gb:
        raise PreflightError(f"{field} {folder}: {free_gb:.2f} GB free, the study needs at least "
                             f"min_free_gb {min_free_gb:g} GB there")  # fmt: skip
    return folder


def resume_checkpoints(experiment_dir: Path) -> dict[str, Path]:
    """Trial id → the newest checkpoint folder Tune would restore each unfinished trial from."""
    states = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    if not states:
        return {}
    found = {}
    for state, _ in json.loads(states[-1].read_text())["trial_data"]:
        trial = json.loads(state) if isinstance(state, str) else state
        if trial.get("status") == "TERMINATED":
            continue
        logdir = trial.get("relative_logdir")  # the trial's folder in the experiment
        folders = sorted((Path(experiment_dir) / logdir).glob("checkpoint_*")) if logdir else []
        if folders:
            found[trial.get("trial_id", logdir)] = folders[-1]
    return found


def check_checkpoints(storage: Path, *, resume: bool, experiment: str) -> None:
    """Load every checkpoint the run would start from (see the module doc).

    Raises:
        PreflightError: naming the unreadable file and what to do.
    """
    from .tracking import BASE_DONE_FILE

    for marker in sorted((storage / "bases").glob(f"*/{BASE_DONE_FILE}")):
        try:
            checkpoint = Path(json.loads(marker.read_text())["checkpoint"])
        except (OSError, ValueError, KeyError) as e:
            raise PreflightError(f"{marker}: cannot be read ({e}); delete it and the base model is trained "
                                 "again") from None  # fmt: skip
        _load(checkpoint, f"base model checkpoint (cached, see {marker.name}); delete {marker.parent} and the "
                          "base model is trained again")  # fmt: skip
    if resume:
        for trial_id, folder in resume_checkpoints(storage / "ray" / experiment).items():
            _load(folder, f"the checkpoint trial {trial_id} would resume from (Tune's newest for it); restore "
                          "it, or run the study again in a fresh storage")  # fmt: skip


def _load(path: Path, what: str) -> None:
    try:
        load_checkpoint(path)
    except CheckpointError as e:
        raise PreflightError(f"{e} — {what}") from None
