"""From a `DataConfig` and a backbone's defaults to the train and validation datasets.

Synthetic data is written on first use into ``synthetic.root`` and reused afterwards: a run (or many
trials of a study at once) finds it by the parameters recorded next to it, and a half-written set is
never visible, since it is generated in a temporary sibling folder and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vared_core.data import IMAGENET_MEAN, IMAGENET_STD, VideoDataset, make_dataset, make_synthetic
from vared_core.models import ModelCfg

from .config import DataConfig, SyntheticData

__all__ = ["ClipGeometry", "build_datasets", "clip_geometry", "data_lists", "ensure_synthetic"]

_MARKER = "synthetic.json"
#: how the appearance cue is drawn, recorded with every set that has one: 2 = the scene white-balanced per
#: frame to a cast of 64 grey levels (version 1, unrecorded, offset the texture-wide mean by 40: refused)
_CUE_VERSION = 2


def ensure_synthetic(spec: SyntheticData) -> tuple[Path, Path]:
    """Write the synthetic set ``spec`` describes unless it is already there; return (train, val) lists.

    Raises:
        ValueError: when ``spec.root`` holds something else (another synthetic set, or other files).
    """
    root = Path(spec.root).absolute()
    wanted = spec.model_dump(mode="json", exclude={"root"})
    if wanted["appearance_fast"] is None:  # sets written before these existed have no such keys
        del wanted["appearance_fast"]
    if wanted["cast_fast"] == 1.0:
        del wanted["cast_fast"]
    if not wanted["appearance"] and not wanted.get("appearance_fast"):  # nor, before the cue, this one
        del wanted["appearance"]
    else:
        wanted["cue_version"] = _CUE_VERSION
    marker = root / _MARKER
    if not marker.exists():
        if root.exists() and any(root.iterdir()):
            raise ValueError(f"data.synthetic.root: {root} exists and is not a synthetic set written by vared")
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            make_synthetic(tmp, **{k: v for k, v in wanted.items() if k != "cue_version"})
            (tmp / _MARKER).write_text(json.dumps(wanted, indent=2), encoding="utf-8")
            try:
                if root.exists():
                    root.rmdir()  # an empty folder made beforehand
                os.rename(tmp, root)
            except OSError:
                if not marker.exists():  # not another process that won the race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    found = json.loads(marker.read_text(encoding="utf-8"))
    if found != wanted:
        diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
        raise ValueError(
            f"data.synthetic.root: {root} holds a synthetic set with other parameters "
            f"(found vs wanted: {diff}); pick another root or delete it"
        )
    return root / "train.csv", root / "val.csv"


@dataclass(frozen=True)
class ClipGeometry:
    """How clips are cut for one backbone: the config's values, the backbone's defaults where unset."""

    num_frames: int
    frame_stride: int
    crop_size: int
    test_crop_size: int
    sampling: str  # "dense" or "segment" (`ModelCfg.sampling`, `make_dataset`)
    test_clips: int = 1  # K of K-LeftCenterRight
    test_crops: int = 1  # 3: left, centre, right
    mean: tuple[float, ...] = IMAGENET_MEAN  # the backbone's input normalisation
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return (3, self.num_frames, self.crop_size, self.crop_size)

    @property
    def test_clip_shape(self) -> tuple[int, int, int, int]:
        return (3, self.num_frames, self.test_crop_size, self.test_crop_size)


def clip_geometry(data: DataConfig, model_cfg: ModelCfg) -> ClipGeometry:
    crop = data.crop_size or model_cfg.crop_size
    clips = data.test_clips or (min(model_cfg.test_clips, 3) if data.protocol == "moments" else model_cfg.test_clips)
    return ClipGeometry(
        num_frames=data.num_frames or model_cfg.num_frames,
        frame_stride=data.frame_stride or model_cfg.frame_stride or 1,
        crop_size=crop,
        # a crop set in the config sets the test crop too, unless that is set on its own
        test_crop_size=data.test_crop_size or (crop if data.crop_size else model_cfg.test_crop_size),
        sampling=model_cfg.sampling,
        test_clips=clips,
        test_crops=data.test_crops or model_cfg.test_crops,
        mean=tuple(model_cfg.mean),
        std=tuple(model_cfg.std),
    )


def data_lists(data: DataConfig) -> tuple[Path, Path]:
    """The (train, val) list files of ``data``: its own lists, or the synthetic set's (written if missing)."""
    if data.synthetic is not None:
        return ensure_synthetic(data.synthetic)
    assert data.train_list is not None and data.val_list is not None  # guaranteed by DataConfig
    return Path(data.train_list), Path(data.val_list)


def build_datasets(data: DataConfig, model_cfg: ModelCfg, *, seed: int) -> tuple[VideoDataset, VideoDataset]:
    """(train, val) datasets: random training clips; ``test_clips`` × ``test_crops`` views per val video; both
    normalised with the backbone's own statistics."""
    train_list, val_list = data_lists(data)
    geo = clip_geometry(data, model_cfg)
    common = dict(
        num_frames=geo.num_frames, stride=geo.frame_stride, sampling=geo.sampling, seed=seed,
        root=data.root, classes=data.classes, mean=geo.mean, std=geo.std,
    )
    train = make_dataset(train_list, train=True, size=geo.crop_size, flip=data.flip, **common)
    val = make_dataset(
        val_list, train=False, size=geo.test_crop_size, clips=geo.test_clips, crops=geo.test_crops,
        classes=train.classes, **{k: v for k, v in common.items() if k != "classes"},
    )
    return train, val
