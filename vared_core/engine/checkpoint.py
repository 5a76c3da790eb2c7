"""Checkpoints: one folder per saved epoch, loadable with ``torch.load(weights_only=True)``.

Layout under a run's ``output_dir``::

    checkpoints/epoch_0003/checkpoint.pt   model, optimizer, scheduler, scaler, epoch, RNG, config, metrics
    checkpoints/epoch_0003/config.yaml     the run's TrainConfig, for humans
    replaced/<UTC time>/...                what a run starting over found there (`set_aside_later`)

A folder appears complete or not at all (written under a temporary name, then renamed), so a run
killed mid-save leaves the previous checkpoint usable.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from .config import upgrade_stored_config

__all__ = [
    "CheckpointError", "FORMAT", "checkpoint_dirs", "latest_checkpoint", "load_checkpoint", "save_checkpoint",
    "set_aside_later",
]

FORMAT = "vared-checkpoint/1"
_FILE = "checkpoint.pt"
_EPOCH_DIR = re.compile(r"^epoch_(\d{4,})$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the run asking for it."""


def save_checkpoint(
    output_dir: str | os.PathLike[str], state: dict[str, Any], *, epoch: int, keep: int | None = None
) -> Path:
    """Write ``state`` as ``checkpoints/epoch_{epoch:04d}`` under ``output_dir``; keep the newest ``keep``.

    ``state`` must hold only what ``weights_only`` loading accepts (tensors, state dicts, numbers,
    strings, lists, dicts); it should carry ``"config"`` (a plain dict). Returns the folder.
    """
    base = Path(output_dir) / "checkpoints"
    base.mkdir(parents=True, exist_ok=True)
    final = base / f"epoch_{epoch:04d}"
    tmp = base / f".tmp_{final.name}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save({"format": FORMAT, "epoch": epoch, **state}, tmp / _FILE)
    if "config" in state:
        (tmp / "config.yaml").write_text(yaml.safe_dump(state["config"], sort_keys=False), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    if keep is not None:
        for old in checkpoint_dirs(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _epoch_dirs(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(epoch, folder) of a run's complete checkpoints, oldest first."""
    base = Path(output_dir) / "checkpoints"
    if not base.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in base.iterdir()
                  if (m := _EPOCH_DIR.match(p.name)) and (p / _FILE).is_file())  # fmt: skip


def checkpoint_dirs(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    return [p for _, p in _epoch_dirs(output_dir)]


def set_aside_later(output_dir: str | os.PathLike[str], epoch: int) -> Path | None:
    """Move the checkpoints of ``output_dir`` past ``epoch`` to ``replaced/<UTC time>/``; return that folder.

    For a run about to start after ``epoch`` (0: from scratch) in a folder that already holds later
    checkpoints: those of an earlier run of the folder, or of an attempt that got further than the checkpoint
    now resumed. Left in place, they would count as this run's newest, so pruning to the newest ``keep``
    would delete this run's own checkpoints and ``resume_from="last"`` would pick theirs. Starting from
    scratch, the run's ``metrics.jsonl`` (which the new run rewrites) goes along. Nothing is deleted.
    """
    later = [p for e, p in _epoch_dirs(output_dir) if e > epoch]
    if not later:
        return None
    out = Path(output_dir)
    dest = out / "replaced" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    n = 1
    while dest.exists():  # two set-asides within a second
        n += 1
        dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
    (dest / "checkpoints").mkdir(parents=True)
    for p in later:
        p.rename(dest / "checkpoints" / p.name)
    if epoch == 0 and (out / "metrics.jsonl").is_file():
        (out / "metrics.jsonl").rename(dest / "metrics.jsonl")
    return dest


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder of a run, or ``None``."""
    dirs = checkpoint_dirs(output_dir)
    return dirs[-1] if dirs else None


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint folder (or its ``checkpoint.pt``) with ``weights_only=True``.

    Raises:
        CheckpointError: naming the path when it is missing, unreadable or not a vared checkpoint.
    """
    p = Path(path)
    file = p / _FILE if p.is_dir() else p
    if not file.is_file():
        raise CheckpointError(f"{p}: no checkpoint here (expected a checkpoint folder or a {_FILE} file)")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{file}: cannot be read as a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{file}: not a {FORMAT} checkpoint (format: {found!r})")
    for key in ("model", "config", "epoch"):
        if key not in state:
            raise CheckpointError(f"{file}: checkpoint has no {key!r} entry")
    state["config"] = upgrade_stored_config(state["config"])
    return state
