"""`ensure_synthetic`: a synthetic set is written once, found again by its parameters, refused when they differ."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vared_core.engine import DataConfig, SyntheticData, ensure_synthetic

_SMALL = dict(classes=2, videos_per_class=4, frames=4, size=32, seed=0)


def test_a_set_is_written_once_and_reused(tmp_path: Path) -> None:
    spec = SyntheticData(root=tmp_path / "synth", **_SMALL)
    train, val = ensure_synthetic(spec)
    assert train.read_text().count("\n") == 1 + 6 and val.read_text().count("\n") == 1 + 2
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "synth").rglob("*.mp4")}
    assert ensure_synthetic(spec) == (train, val)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not written again
    marker = json.loads((tmp_path / "synth" / "synthetic.json").read_text())
    assert "appearance" not in marker and "cue_version" not in marker  # a set without the cue, as before it existed


def test_other_parameters_are_refused_by_field(tmp_path: Path) -> None:
    ensure_synthetic(SyntheticData(root=tmp_path / "synth", **_SMALL))
    with pytest.raises(ValueError, match=r"data\.synthetic\.root: .*synth holds a synthetic set with other parameters"
                                         r".*'frames': \(4, 6\)"):
        ensure_synthetic(SyntheticData(root=tmp_path / "synth", **{**_SMALL, "frames": 6}))


def test_a_cue_set_records_how_its_cue_was_drawn_and_an_older_one_is_refused(tmp_path: Path) -> None:
    spec = SyntheticData(root=tmp_path / "synth", appearance=1.0, appearance_fast=0.0, **_SMALL)
    ensure_synthetic(spec)
    marker_file = tmp_path / "synth" / "synthetic.json"
    marker = json.loads(marker_file.read_text())
    assert marker["appearance"] == 1.0 and marker["appearance_fast"] == 0.0 and marker["cue_version"] == 2
    del marker["cue_version"], marker["appearance_fast"]  # what a set of the first cue recorded
    marker_file.write_text(json.dumps(marker))
    with pytest.raises(ValueError, match=r"other parameters .*'cue_version': \(None, 2\)"):
        ensure_synthetic(spec.model_copy(update={"appearance_fast": None}))


def _data(tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(synthetic=SyntheticData(root=tmp_path / "synth", **{**_SMALL, "frames": 8}),
                      num_frames=4, frame_stride=1, crop_size=32, flip=False, **kw)


def test_each_backbone_normalises_with_its_own_statistics(tmp_path: Path) -> None:
    """Real mp4s decoded by decord: R(2+1)D-18 sees Kinetics statistics, X3D-M its own, on the same pixels."""
    from vared_core.engine import build_datasets
    from vared_core.models import get_model_cfg
    from vared_core.models.registry import KINETICS_MEAN, KINETICS_STD

    data = _data(tmp_path, test_clips=1, test_crops=1)
    (_, r2), (_, x3d) = (build_datasets(data, get_model_cfg(m), seed=0) for m in ("r2plus1d_18", "x3d_m"))
    a, b = r2[0]["video"], x3d[0]["video"]
    assert get_model_cfg("r2plus1d_18").mean == KINETICS_MEAN and get_model_cfg("x3d_m").mean != KINETICS_MEAN
    assert not torch.allclose(a, b)
    mean, std = (torch.tensor(v).view(3, 1, 1, 1) for v in (KINETICS_MEAN, KINETICS_STD))
    xm, xs = (torch.tensor(v).view(3, 1, 1, 1) for v in (get_model_cfg("x3d_m").mean, get_model_cfg("x3d_m").std))
    pixels = a * std + mean
    assert torch.allclose(pixels, b * xs + xm, atol=1e-5)
    assert 0 <= pixels.min() and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.01


def test_full_size_backbones_test_k_left_center_right_and_tiny_ones_one_view(tmp_path: Path) -> None:
    from vared_core.engine import build_datasets, clip_geometry
    from vared_core.models import get_model_cfg

    _, val = build_datasets(_data(tmp_path), get_model_cfg("r2plus1d_18"), seed=0)
    assert val[0]["video"].shape == (30, 3, 4, 32, 32) and val.crops == 3  # K = 10 clips × 3 crops
    moments = clip_geometry(_data(tmp_path, protocol="moments"), get_model_cfg("r2plus1d_18"))
    assert (moments.test_clips, moments.test_crops) == (3, 3)
    settable = clip_geometry(_data(tmp_path, test_clips=4, test_crops=1), get_model_cfg("x3d_m"))
    assert (settable.test_clips, settable.test_crops) == (4, 1)
    _, tiny = build_datasets(_data(tmp_path), get_model_cfg("r2plus1d_18_tiny"), seed=0)
    assert tiny[0]["video"].shape == (3, 4, 32, 32) and tiny.crops == 1


def test_clip1_on_real_mp4s_scores_the_middle_clips_centre_crop(tmp_path: Path) -> None:
    """The full-size default protocol on decoded videos: 30 views a video, clip-1 read from view 13 alone."""
    from torch import nn

    from vared_core.dynamic import track_costs
    from vared_core.engine import build_datasets, centre_views, evaluate, score_views
    from vared_core.models import get_model_cfg

    _, val = build_datasets(_data(tmp_path), get_model_cfg("r2plus1d_18"), seed=0)
    torch.manual_seed(0)
    model = track_costs(nn.Sequential(nn.Conv3d(3, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)))
    result = evaluate(model, val, batch_size=2)
    assert result.num_views == 30 and centre_views(30, 3)[0] == 13
    views = torch.stack([val[i]["video"] for i in range(len(val))])
    labels = torch.tensor([val[i]["label"] for i in range(len(val))])
    with torch.no_grad():
        logits = model(views.flatten(0, 1))
    per_view = score_views(logits, labels, 30)["clip_correct"].view(len(val), 30)
    assert result.clip_top1 == pytest.approx(100 * per_view[:, 13].float().mean().item())
