"""Video data: list files, clip samplers, clip transforms, the decord `VideoDataset`, batching, loaders
and a synthetic motion-pattern dataset.

Typical use::

    from vared_core.data import make_dataset, make_loader, make_synthetic
    info = make_synthetic("data/synth", classes=4, videos_per_class=6, frames=16, size=64, seed=0)
    train = make_dataset(info.train_list, train=True, num_frames=8, stride=2, size=56)
    loader = make_loader(train, batch_size=8, train=True)
    for epoch in range(2):
        train.set_epoch(epoch)
        for batch in loader:  # batch["video"]: (B, C, T, H, W) float32, batch["label"]: (B,) int64
            ...
"""
from __future__ import annotations

from vared_core.data.collate import collate_clips, merge_views, video_scores
from vared_core.data.lists import (
    VIDEO_EXTENSIONS,
    ListFileError,
    VideoList,
    VideoRecord,
    find_missing,
    read_class_folders,
    read_list,
    read_video_list,
)
from vared_core.data.loader import EpochShuffleSampler, default_num_workers, make_loader
from vared_core.data.sampling import ClipIndices, ClipSampler, DenseClipSampler, SegmentSampler
from vared_core.data.synthetic import PATTERNS, SyntheticInfo, class_cast, make_synthetic, render_clip, write_mp4
from vared_core.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCropCTHW,
    ClipTransform,
    ComposeCTHW,
    MultiScaleCropCTHW,
    NormalizeCTHW,
    RandomHorizontalFlipCTHW,
    ResizeShortSideCTHW,
    ThreeCropCTHW,
    ToFloatCTHW,
    center_crop,
    crop,
    hflip,
    multi_scale_crop_box,
    normalize,
    resize,
    resize_short_side,
    test_transform,
    three_crop,
    to_float,
    train_transform,
)
from vared_core.data.video import DatasetStats, VideoDataset, make_dataset, sample_seed

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PATTERNS",
    "VIDEO_EXTENSIONS",
    "CenterCropCTHW",
    "ClipIndices",
    "ClipSampler",
    "ClipTransform",
    "ComposeCTHW",
    "DatasetStats",
    "DenseClipSampler",
    "EpochShuffleSampler",
    "ListFileError",
    "MultiScaleCropCTHW",
    "NormalizeCTHW",
    "RandomHorizontalFlipCTHW",
    "ResizeShortSideCTHW",
    "SegmentSampler",
    "SyntheticInfo",
    "ThreeCropCTHW",
    "ToFloatCTHW",
    "VideoDataset",
    "VideoList",
    "VideoRecord",
    "center_crop",
    "class_cast",
    "collate_clips",
    "crop",
    "default_num_workers",
    "find_missing",
    "hflip",
    "make_dataset",
    "make_loader",
    "make_synthetic",
    "merge_views",
    "multi_scale_crop_box",
    "normalize",
    "read_class_folders",
    "read_list",
    "read_video_list",
    "render_clip",
    "resize",
    "resize_short_side",
    "sample_seed",
    "test_transform",
    "three_crop",
    "to_float",
    "train_transform",
    "video_scores",
    "write_mp4",
]
