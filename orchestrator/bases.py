"""The one identity of a shared base model: the hash of its full training config.

Every grid cell whose values leave the base recipe the same shares one base model. Its id is the
content hash of the base `TrainConfig` (its output folder left out), so the same recipe in a later
cell, a later study or a resumed one finds the finished model again in ``<storage>/bases/<id>``; the
id also names the base's MLflow run (``trial_id`` tag ``base-<id>``) and keys the base tasks a run
hands to its trials.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .schema import Study
from .tracking import BASE_DONE_FILE

__all__ = ["base_folder", "base_id", "base_overrides", "is_trained"]


def base_overrides(study: Study, cell: dict[str, Any]) -> dict[str, Any]:
    """The values of a grid cell that change the base model (`Study.base_keys`)."""
    keys = study.base_keys()
    return {k: v for k, v in cell.items() if k in keys}


def base_id(study: Study, overrides: dict[str, Any]) -> str:
    """The base model's id: 16 hex digits of the hash of its config without the output folder."""
    cfg = study.base_config(Path("_"), overrides).to_dict()
    cfg.pop("output_dir", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def base_folder(study: Study, overrides: dict[str, Any]) -> Path:
    """Where the base model with these overrides trains and stays: ``<storage>/bases/<id>``."""
    return Path(study.storage).absolute() / "bases" / base_id(study, overrides)


def is_trained(folder: Path) -> bool:
    """Whether the base model in ``folder`` finished training (so it is reused, not trained again)."""
    return (Path(folder) / BASE_DONE_FILE).exists()
