"""`VideoDataset`: clips decoded with decord from a list file or class-folder tree, robust to bad files.

Why one file of ~410 lines: it is one class (sampling, decoding, skipping bad files, views) and the
`make_dataset` builder that configures it.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import decord
import numpy as np
import torch
from torch.utils.data import Dataset

from vared_core.data.lists import ListFileError, VideoList, VideoRecord, find_missing, read_video_list
from vared_core.data.sampling import ClipSampler, DenseClipSampler, SegmentSampler
from vared_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, test_transform, train_transform

__all__ = ["DatasetStats", "VideoDataset", "make_dataset", "sample_seed"]

log = logging.getLogger(__name__)

decord.bridge.set_bridge("torch")  # get_batch returns torch uint8 tensors (T, H, W, C)

_OK, _MISSING, _CORRUPT = 0, 1, 2
_LOG_MISSING_MAX = 20  # missing files logged one by one at construction; the rest are summarised


@dataclass(frozen=True)
class DatasetStats:
    """Videos a `VideoDataset` skipped so far (all DataLoader workers included).

    Attributes:
        skipped_missing: listed files that do not exist (found when the dataset is built, or later).
        skipped_corrupt: files that exist but could not be opened or decoded (truncated, not a video, …).
        bad_paths: the paths of all skipped videos, in dataset order (missing-at-build first).
    """

    skipped_missing: int
    skipped_corrupt: int
    bad_paths: tuple[str, ...]

    @property
    def skipped(self) -> int:
        """All skipped videos."""
        return self.skipped_missing + self.skipped_corrupt


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The 63-bit seed of the generator that draws sample ``index``'s clip and augmentation in ``epoch``.

    Mixed with numpy's `SeedSequence`, so nearby (seed, epoch, index) triples give unrelated streams.

    Example:
        >>> sample_seed(0, 0, 1) == sample_seed(0, 0, 1) != sample_seed(0, 1, 1)
        True
    """
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


class _BadVideo(Exception):
    def __init__(self, kind: int, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class VideoDataset(Dataset[dict[str, Any]]):
    """Clips of the videos in a list file or class-folder tree, decoded with decord.

    Each item is a dict:

    * ``"video"``: float32 ``C×T×H×W`` clip (RGB, ``C = 3``) when the sampler draws one clip and the
      transform returns one view; otherwise ``V×C×T×H×W`` views, clip-major: with c crops per clip,
      view ``k·c + j`` is crop ``j`` of clip ``k`` (`test_transform`'s three crops give V = 3K views,
      *K-LeftCenterRight*: left, centre, right of clip 0, then of clip 1, …). Without a transform the
      clip is the raw ``uint8`` pixels.
    * ``"label"``: int class index; ``"index"``: int position of the returned video in ``records``.
    * ``"motion"`` / ``"clutter"``: int levels, present when the list has those columns (``-1`` on rows
      that leave them empty).

    **Bad videos.** Listed files that do not exist are dropped when the dataset is built (each logged
    with ``list_file:line``); files that fail to open or decode are found when loaded, logged once with
    their path and flagged, and the item is taken from the next index instead (``"index"`` says which
    video was returned). Both are counted in `stats`, which covers all DataLoader workers: the flags
    live in shared memory. An error is raised only when ``max_skips`` decodes in a row fail.

    **Determinism.** Item ``i`` of epoch ``e`` draws its clip and augmentation from a fresh
    ``torch.Generator`` seeded with `sample_seed` ``(seed, e, i)``, so the same seed gives the same clips
    whatever the worker count or order. Call `set_epoch` before each epoch (the epoch is shared memory
    too, so persistent workers see it).

    Args:
        source: a list file (``path label`` lines, or CSV with a ``path,label[,start_sec,end_sec,motion,
            clutter]`` header; see `read_list`), a class-folder root, a `VideoList`, or records.
        sampler: which frames make up the clip(s) (`DenseClipSampler`, `SegmentSampler`).
        transform: applied to each uint8 ``C×T×H×W`` clip with the item's generator (see
            `train_transform`, `test_transform`); ``None`` returns raw uint8 clips.
        root: base of relative paths in a list file (default: the list file's folder).
        classes: class names in label order (see `read_list`).
        seed: base seed of the sampling and augmentation randomness.
        decode_short_side: decode frames already scaled so the shorter side is this many pixels (never
            upscaled); cheaper than decoding full frames when the clips are small. ``None``: full size.
        max_skips: how many failing decodes in a row one item may try before giving up.

    Attributes:
        records: the usable `VideoRecord` entries (missing files removed).
        classes: the class names.

    Example:
        >>> from vared_core.data import make_synthetic
        >>> import tempfile
        >>> info = make_synthetic(tempfile.mkdtemp(), classes=2, videos_per_class=2, frames=8, size=32, seed=0)
        >>> ds = VideoDataset(info.train_list, sampler=DenseClipSampler(4, stride=2),
        ...                   transform=train_transform(24))
        >>> item = ds[0]
        >>> item["video"].shape, item["video"].dtype, item["label"]
        (torch.Size([3, 4, 24, 24]), torch.float32, 0)
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | VideoList | Sequence[VideoRecord],
        *,
        sampler: ClipSampler,
        transform: ClipTransform | None = None,
        root: str | os.PathLike[str] | None = None,
        classes: Sequence[str] | None = None,
        seed: int = 0,
        decode_short_side: int | None = None,
        max_skips: int = 20,
        crops: int = 1,
    ) -> None:
        if isinstance(source, VideoList):
            listed = source
        elif isinstance(source, (str, os.PathLike)):
            listed = read_video_list(source, root=root, classes=classes)
        else:
            records = tuple(source)
            num = 1 + max((r.label for r in records), default=-1)
            listed = VideoList(records, tuple(classes) if classes is not None else tuple(map(str, range(num))))
        if seed < 0:
            raise ValueError(f"VideoDataset: seed must be ≥ 0, got {seed}")
        if max_skips < 0:
            raise ValueError(f"VideoDataset: max_skips must be ≥ 0, got {max_skips}")
        if decode_short_side is not None and decode_short_side < 1:
            raise ValueError(f"VideoDataset: decode_short_side must be ≥ 1 or None, got {decode_short_side}")
        if crops not in (1, 3):
            raise ValueError(f"VideoDataset: crops must be 1 or 3, got {crops}")
        self.sampler = sampler
        self.transform = transform
        #: views the transform makes of each clip (3: left, centre, right): how `evaluate` finds the centre crop
        self.crops = crops
        self.seed = seed
        self.decode_short_side = decode_short_side
        self.max_skips = max_skips
        self.classes: tuple[str, ...] = listed.classes
        where = Path(source) if isinstance(source, (str, os.PathLike)) else None
        if not listed.records:
            problem = "no videos listed; check the list file or folder"
            raise ListFileError(where, None, problem) if where else ValueError(f"VideoDataset: {problem}")
        missing = find_missing(listed.records)
        if len(missing) == len(listed.records):
            problem = (
                f"none of the {len(missing)} listed videos exists (first: {missing[0].path}); relative "
                "paths are resolved against root= (default: the list file's folder)"
            )
            raise ListFileError(where, None, problem) if where else ValueError(f"VideoDataset: {problem}")
        for rec in missing[:_LOG_MISSING_MAX]:
            log.warning("VideoDataset: skipping missing video %s (listed at %s)", rec.path, rec.where)
        if len(missing) > _LOG_MISSING_MAX:
            log.warning(
                "VideoDataset: … and %d more missing videos (see dataset.stats.bad_paths)",
                len(missing) - _LOG_MISSING_MAX,
            )
        missing_ids = {id(r) for r in missing}
        self.records: tuple[VideoRecord, ...] = tuple(r for r in listed.records if id(r) not in missing_ids)
        self._missing_at_build: tuple[str, ...] = tuple(str(r.path) for r in missing)
        self._has_motion = any(r.motion is not None for r in self.records)
        self._has_clutter = any(r.clutter is not None for r in self.records)
        # Shared memory, so DataLoader workers (forked or spawned) and the main process see one state.
        self._status = torch.zeros(len(self.records), dtype=torch.int8).share_memory_()
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._dims: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def epoch(self) -> int:
        """The epoch the sampling randomness is drawn for (see `set_epoch`)."""
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s clips from now on; call before iterating each epoch's DataLoader."""
        if epoch < 0:
            raise ValueError(f"set_epoch: epoch must be ≥ 0, got {epoch}")
        self._epoch[0] = epoch

    @property
    def stats(self) -> DatasetStats:
        """Skipped videos so far, counted over all workers (see `DatasetStats`)."""
        status = self._status.tolist()
        late_missing = [str(self.records[i].path) for i, s in enumerate(status) if s == _MISSING]
        corrupt = [str(self.records[i].path) for i, s in enumerate(status) if s == _CORRUPT]
        bad = [*self._missing_at_build, *(str(self.records[i].path) for i, s in enumerate(status) if s != _OK)]
        return DatasetStats(
            skipped_missing=len(self._missing_at_build) + len(late_missing),
            skipped_corrupt=len(corrupt),
            bad_paths=tuple(bad),
        )

    def skipped_mask(self) -> torch.Tensor:
        """``(len(records),)`` bool: the records skipped so far (found missing or corrupt when read); the
        videos missing when the dataset was built are not among ``records`` (`stats` counts both)."""
        return self._status != _OK

    @property
    def missing_at_build(self) -> int:
        """Listed videos that did not exist when the dataset was built (left out of ``records``)."""
        return len(self._missing_at_build)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"VideoDataset index {index} out of range for {n} videos")
        index %= n
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        failures = 0
        for step in range(n):
            i = (index + step) % n
            if int(self._status[i]) != _OK:
                continue
            try:
                return self._load(i, generator)
            except _BadVideo as bad:
                self._flag(i, bad)
                failures += 1
                if failures > self.max_skips:
                    break
        if failures > self.max_skips:
            problem = f"{failures} videos in a row from index {index} could not be decoded (max_skips={self.max_skips})"
        else:
            problem = f"every one of the {n} videos has been skipped as missing or corrupt"
        raise RuntimeError(
            f"VideoDataset: {problem}; see dataset.stats.bad_paths and the log, then fix or drop those files"
        )

    def _flag(self, i: int, bad: _BadVideo) -> None:
        if int(self._status[i]) == _OK:  # log once, even across epochs and workers
            self._status[i] = bad.kind
            rec = self.records[i]
            kind = "missing" if bad.kind == _MISSING else "corrupt"
            log.warning("VideoDataset: skipping %s video %s (listed at %s): %s", kind, rec.path, rec.where, bad)

    def _reader(self, rec: VideoRecord, i: int) -> decord.VideoReader:
        path = str(rec.path)
        if not os.path.isfile(path):
            raise _BadVideo(_MISSING, "the file no longer exists")
        width = height = -1
        if self.decode_short_side is not None:
            w, h = self._probe(path, i)
            s = self.decode_short_side
            if min(w, h) > s:
                width, height = (round(w * s / h), s) if h <= w else (s, round(h * s / w))
        try:
            return decord.VideoReader(path, num_threads=1, width=width, height=height)
        except Exception as err:  # decord raises RuntimeError, DECORDError or AssertionError
            raise _BadVideo(_CORRUPT, f"cannot open: {_first_line(err)}") from err

    def _probe(self, path: str, i: int) -> tuple[int, int]:
        """(width, height) of the video's frames, read from the container header (cached per process)."""
        if i not in self._dims:
            try:
                with av.open(path) as container:
                    ctx = container.streams.video[0].codec_context
                    self._dims[i] = (int(ctx.width), int(ctx.height))
            except Exception as err:  # av.error.*, IndexError (no video stream)
                raise _BadVideo(_CORRUPT, f"cannot open: {_first_line(err)}") from err
        return self._dims[i]

    def _load(self, i: int, generator: torch.Generator) -> dict[str, Any]:
        rec = self.records[i]
        reader = self._reader(rec, i)
        try:
            total = len(reader)
            fps = float(reader.get_avg_fps()) or None
            first, count = _frame_range(rec, total, fps)
            clips = self.sampler(count, generator=generator, fps=fps, offset=first)
            wanted = clips.frames.flatten()
            unique, inverse = torch.unique(wanted, sorted=True, return_inverse=True)
            frames = reader.get_batch(unique.tolist())
            if hasattr(frames, "asnumpy"):  # decord's bridge is per thread: threads other than the
                frames = torch.from_numpy(frames.asnumpy())  # importing one (Ray Tune's) get NDArrays
        except _BadVideo:
            raise
        except Exception as err:
            raise _BadVideo(_CORRUPT, f"cannot decode: {_first_line(err)}") from err
        finally:
            del reader
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[0] != unique.numel():
            raise _BadVideo(_CORRUPT, f"decoded {getattr(frames, 'shape', '?')} for {unique.numel()} frames")
        k, t = clips.frames.shape
        views = []
        for c in range(k):
            idx = inverse[c * t : (c + 1) * t]
            same = idx.numel() == frames.shape[0] and bool((idx == torch.arange(idx.numel())).all())
            clip = (frames if same else frames.index_select(0, idx)).permute(3, 0, 1, 2)  # C×T×H×W
            views.append(self.transform(clip, generator) if self.transform is not None else clip)
        if k == 1 and views[0].dim() == 4:
            video = views[0]
        elif views[0].dim() == 4:
            video = torch.stack(views)
        else:
            video = torch.cat(views)
        item: dict[str, Any] = {"video": video.contiguous(), "label": rec.label, "index": i}
        if self._has_motion:
            item["motion"] = rec.motion if rec.motion is not None else -1
        if self._has_clutter:
            item["clutter"] = rec.clutter if rec.clutter is not None else -1
        return item

    def __repr__(self) -> str:
        return (
            f"VideoDataset({len(self)} videos, {self.num_classes} classes, sampler={self.sampler}, "
            f"transform={self.transform}, seed={self.seed})"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _frame_range(rec: VideoRecord, total: int, fps: float | None) -> tuple[int, int]:
    """(first frame, frame count) of the record's start_sec/end_sec range, clamped to the video."""
    if rec.start_sec is None and rec.end_sec is None:
        return 0, total
    if not fps:
        raise _BadVideo(_CORRUPT, "the video reports no frame rate, so start_sec/end_sec cannot be used")
    first = max(0, math.floor((rec.start_sec or 0.0) * fps))
    end = total if rec.end_sec is None else min(total, math.ceil(rec.end_sec * fps))
    if first >= total or end <= first:
        raise _BadVideo(
            _CORRUPT,
            f"start_sec/end_sec ({rec.start_sec}, {rec.end_sec}) select no frame of a {total}-frame video "
            f"at {fps:g} fps; fix the list line",
        )
    return first, end - first


def make_dataset(
    source: str | os.PathLike[str] | VideoList | Sequence[VideoRecord],
    *,
    train: bool,
    num_frames: int = 8,
    stride: int = 8,
    size: int = 112,
    sampling: Literal["dense", "segment"] = "dense",
    clips: int = 1,
    crops: int = 3,
    flip: bool = True,
    seed: int = 0,
    decode_short_side: int | None = None,
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> VideoDataset:
    """A `VideoDataset` with the seed's sampling and augmentation for training or testing.

    Training: one random clip (dense: ``num_frames`` frames ``stride`` apart; segment: TSN with
    ``num_frames`` segments), `train_transform` (multi-scale crop → ``size``², flip, normalise).
    Testing: ``clips`` evenly spaced clips and `test_transform` with ``crops`` (3: K-LeftCenterRight, 3K
    views; 1: centre crop).

    Args:
        source / root / classes / seed / decode_short_side: as `VideoDataset`.
        train: training (random) or testing (multi-view) mode.
        num_frames: T, frames per clip. stride: frame step of dense clips (ignored for segments).
        size: output side in pixels. sampling: ``"dense"`` (3D nets) or ``"segment"`` (2D nets, TSN).
        clips: K, test clips per video (ignored in training). crops: test crops per clip, 1 or 3.
        flip: random horizontal flips in training; turn off when the classes depend on left/right
            direction (as the synthetic pan_left / pan_right, rotate_cw / rotate_ccw classes do).
        mean / std: per-channel normalisation of pixels in [0, 1]: the backbone's own (`ModelCfg.mean`), so
            published weights see the inputs they were trained on.

    Example:
        >>> from vared_core.data import make_synthetic
        >>> import tempfile
        >>> info = make_synthetic(tempfile.mkdtemp(), classes=2, videos_per_class=2, frames=8, size=32, seed=0)
        >>> make_dataset(info.val_list, train=False, num_frames=4, stride=2, size=24, clips=2)[0]["video"].shape
        torch.Size([6, 3, 4, 24, 24])
    """
    k = 1 if train else clips
    sampler: ClipSampler
    if sampling == "dense":
        sampler = DenseClipSampler(num_frames, stride, num_clips=k, random=train)
    elif sampling == "segment":
        sampler = SegmentSampler(num_frames, num_clips=k, random=train)
    else:
        raise ValueError(
            f"make_dataset: sampling must be 'dense' (3D nets) or 'segment' (TSN, 2D nets), got {sampling!r}"
        )
    if train:
        transform = train_transform(size, flip=flip, mean=mean, std=std)
    else:
        transform = test_transform(size, crops=crops, mean=mean, std=std)
    return VideoDataset(
        source, sampler=sampler, transform=transform, root=root, classes=classes, seed=seed,
        decode_short_side=decode_short_side, crops=1 if train else crops,
    )
