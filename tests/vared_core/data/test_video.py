"""`VideoDataset` on real mp4 files decoded by decord."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import decord
import numpy as np
import pytest
import torch

from vared_core.data import (
    DenseClipSampler,
    ListFileError,
    SegmentSampler,
    SyntheticInfo,
    VideoDataset,
    collate_clips,
    make_dataset,
    make_loader,
    merge_views,
    read_list,
    sample_seed,
    test_transform,
    train_transform,
    video_scores,
    write_mp4,
)

LOGGER = "vared_core.data.video"


@pytest.mark.parametrize(
    ("sampler", "frames"), [(DenseClipSampler(8, stride=2), 8), (SegmentSampler(4), 4)], ids=["dense", "segment"]
)
def test_training_items(synth: SyntheticInfo, sampler, frames: int) -> None:
    ds = VideoDataset(synth.train_list, sampler=sampler, transform=train_transform(32))
    records = read_list(synth.train_list).records
    assert len(ds) == len(records) == synth.num_train and ds.classes == synth.classes
    for i in (0, len(ds) - 1):
        item = ds[i]
        assert set(item) == {"video", "label", "index", "motion", "clutter"}
        assert item["video"].shape == (3, frames, 32, 32) and item["video"].dtype == torch.float32
        assert item["video"].is_contiguous()
        rec = records[i]
        got = (item["index"], item["label"], item["motion"], item["clutter"])
        assert got == (i, rec.label, rec.motion, rec.clutter)
    assert ds.stats.skipped == 0


def test_raw_clip_is_the_sampled_frames(synth: SyntheticInfo) -> None:
    """Without a transform the item is the uint8 frames at the sampler's indices for this item's seed."""
    sampler = DenseClipSampler(6, stride=2)
    ds = VideoDataset(synth.train_list, sampler=sampler, seed=11)
    ds.set_epoch(3)
    item = ds[5]
    indices = sampler(synth.frames, generator=torch.Generator().manual_seed(sample_seed(11, 3, 5)), fps=synth.fps)
    reader = decord.VideoReader(str(ds.records[5].path), num_threads=1)
    expected = reader.get_batch(indices.frames[0].tolist()).permute(3, 0, 1, 2)
    assert item["video"].dtype == torch.uint8
    assert torch.equal(item["video"], expected)


def test_test_views_are_3k_and_grouped_per_video(synth: SyntheticInfo) -> None:
    k = 2
    ds = make_dataset(synth.val_list, train=False, num_frames=8, stride=2, size=32, clips=k, crops=3)
    centre = make_dataset(synth.val_list, train=False, num_frames=8, stride=2, size=32, clips=k, crops=1)
    moving = next(i for i, r in enumerate(ds.records) if r.motion == synth.motion_levels - 1)
    item = ds[moving]
    assert item["video"].shape == (3 * k, 3, 8, 32, 32)
    views = item["video"]
    assert not torch.equal(views[0], views[2])  # left ≠ right on a 56×40 frame
    assert not torch.equal(views[0], views[3])  # clip 0 ≠ clip 1
    centre_views = centre[moving]["video"]
    assert centre_views.shape == (k, 3, 8, 32, 32)
    for clip in range(k):  # view 3k + 1 is the centre crop of clip k
        torch.testing.assert_close(views[3 * clip + 1], centre_views[clip])
    assert torch.equal(ds[moving]["video"], views)  # test mode is deterministic

    loader = make_loader(ds, batch_size=4, train=False, num_workers=0)
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == len(ds)  # nothing dropped in test mode
    batch = batches[0]
    assert batch["video"].shape == (4, 3 * k, 3, 8, 32, 32)
    assert batch["index"].tolist() == [0, 1, 2, 3]
    flat = merge_views(batch["video"])
    assert flat.shape == (4 * 3 * k, 3, 8, 32, 32)
    assert torch.equal(flat[3 * k + 1], batch["video"][1, 1])  # row b·V + v is view v of video b
    logits = flat.mean(dim=(1, 2, 3, 4))[:, None].repeat(1, 4)
    scores = video_scores(logits, 3 * k)
    assert scores.shape == (4, 4)
    torch.testing.assert_close(scores[2], logits[2 * 3 * k : 3 * 3 * k].mean(0))


def test_same_seed_same_clips_epoch_and_seed_change_them(synth: SyntheticInfo) -> None:
    def make(seed: int) -> VideoDataset:
        sampler = DenseClipSampler(4, stride=3)
        return VideoDataset(synth.train_list, sampler=sampler, transform=train_transform(24), seed=seed)

    a, b, c = make(1), make(1), make(2)
    assert torch.equal(a[7]["video"], b[7]["video"])
    assert not torch.equal(a[7]["video"], c[7]["video"])
    first = a[7]["video"]
    a.set_epoch(1)
    assert a.epoch == 1 and not torch.equal(a[7]["video"], first)


def test_worker_count_does_not_change_the_batches(synth: SyntheticInfo) -> None:
    ds = VideoDataset(synth.train_list, sampler=DenseClipSampler(4, stride=3), transform=train_transform(24), seed=3)
    runs = []
    for workers in (0, 2):
        loader = make_loader(ds, batch_size=8, train=True, num_workers=workers, seed=5)
        epochs = []
        for epoch in range(2):  # persistent workers must see set_epoch
            ds.set_epoch(epoch)
            epochs.append([(b["index"], b["video"]) for b in loader])
        runs.append(epochs)
    flat0, flat2 = itertools.chain(*runs[0]), itertools.chain(*runs[1])
    for (idx0, vid0), (idx2, vid2) in zip(flat0, flat2, strict=True):
        assert torch.equal(idx0, idx2) and torch.equal(vid0, vid2)
    assert not torch.equal(runs[0][0][0][1], runs[0][1][0][1])  # epochs differ


def test_bad_files_are_skipped_counted_and_logged_once(bad_list: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    ds = VideoDataset(bad_list, sampler=DenseClipSampler(4, stride=2), transform=train_transform(24))
    missing_logs = [r.getMessage() for r in caplog.records if "missing.mp4" in r.getMessage()]
    assert len(missing_logs) == 1 and f"{bad_list}:4" in missing_logs[0]  # list file and line of the entry
    assert len(ds) == 8  # the missing file is dropped when the dataset is built
    assert (ds.stats.skipped_missing, ds.stats.skipped_corrupt) == (1, 0)

    good_paths = {str(r.path) for r in ds.records if "corrupt" not in r.path.name and "truncated" not in r.path.name}
    for epoch in range(2):
        ds.set_epoch(epoch)
        items = [ds[i] for i in range(len(ds))]
        assert all(it["video"].shape == (3, 4, 24, 24) for it in items)
        returned = {str(ds.records[it["index"]].path) for it in items}
        assert returned == good_paths  # every good video loads, no bad one is returned
    stats = ds.stats
    assert (stats.skipped_missing, stats.skipped_corrupt, stats.skipped) == (1, 2, 3)
    assert sorted(Path(p).name for p in stats.bad_paths) == ["corrupt.mp4", "missing.mp4", "truncated.mp4"]
    for name, line in (("corrupt.mp4", 6), ("truncated.mp4", 8)):
        logs = [r.getMessage() for r in caplog.records if name in r.getMessage()]
        assert len(logs) == 1, logs  # reported once, although requested in both epochs
        assert "corrupt" in logs[0] and f"{bad_list}:{line}" in logs[0]


def test_bad_files_found_in_workers_are_counted_in_the_main_process(bad_list: Path) -> None:
    ds = VideoDataset(bad_list, sampler=DenseClipSampler(4, stride=2), transform=train_transform(24))
    loader = make_loader(ds, batch_size=4, train=False, num_workers=2)
    seen = torch.cat([b["index"] for b in loader])
    assert len(seen) == len(ds)
    assert (ds.stats.skipped_missing, ds.stats.skipped_corrupt) == (1, 2)


def test_a_file_that_opens_but_fails_to_decode_is_skipped(synth: SyntheticInfo, tmp_path: Path) -> None:
    """Index intact, video data damaged (every 97th byte changed): decord opens it, get_batch fails."""
    full = tmp_path / "fs.mp4"
    write_mp4(full, np.random.default_rng(0).integers(0, 255, (16, 40, 56, 3), dtype=np.uint8), faststart=True)
    data = bytearray(full.read_bytes())
    for i in range(data.index(b"mdat") + 4, len(data), 97):
        data[i] = (data[i] * 7 + 13) % 256
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    assert len(decord.VideoReader(str(damaged), num_threads=1)) == 16  # opens fine
    good = read_list(synth.train_list).records[0]
    lst = tmp_path / "l.txt"
    lst.write_text(f"{damaged} 0\n{good.path} {good.label}\n")
    ds = VideoDataset(lst, sampler=DenseClipSampler(16), transform=train_transform(24), classes=synth.classes)
    item = ds[0]
    assert item["index"] == 1 and ds.stats.skipped_corrupt == 1 and ds.stats.bad_paths == (str(damaged),)


def test_all_bad_raises_with_a_way_out(tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text("a.mp4 0\nb.mp4 1\n")
    with pytest.raises(ListFileError, match=r"none of the 2 listed videos exists.*root="):
        VideoDataset(lst, sampler=DenseClipSampler(4))
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"garbage")
    ds = VideoDataset(lst, sampler=DenseClipSampler(4))
    with pytest.raises(RuntimeError, match="every one of the 2 videos has been skipped"):
        ds[0]
    assert ds.stats.skipped_corrupt == 2


def test_short_video_loops(short_video: Path, tmp_path: Path) -> None:
    lst = tmp_path / "l.txt"
    lst.write_text(f"{short_video} 0\n")
    ds = VideoDataset(lst, sampler=DenseClipSampler(12, random=False))
    clip = ds[0]["video"]
    assert clip.shape == (3, 12, 48, 64)
    grey = clip.float().mean(dim=(0, 2, 3))
    expected = torch.tensor([40.0 * (t % 5) + 20 for t in range(12)])
    torch.testing.assert_close(grey, expected, atol=3.0, rtol=0.0)


def test_start_and_end_seconds_restrict_the_frames(short_video: Path, tmp_path: Path) -> None:
    lst = tmp_path / "l.csv"
    lst.write_text(f"path,label,start_sec,end_sec\n{short_video},0,0.2,0.4\n")  # 10 fps: frames 2 and 3
    ds = VideoDataset(lst, sampler=DenseClipSampler(6, random=False))
    grey = ds[0]["video"].float().mean(dim=(0, 2, 3))
    expected = torch.tensor([40.0 * (2 + t % 2) + 20 for t in range(6)])
    torch.testing.assert_close(grey, expected, atol=3.0, rtol=0.0)


def test_decode_short_side_decodes_smaller_frames(synth: SyntheticInfo, short_video: Path, tmp_path: Path) -> None:
    ds = VideoDataset(synth.train_list, sampler=DenseClipSampler(4), decode_short_side=20)
    assert ds[0]["video"].shape == (3, 4, 20, 28)
    lst = tmp_path / "l.txt"
    lst.write_text(f"{short_video} 0\n")
    assert VideoDataset(lst, sampler=DenseClipSampler(4), decode_short_side=24)[0]["video"].shape == (3, 4, 24, 32)
    assert VideoDataset(lst, sampler=DenseClipSampler(4), decode_short_side=100)[0]["video"].shape == (3, 4, 48, 64)
    full = VideoDataset(synth.train_list, sampler=DenseClipSampler(4), transform=test_transform(20, crops=1))
    small = VideoDataset(
        synth.train_list, sampler=DenseClipSampler(4), transform=test_transform(20, crops=1), decode_short_side=20
    )
    assert full[0]["video"].shape == small[0]["video"].shape == (3, 4, 20, 20)


def test_collate_rejects_mixed_shapes(synth: SyntheticInfo) -> None:
    a = VideoDataset(synth.train_list, sampler=DenseClipSampler(4), transform=train_transform(24))[0]
    b = VideoDataset(synth.train_list, sampler=DenseClipSampler(6), transform=train_transform(24))[1]
    with pytest.raises(ValueError, match="differ in shape"):
        collate_clips([a, b])
