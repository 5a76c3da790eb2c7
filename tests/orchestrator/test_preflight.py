"""The storage checks `run_study` makes before any trial starts, on real folders and checkpoints."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.preflight import PreflightError, check_checkpoints, check_storage
from orchestrator.run import run_study
from orchestrator.study_lock import LOCK_FILE
from orchestrator.tracking import BASE_DONE_FILE
from orchestrator.validation import load_study
from vared_core.engine import save_checkpoint


def test_a_storage_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(PreflightError, match=rf"storage {tmp_path / 'a_file' / 'study'}: not writable"):
        check_storage(tmp_path / "a_file" / "study", 0.0)
    assert check_storage(tmp_path / "new" / "study", 0.0).is_dir()
    assert list((tmp_path / "new" / "study").iterdir()) == []  # the probe is gone


def test_a_storage_without_the_free_space_is_named(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free / 1e9
    with pytest.raises(PreflightError, match=rf"storage {tmp_path}: .* GB free, .*min_free_gb {free * 2:g}"):
        check_storage(tmp_path, free * 2)


def _cached_base(storage: Path) -> Path:
    folder = storage / "bases" / "abc"
    ckpt = save_checkpoint(folder, {"model": {"w": torch.zeros(64)}, "config": {"model": "m"}}, epoch=1)
    (folder / BASE_DONE_FILE).write_text(json.dumps({"checkpoint": str(ckpt), "metrics": {}}))
    return ckpt / "checkpoint.pt"


def test_a_truncated_cached_base_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    file = _cached_base(tmp_path)
    check_checkpoints(tmp_path, resume=False, experiment="trials")  # whole: fine
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(PreflightError, match=rf"{file}: cannot be read as a checkpoint .* base model is trained again"):
        check_checkpoints(tmp_path, resume=False, experiment="trials")


def test_a_refused_run_changes_nothing_in_mlflow_and_leaves_no_lock(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "refused"))
    storage = Path(study.storage)
    client = MlflowClient(study.tracking_uri())  # a store holding an earlier run of the study
    experiment = client.create_experiment(study.experiment_name())
    client.create_run(experiment, tags={"role": "study"})
    db = storage / "mlflow.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    file = _cached_base(storage)
    file.write_bytes(file.read_bytes()[:200])
    for resume in (False, True):
        with pytest.raises(PreflightError, match=str(file)):
            run_study(study, resume=resume, verbose=0)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (storage / LOCK_FILE).exists() and not (storage / "ray").exists()
