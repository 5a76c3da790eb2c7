"""Clip samplers: which frame indices of a video make up each clip (dense 3D clips, TSN segments)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch

__all__ = ["ClipIndices", "ClipSampler", "DenseClipSampler", "SegmentSampler"]


class ClipIndices(NamedTuple):
    """Frame indices (and their times) of the K clips drawn from one video.

    Attributes:
        frames: (K, T) int64 frame indices into the video, each in ``[offset, offset + video_frames)``.
        seconds: (K, T) float64 times of those frames in seconds (``frames / fps``), or ``None`` when the
            sampler was not told the frame rate.
    """

    frames: torch.Tensor
    seconds: torch.Tensor | None


@runtime_checkable
class ClipSampler(Protocol):
    """What `VideoDataset` needs from a sampler: K clips of T frames from a video of N frames."""

    @property
    def num_frames(self) -> int:
        """T, frames per clip."""

    @property
    def num_clips(self) -> int:
        """K, clips per video."""

    @property
    def random(self) -> bool:
        """Random (training) or fixed (testing) positions."""

    def __call__(
        self,
        video_frames: int,
        *,
        generator: torch.Generator | None = None,
        fps: float | None = None,
        offset: int = 0,
    ) -> ClipIndices: ...


def _check_positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


def _finish(local: torch.Tensor, video_frames: int, fps: float | None, offset: int) -> ClipIndices:
    frames = local.to(torch.int64) + offset
    seconds = frames.to(torch.float64) / fps if fps else None
    return ClipIndices(frames, seconds)


def _check_video(owner: str, video_frames: int) -> None:
    if video_frames < 1:
        raise ValueError(f"{owner}: the video has {video_frames} frames; a clip needs at least one")


@dataclass(frozen=True)
class DenseClipSampler:
    """Dense clips for 3D nets: ``num_frames`` frames ``stride`` apart (span ``(T-1)·stride + 1``).

    * ``random=True`` (training): each clip starts at a uniform random frame in ``[0, N - span]``.
    * ``random=False`` (testing): K clips whose starts are evenly spaced over ``[0, N - span]``
      (start ``k`` = ``floor((k + ½)(N - span + 1) / K)``; K = 1 gives the centre clip).

    A video shorter than the span loops: index ``i`` reads frame ``i mod N`` (all K clips then start at
    frame 0 in test mode, at a random frame in training).

    Args:
        num_frames: T, frames per clip.
        stride: frames between consecutive clip frames (1 = consecutive).
        num_clips: K, clips per video.
        random: random starts (training) or evenly spaced starts (testing).

    Example:
        >>> s = DenseClipSampler(4, stride=2, num_clips=2, random=False)
        >>> s(20).frames.tolist()
        [[3, 5, 7, 9], [10, 12, 14, 16]]
        >>> DenseClipSampler(4, stride=2, random=False)(5).frames.tolist()  # short video: loops
        [[0, 2, 4, 1]]
    """

    num_frames: int
    stride: int = 1
    num_clips: int = 1
    random: bool = True

    def __post_init__(self) -> None:
        _check_positive("DenseClipSampler", num_frames=self.num_frames, stride=self.stride, num_clips=self.num_clips)

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last index, inclusive."""
        return (self.num_frames - 1) * self.stride + 1

    def __call__(
        self,
        video_frames: int,
        *,
        generator: torch.Generator | None = None,
        fps: float | None = None,
        offset: int = 0,
    ) -> ClipIndices:
        """Draw K clips from a video of ``video_frames`` frames (see the class doc).

        Args:
            video_frames: N, the frames available (of the record's time range, if it has one).
            generator: randomness for ``random=True`` (``None`` = torch's global generator).
            fps: frame rate, to fill ``ClipIndices.seconds``.
            offset: added to every index (first frame of the record's time range).

        Returns:
            `ClipIndices` with ``frames`` of shape (K, T).
        """
        _check_video("DenseClipSampler", video_frames)
        max_start = max(video_frames - self.span, 0)
        k = self.num_clips
        if self.random:
            high = (max_start if video_frames >= self.span else video_frames - 1) + 1
            starts = torch.randint(0, high, (k,), generator=generator)
        else:
            starts = torch.div((2 * torch.arange(k) + 1) * (max_start + 1), 2 * k, rounding_mode="floor")
        local = starts[:, None] + torch.arange(self.num_frames)[None, :] * self.stride
        return _finish(local % video_frames, video_frames, fps, offset)


@dataclass(frozen=True)
class SegmentSampler:
    """TSN segment sampling for 2D nets: the video is cut into T equal segments, one frame from each.

    * ``random=True`` (training): a uniform random frame inside each segment.
    * ``random=False`` (testing): clip ``k`` of K takes the frame at fraction ``(k + ½)/K`` of each
      segment (K = 1: segment centres).

    Videos shorter than T frames repeat frames (segments shorter than one frame).

    Args:
        num_segments: T, frames per clip (one per segment).
        num_clips: K, clips per video.
        random: random offsets (training) or fixed, evenly spread offsets (testing).

    Example:
        >>> SegmentSampler(4, random=False)(40).frames.tolist()
        [[5, 15, 25, 35]]
        >>> SegmentSampler(4, num_clips=2, random=False)(40).frames.tolist()
        [[2, 12, 22, 32], [7, 17, 27, 37]]
    """

    num_segments: int
    num_clips: int = 1
    random: bool = True

    def __post_init__(self) -> None:
        _check_positive("SegmentSampler", num_segments=self.num_segments, num_clips=self.num_clips)

    @property
    def num_frames(self) -> int:
        """T, frames per clip (= segments)."""
        return self.num_segments

    def __call__(
        self,
        video_frames: int,
        *,
        generator: torch.Generator | None = None,
        fps: float | None = None,
        offset: int = 0,
    ) -> ClipIndices:
        """Draw K clips of one frame per segment (see the class doc); arguments as `DenseClipSampler`.

        Returns:
            `ClipIndices` with ``frames`` of shape (K, T).
        """
        _check_video("SegmentSampler", video_frames)
        k, t = self.num_clips, self.num_segments
        seg = video_frames / t
        if self.random:
            frac = torch.rand((k, t), generator=generator, dtype=torch.float64)
        else:
            frac = ((torch.arange(k, dtype=torch.float64) + 0.5) / k)[:, None].expand(k, t)
        pos = (torch.arange(t, dtype=torch.float64)[None, :] + frac) * seg
        local = pos.floor().to(torch.int64).clamp_(0, video_frames - 1)
        return _finish(local, video_frames, fps, offset)
