"""Batching `VideoDataset` items, keeping a video's test views together for video-level scores."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

__all__ = ["collate_clips", "merge_views", "video_scores"]


def collate_clips(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack `VideoDataset` items into a batch.

    ``"video"`` becomes ``(B, C, T, H, W)`` for single-clip items or ``(B, V, C, T, H, W)`` for
    multi-view (test) items: the views of one video stay together in one row, so predictions can be
    averaged per video (`merge_views` flattens them for the model, `video_scores` regroups the
    logits). Int fields (``"label"``, ``"index"``, ``"motion"``, ``"clutter"``) become int64 ``(B,)``
    tensors; other fields are kept as lists.

    Raises:
        ValueError: on an empty batch, items with different keys, or videos of different shapes.

    Example:
        >>> items = [{"video": torch.zeros(6, 3, 4, 8, 8), "label": 1, "index": i} for i in range(2)]
        >>> b = collate_clips(items)
        >>> b["video"].shape, b["label"].tolist()
        (torch.Size([2, 6, 3, 4, 8, 8]), [1, 1])
    """
    if not batch:
        raise ValueError("collate_clips: empty batch")
    keys = list(batch[0].keys())
    for item in batch:
        if list(item.keys()) != keys:
            raise ValueError(f"collate_clips: items have different keys ({keys} vs {list(item.keys())})")
    out: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in batch]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate_clips: {key!r} tensors differ in shape {sorted(shapes)}; use the same sampler "
                    "and transform for every item (test mode: same number of clips and crops)"
                )
            out[key] = torch.stack(values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = values
    return out


def merge_views(video: torch.Tensor) -> torch.Tensor:
    """``(B, V, C, T, H, W)`` → ``(B·V, C, T, H, W)`` for the model (row ``b·V + v`` is view v of video b).

    Example:
        >>> merge_views(torch.zeros(2, 6, 3, 4, 8, 8)).shape
        torch.Size([12, 3, 4, 8, 8])
    """
    if video.dim() != 6:
        raise ValueError(f"merge_views expects (B, V, C, T, H, W), got shape {tuple(video.shape)}")
    return video.flatten(0, 1)


def video_scores(
    logits: torch.Tensor, num_views: int, *, reduce: Literal["mean", "softmax_mean"] = "mean"
) -> torch.Tensor:
    """Per-video scores from per-view logits ``(B·V, N)`` (views grouped as `merge_views` lays them out).

    Args:
        logits: ``(B·V, N)`` class logits.
        num_views: V, views per video.
        reduce: ``"mean"`` averages logits; ``"softmax_mean"`` averages class probabilities.

    Returns:
        ``(B, N)`` video-level scores; ``argmax(-1)`` is the video-level prediction.

    Example:
        >>> video_scores(torch.tensor([[1., 0.], [3., 0.], [0., 2.], [0., 4.]]), 2).tolist()
        [[2.0, 0.0], [0.0, 3.0]]
    """
    if logits.dim() != 2 or num_views < 1 or logits.shape[0] % num_views:
        raise ValueError(
            f"video_scores: logits {tuple(logits.shape)} must be (B·V, N) with V = num_views = {num_views} "
            "dividing the first dim"
        )
    grouped = logits.view(-1, num_views, logits.shape[1])
    if reduce == "mean":
        return grouped.mean(1)
    if reduce == "softmax_mean":
        return grouped.softmax(-1).mean(1)
    raise ValueError(f"video_scores: reduce must be 'mean' or 'softmax_mean', got {reduce!r}")
