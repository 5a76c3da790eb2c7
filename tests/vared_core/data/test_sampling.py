"""Clip samplers: shapes, dtypes, ranges, spacing, looping of short videos, determinism."""
from __future__ import annotations

import pytest
import torch

from vared_core.data import ClipSampler, DenseClipSampler, SegmentSampler

SAMPLERS = [
    DenseClipSampler(8, stride=2),
    DenseClipSampler(8, stride=2, num_clips=3, random=False),
    DenseClipSampler(4, stride=1, num_clips=2, random=True),
    SegmentSampler(8),
    SegmentSampler(8, num_clips=3, random=False),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
@pytest.mark.parametrize("video_frames", [1, 5, 17, 300])
def test_shapes_dtypes_and_range(sampler: ClipSampler, video_frames: int) -> None:
    assert isinstance(sampler, ClipSampler)
    out = sampler(video_frames, generator=torch.Generator().manual_seed(0), fps=25.0, offset=10)
    assert out.frames.shape == (sampler.num_clips, sampler.num_frames)
    assert out.frames.dtype == torch.int64
    assert int(out.frames.min()) >= 10 and int(out.frames.max()) < 10 + video_frames
    assert out.seconds is not None and out.seconds.dtype == torch.float64
    torch.testing.assert_close(out.seconds, out.frames.double() / 25.0)
    assert sampler(video_frames).seconds is None


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_same_generator_seed_same_indices(sampler: ClipSampler) -> None:
    draws = [sampler(300, generator=torch.Generator().manual_seed(s)).frames for s in (3, 3, 4)]
    assert torch.equal(draws[0], draws[1])
    if sampler.random:
        assert not torch.equal(draws[0], draws[2])
    else:
        assert torch.equal(draws[0], draws[2])


def test_dense_clip_is_strided_and_random_start_covers_the_video() -> None:
    sampler = DenseClipSampler(8, stride=3)
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(300):
        frames = sampler(40, generator=g).frames[0]
        assert torch.equal(frames[1:] - frames[:-1], torch.full((7,), 3))
        starts.add(int(frames[0]))
    assert starts == set(range(40 - sampler.span + 1))  # every legal start, nothing beyond


def test_dense_test_clips_are_evenly_spaced_and_inside() -> None:
    frames = DenseClipSampler(8, stride=2, num_clips=4, random=False)(100).frames
    starts = frames[:, 0]
    gaps = starts[1:] - starts[:-1]
    assert int(gaps.max() - gaps.min()) <= 1  # uniform up to rounding
    assert int(frames.max()) <= 99 and int(starts[0]) >= 0
    assert abs(int(starts[0]) - int(99 - frames[-1, -1])) <= 1  # as much room before the first clip as after the last


def test_short_video_loops_frame_indices() -> None:
    frames = DenseClipSampler(8, stride=1, random=False)(5).frames[0]
    assert frames.tolist() == [i % 5 for i in range(8)]
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        f = DenseClipSampler(8, stride=2)(5, generator=g).frames[0]
        assert torch.equal(f, (f[0] + 2 * torch.arange(8)) % 5)


def test_segments_take_one_frame_per_segment() -> None:
    sampler = SegmentSampler(4)
    g = torch.Generator().manual_seed(0)
    seen: list[set[int]] = [set() for _ in range(4)]
    for _ in range(400):
        frames = sampler(40, generator=g).frames[0]
        for seg, f in enumerate(frames.tolist()):
            assert 10 * seg <= f < 10 * (seg + 1)
            seen[seg].add(f)
    assert all(len(s) == 10 for s in seen)  # every frame of every segment is drawn sometimes
    centre = SegmentSampler(4, num_clips=2, random=False)(40).frames
    assert centre.tolist() == [[2, 12, 22, 32], [7, 17, 27, 37]]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames must be a positive int"):
        DenseClipSampler(0)
    with pytest.raises(ValueError, match="num_clips must be a positive int"):
        SegmentSampler(4, num_clips=0)
    with pytest.raises(ValueError, match="the video has 0 frames"):
        DenseClipSampler(4)(0)
