"""The synthetic generator: deterministic bytes, list files, honoured motion levels, learnable labels."""
from __future__ import annotations

import csv
import hashlib
import itertools
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from torch import nn

from vared_core.data import (
    PATTERNS,
    SyntheticInfo,
    class_cast,
    collate_clips,
    make_dataset,
    make_synthetic,
    merge_views,
    render_clip,
    video_scores,
)


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    kwargs = dict(classes=3, videos_per_class=2, frames=8, size=32)
    a = _hashes(make_synthetic(tmp_path / "a", seed=7, **kwargs).root)
    b = _hashes(make_synthetic(tmp_path / "b", seed=7, **kwargs).root)
    c = _hashes(make_synthetic(tmp_path / "c", seed=8, **kwargs).root)
    assert a == b
    assert len(a) == 3 * 2 + 3  # videos + classes.txt, train.csv, val.csv
    videos = [k for k in a if k.endswith(".mp4")]
    assert all(a[k] != c[k] for k in videos)


def test_lists_classes_and_split(synth: SyntheticInfo) -> None:
    assert synth.classes == PATTERNS[:4]
    assert synth.classes_file.read_text().splitlines() == list(PATTERNS[:4])
    rows = {}
    for split, path in (("train", synth.train_list), ("val", synth.val_list)):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == ["path", "label", "motion", "clutter"]
            rows[split] = list(reader)
    assert (len(rows["train"]), len(rows["val"])) == (synth.num_train, synth.num_val) == (72, 24)
    for split_rows in rows.values():
        for label in range(4):
            assert sum(int(r["label"]) == label for r in split_rows) == len(split_rows) // 4
    every = rows["train"] + rows["val"]
    assert {Path(r["path"]).parts[1] for r in every} == set(synth.classes)
    assert all((synth.root / r["path"]).is_file() for r in every)
    for label in range(4):  # levels are balanced within each class
        motion = sorted(int(r["motion"]) for r in every if int(r["label"]) == label)
        clutter = sorted(int(r["clutter"]) for r in every if int(r["label"]) == label)
        assert motion == sorted(list(range(synth.motion_levels)) * (24 // synth.motion_levels))
        assert clutter == sorted(list(range(synth.clutter_levels)) * (24 // synth.clutter_levels))
    reader = decord.VideoReader(str(synth.root / every[0]["path"]), num_threads=1)
    assert len(reader) == synth.frames
    assert tuple(reader[0].shape) == (synth.height, synth.width, 3)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"classes must be in \[1, {len(PATTERNS)}\]"):
        make_synthetic(tmp_path, classes=len(PATTERNS) + 1, videos_per_class=1, frames=4)
    with pytest.raises(ValueError, match="must be even"):
        make_synthetic(tmp_path, classes=1, videos_per_class=1, frames=4, size=33)
    with pytest.raises(ValueError, match=r"decord 0\.6 cannot decode frames 48 pixels wide"):
        make_synthetic(tmp_path, classes=1, videos_per_class=1, frames=4, width=48, height=32)


def test_mean_frame_difference_grows_with_motion_level(synth: SyntheticInfo) -> None:
    """Decode every file and average |frame[t+1] - frame[t]| per motion level: strictly increasing."""
    diffs: dict[int, list[float]] = {}
    for list_file in (synth.train_list, synth.val_list):
        with open(list_file, newline="") as f:
            for row in csv.DictReader(f):
                reader = decord.VideoReader(str(synth.root / row["path"]), num_threads=1)
                frames = reader.get_batch(list(range(len(reader)))).float()
                diffs.setdefault(int(row["motion"]), []).append(float((frames[1:] - frames[:-1]).abs().mean()))
    means = [float(np.mean(diffs[level])) for level in range(synth.motion_levels)]
    assert all(lo < hi for lo, hi in itertools.pairwise(means)), means
    assert means[-1] > 2 * means[0], means  # fast clips change far more than static ones


class _TinyMotionNet(nn.Module):
    """Frame differences → two Conv3d layers → 2×2 spatial pooling → linear classifier."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(3, 8, 3, stride=(1, 2, 2), padding=1), nn.ReLU(),
            nn.Conv3d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool3d((1, 2, 2)), nn.Flatten(), nn.Linear(16 * 4, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x[:, :, 1:] - x[:, :, :-1])


@pytest.mark.slow
def test_labels_are_learnable_video_level_with_3k_views(synth: SyntheticInfo) -> None:
    """Train a tiny net for 400 steps (~2 s) on training clips; video-level accuracy on the held-out
    videos (2 clips × left/centre/right = 6 views averaged) must be far above chance. Static clips
    (motion level 0) carry no motion evidence, so the moving ones are checked separately too."""
    train = make_dataset(synth.train_list, train=True, num_frames=8, stride=2, size=32, flip=False, seed=0)
    val = make_dataset(synth.val_list, train=False, num_frames=8, stride=2, size=32, clips=2, crops=3)
    clips, labels = [], []
    for epoch in range(2):  # two random clips + augmentations per training video
        train.set_epoch(epoch)
        for i in range(len(train)):
            item = train[i]
            clips.append(item["video"])
            labels.append(item["label"])
    x, y = torch.stack(clips), torch.tensor(labels)
    batch = collate_clips([val[i] for i in range(len(val))])
    num_views = batch["video"].shape[1]
    assert num_views == 6

    torch.manual_seed(0)
    model = _TinyMotionNet(len(synth.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    picker = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.randint(len(x), (16,), generator=picker)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        scores = video_scores(model(merge_views(batch["video"])), num_views)
    correct = scores.argmax(1) == batch["label"]
    moving = batch["motion"] > 0
    chance = 1 / len(synth.classes)
    assert correct.float().mean() >= 2 * chance, (correct.float().mean(), batch["motion"])
    assert correct[moving].float().mean() >= 0.7, correct[moving].float().mean()


def _cast_offsets(info: SyntheticInfo) -> list[tuple[int, np.ndarray, int]]:
    """(label, the video's mean colour offset from grey per RGB channel, motion level) per video, train then val."""
    offsets = []
    for list_file in (info.train_list, info.val_list):
        with open(list_file, newline="") as f:
            for row in csv.DictReader(f):
                frames = decord.VideoReader(str(info.root / row["path"]), num_threads=1)[:].float()
                offset = (frames.mean((0, 1, 2)) - frames.mean()).numpy()
                offsets.append((int(row["label"]), offset, int(row["motion"])))
    return offsets


def _cast_guesses(info: SyntheticInfo) -> list[tuple[int, int, int]]:
    """(label, class whose `class_cast` is nearest the video's mean colour offset, motion level) per video."""
    casts = np.stack([class_cast(i, len(info.classes)) for i in range(len(info.classes))])
    return [
        (label, int(np.argmin(((casts - offset) ** 2).sum(1))), motion) for label, offset, motion in _cast_offsets(info)
    ]


def test_appearance_cue_shows_the_class_colour_with_the_given_reliability(tmp_path: Path) -> None:
    """appearance=1: the scene's mean colour names the class; 0: it does not (chance); the cue never
    changes motion levels or the split, and a bad value is refused by name."""
    kwargs = dict(classes=6, videos_per_class=8, frames=4, size=32, seed=3)
    cued = make_synthetic(tmp_path / "cued", appearance=1.0, **kwargs)
    plain = make_synthetic(tmp_path / "plain", **kwargs)
    hits = [label == guess for label, guess, _ in _cast_guesses(cued)]
    chance = [label == guess for label, guess, _ in _cast_guesses(plain)]
    assert np.mean(hits) >= 0.95, np.mean(hits)
    assert np.mean(chance) <= 0.5, np.mean(chance)
    assert cued.appearance == 1.0 and plain.appearance == 0.0
    assert cued.train_list.read_text() == plain.train_list.read_text()
    with pytest.raises(ValueError, match=r"appearance must be in \[0, 1\], got 1\.5"):
        make_synthetic(tmp_path / "bad", appearance=1.5, **kwargs)


def test_appearance_cue_is_the_mean_colour_of_every_frame_however_the_scene_moves() -> None:
    """The cast is a per-frame white balance: a fast pan shows a new part of the texture in every frame, yet
    each frame's mean colour offset is the cast (within rounding and clipping), not the texture's."""
    cast = class_cast(2, 6)
    frames = render_clip("pan_right", frames=6, width=32, height=32, motion=3, clutter=0,
                         rng=np.random.default_rng(5), cast=cast).astype(np.float64)
    offsets = frames.mean((1, 2)) - frames.mean((1, 2, 3))[:, None]  # (T, 3)
    assert np.abs(offsets - (cast - cast.mean())).max() < 3.0, offsets
    plain = render_clip("pan_right", frames=6, width=32, height=32, motion=3, clutter=0,
                        rng=np.random.default_rng(5)).astype(np.float64)
    assert np.abs(plain.mean((1, 2)) - plain.mean((1, 2, 3))[:, None]).max() > 3.0  # a scene's own tint varies


def test_appearance_fast_fades_the_cue_from_static_to_fast_clips(tmp_path: Path) -> None:
    """appearance=1, appearance_fast=0: every static clip shows its class's cast, the fastest ones a random
    class's (about chance); motion levels and the split are those of the set without the cue."""
    kwargs = dict(classes=6, videos_per_class=16, frames=4, size=32, seed=4)
    faded = make_synthetic(tmp_path / "faded", appearance=1.0, appearance_fast=0.0, **kwargs)
    guesses = _cast_guesses(faded)
    static = [label == guess for label, guess, motion in guesses if motion == 0]
    fast = [label == guess for label, guess, motion in guesses if motion == faded.motion_levels - 1]
    assert np.mean(static) == 1.0, np.mean(static)
    assert np.mean(fast) <= 0.5, np.mean(fast)
    assert faded.appearance == 1.0 and faded.appearance_fast == 0.0
    assert faded.train_list.read_text() == make_synthetic(tmp_path / "plain", **kwargs).train_list.read_text()
    with pytest.raises(ValueError, match=r"appearance_fast must be in \[0, 1\], got -0\.1"):
        make_synthetic(tmp_path / "bad", appearance=1.0, appearance_fast=-0.1, **kwargs)


def test_cast_fast_fades_the_cue_s_strength_to_a_grey_scene(tmp_path: Path) -> None:
    """appearance=1, cast_fast=0: static clips show their class's full cast, the fastest ones a grey scene."""
    info = make_synthetic(tmp_path / "faded", classes=3, videos_per_class=8, frames=4, size=32, seed=4,
                          appearance=1.0, cast_fast=0.0)
    norms: dict[int, list[float]] = {}
    for _, offset, motion in _cast_offsets(info):
        norms.setdefault(motion, []).append(float(np.linalg.norm(offset)))
    full = float(np.linalg.norm(class_cast(0, 3) - class_cast(0, 3).mean()))
    assert min(norms[0]) > 0.7 * full and max(norms[info.motion_levels - 1]) < 0.1 * full, (norms, full)
    assert info.cast_fast == 0.0
    with pytest.raises(ValueError, match=r"cast_fast must be in \[0, 1\], got 2"):
        make_synthetic(tmp_path / "bad", classes=3, videos_per_class=8, frames=4, appearance=1.0, cast_fast=2)
