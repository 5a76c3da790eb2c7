"""`evaluate`: the seed's test metrics for any model (static or dynamic) on a multi-view test set.

* **clip-1**: top-1 accuracy of one clip per video, centre crop (the seed's single-clip test): of the K
  clips the middle one (the earlier of the two middle ones for even K);
* **video-1 / video-5**: top-1 / top-5 of each video's mean softmax over its views (K clips × crops,
  *K-LeftCenterRight*); with fewer than 5 classes, top-5 counts every class;
* **GFLOPs** avg / max / min per clip in the seed's unit (one clip, centre crop): over the centre-crop views
  of every clip, from `clip_gflops` (what hard mode really computed);
* **clips/s**: views through the model per second of forward time, the first batches excluded;
* per dynamic layer and class, the mean ratio of output features computed (seed Figure 4-1), and the same
  for output frames and output channels apart (Figures B-4, B-5);
* every view's cost (Figure B-6) and the most / least expensive video of each class (Figure 4-2).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from vared_core.data import collate_clips, make_loader
from vared_core.dynamic import clip_gflops, dynamic_layers, fuse_batchnorm, track_costs

from .distributed import World, gather_objects, shard_of, world

__all__ = ["EvalResult", "VideoRow", "centre_views", "evaluate", "score_views"]


def score_views(logits: torch.Tensor, labels: torch.Tensor, num_views: int) -> dict[str, torch.Tensor]:
    """Per-view and per-video correctness from ``(B·V, N)`` logits grouped by video (view-major rows).

    Returns:
        ``clip_correct`` (B·V,) bool, ``video_top1`` / ``video_top5`` (B,) bool, ``video_pred`` (B,),
        ``video_prob`` (B, N) mean softmax over views.

    Example:
        >>> logits = torch.tensor([[2., 0.], [0., 1.], [0., 3.], [0., 1.]])
        >>> s = score_views(logits, torch.tensor([0, 1]), num_views=2)
        >>> s["clip_correct"].tolist(), s["video_top1"].tolist()
        ([True, False, True, True], [True, True])
    """
    n = logits.shape[0]
    if logits.dim() != 2 or num_views < 1 or n != labels.numel() * num_views:
        raise ValueError(f"score_views: logits {tuple(logits.shape)} must be (B·V, N) for B={labels.numel()}, V={num_views}")
    logits = logits.float()
    per_view_labels = labels.repeat_interleave(num_views)
    prob = logits.softmax(-1).view(-1, num_views, logits.shape[1]).mean(1)
    k = min(5, logits.shape[1])
    top5 = prob.topk(k, dim=1).indices
    return {
        "clip_correct": logits.argmax(-1) == per_view_labels,
        "video_pred": prob.argmax(-1),
        "video_top1": prob.argmax(-1) == labels,
        "video_top5": (top5 == labels[:, None]).any(1),
        "video_prob": prob,
    }


@dataclass
class VideoRow:
    """One test video: its dataset index, true and predicted label, mean GFLOPs over its views, any
    integer annotations the dataset gives (``motion``, ``clutter`` for the synthetic set) and, per dynamic
    layer, the mean ratio of output features the layer computed for it (empty for a static model)."""

    index: int
    label: int
    pred: int
    gflops: float
    extra: dict[str, int] = field(default_factory=dict)
    layer_ratio: list[float] = field(default_factory=list)


#: the metric names an evaluation reports: what trials log and what a study may optimise (architecture doc)
Metric = Literal["clip_top1", "video_top1", "video_top5", "gflops_avg", "gflops_max", "gflops_min", "clips_per_s", "loss"]
METRICS: tuple[str, ...] = get_args(Metric)


@dataclass
class EvalResult:
    """What `evaluate` measured. Accuracies in percent, costs in GFLOPs per clip (one view)."""

    clip_top1: float
    video_top1: float
    video_top5: float
    loss: float
    gflops_avg: float
    gflops_max: float
    gflops_min: float
    clips_per_s: float
    num_videos: int
    num_views: int
    class_names: list[str]
    layer_names: list[str]
    #: [layer][class] mean ratio of output features the layer computed (NaN: class absent)
    feature_ratio: list[list[float]]
    #: the same per dimension (seed Figures B-4, B-5): [layer][class] mean fraction of output frames, and of
    #: output channels, the layer computed (0 for a clip that skipped it)
    temporal_ratio: list[list[float]]
    channel_ratio: list[list[float]]
    #: GFLOPs of every view, in dataset order
    view_gflops: list[float]
    videos: list[VideoRow]

    def metrics(self) -> dict[str, float]:
        """The project's metric names → values (what trials report and MLflow stores)."""
        return {k: float(getattr(self, k)) for k in METRICS}

    def extremes(self) -> dict[str, dict[str, VideoRow]]:
        """Per class name: the ``"most"`` and ``"least"`` expensive video (seed Figure 4-2)."""
        out: dict[str, dict[str, VideoRow]] = {}
        for c, name in enumerate(self.class_names):
            rows = [v for v in self.videos if v.label == c]
            if rows:
                out[name] = {"most": max(rows, key=lambda r: r.gflops), "least": min(rows, key=lambda r: r.gflops)}
        return out

    def _videos_by(self, key: str) -> dict[int, list[VideoRow]]:
        """The videos per value of an integer annotation, in ascending order of the values."""
        groups: dict[int, list[VideoRow]] = {}
        for v in self.videos:
            if key in v.extra:
                groups.setdefault(v.extra[key], []).append(v)
        return dict(sorted(groups.items()))

    def gflops_by(self, key: str) -> dict[int, float]:
        """Mean GFLOPs per value of an integer annotation, e.g. ``gflops_by("motion")``."""
        return {k: sum(v.gflops for v in g) / len(g) for k, g in self._videos_by(key).items()}

    def feature_ratio_by(self, key: str) -> dict[int, list[float]]:
        """Per value of an integer annotation: each dynamic layer's mean ratio of computed output features over
        the videos with that value, e.g. ``feature_ratio_by("motion")`` says which layers spend on which clips
        (empty for a static model)."""
        if not self.layer_names:
            return {}
        return {
            k: [sum(col) / len(g) for col in zip(*(v.layer_ratio for v in g))] for k, g in self._videos_by(key).items()
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def centre_views(num_views: int, crops: int) -> tuple[int, list[int]]:
    """For a video's views (clip-major, ``crops`` per clip): the clip-1 view (middle clip, centre crop) and
    the centre-crop view of every clip.

    Example:
        >>> centre_views(30, crops=3)    # K = 10 clips × left/centre/right
        (13, [1, 4, 7, 10, 13, 16, 19, 22, 25, 28])
        >>> centre_views(1, crops=1)
        (0, [0])
    """
    if crops not in (1, 3) or num_views % crops:
        raise ValueError(f"evaluate: {num_views} views per video are not whole clips of {crops} crops")
    centre = crops // 2
    clips = num_views // crops
    return (clips - 1) // 2 * crops + centre, [k * crops + centre for k in range(clips)]


def _dimension_ratios(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) fractions of output frames and of output channels one dynamic layer computed for each clip of its
    last forward; a clip that skipped the layer computed neither."""
    record = layer.last
    frames = torch.tensor([layer.computed_frames(r) / layer.out_frames for r in layer.temporal_factors] + [0.0])
    channels = torch.tensor([k / layer.out_channels for k in layer.channel_counts] + [0.0])
    t_choice, c_choice = record.temporal_choice.cpu(), record.channel_choice.cpu()  # -1 (skip) reads the 0 at the end
    ran = ((t_choice >= 0) & (c_choice >= 0)).float()
    return frames[t_choice] * ran, channels[c_choice] * ran


def _per_class(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[list[float]]:
    """(views, layers) values → [layer][class] means (NaN for an absent class)."""
    return [[float(values[labels == c, li].mean()) if bool((labels == c).any()) else math.nan
             for c in range(num_classes)] for li in range(values.shape[1])]


def _views(video: torch.Tensor) -> tuple[torch.Tensor, int]:
    if video.dim() == 6:
        return video.flatten(0, 1), video.shape[1]
    if video.dim() == 5:
        return video, 1
    raise ValueError(f"evaluate: expected video batches (B, C, T, H, W) or (B, V, C, T, H, W), got {tuple(video.shape)}")


@dataclass
class _Part:
    """What one rank's evaluation saw: its videos' dataset positions, their rows, and per-video tensors
    (leading dimension = its videos) that merge with the other ranks' in dataset order."""

    positions: list[int]
    videos: list[VideoRow]
    num_views: int
    layer_names: list[str]
    timed_views: int
    timed_seconds: float
    per_video: dict[str, torch.Tensor | None]


def _per_video(chunks: list[torch.Tensor], num_videos: int) -> torch.Tensor | None:
    """Per-batch tensors, catenated and shaped ``(videos, ...)`` (``None`` when there are none)."""
    if not chunks:
        return None
    x = torch.cat(chunks)
    return x.reshape(num_videos, -1, *x.shape[1:])


def _merged(parts: list[torch.Tensor | None], order: torch.Tensor) -> torch.Tensor:
    """Every rank's per-video tensor in dataset order, flattened back to one row per view (or per video)."""
    present = [p for p in parts if p is not None]  # None: a rank without videos, or no dynamic layers
    if not present:
        return torch.zeros(0)
    x = torch.cat(present)[order]
    return x.flatten(0, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Sequence[dict[str, Any]],
    *,
    batch_size: int = 8,
    num_workers: int | None = 0,
    device: str | torch.device | None = None,
    warmup_batches: int = 1,
    class_names: Sequence[str] | None = None,
    channels_last: bool = False,
    fuse_bn: bool = True,
    crops: int | None = None,
    shard: bool = True,
) -> EvalResult:
    """Evaluate ``model`` on every video of ``dataset`` (items with ``"video"`` and ``"label"``).

    Dynamic layers run in hard mode (each clip computes only what its gates keep). The model's
    training mode is restored afterwards.

    Args:
        dataset: a test `VideoDataset` (or any sequence of such dicts); multi-view items
            ``(V, C, T, H, W)`` are scored per video.
        batch_size: videos per batch (a batch holds batch_size × V views).
        device: where to run; default the model's device.
        warmup_batches: batches left out of the clips/s timing (allocations, kernel selection).
        class_names: names for the per-class tables; default ``dataset.classes`` or "0", "1", …
        fuse_bn: run an inference copy with BatchNorms folded into their convs (`fuse_batchnorm`), the
            form a deployed model runs in, so clips/s is inference speed; same outputs up to rounding.
        crops: views per clip in the dataset's items (3: left, centre, right), to find the centre crops
            clip-1 and GFLOPs are taken on; default ``dataset.crops``, else 1.
        shard: inside a torch process group of several ranks (`vared_core.engine.distributed`), each rank
            evaluates every ``size``-th video and the results are gathered, so every rank returns the result
            of the whole set (clips/s: the group's views over its slowest rank's forward time); outside a
            group nothing changes. ``False``: every rank evaluates everything.
    """
    crops = crops if crops is not None else getattr(dataset, "crops", 1)
    param = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
    was_training, caller_model = model.training, model
    layers: list = []  # the dynamic layers of the model that runs, found on the first batch
    model.eval()
    w = world() if shard else World(0, 1)
    positions = shard_of(len(dataset), w)
    mine = dataset if w.size == 1 else Subset(dataset, positions)  # type: ignore[arg-type]
    loader = make_loader(mine, batch_size=batch_size, train=False, num_workers=num_workers, collate_fn=collate_clips)
    clip_correct: list[torch.Tensor] = []
    top1: list[torch.Tensor] = []
    top5: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    view_cost: list[torch.Tensor] = []
    centre_cost: list[torch.Tensor] = []  # the centre-crop views: the seed's unit
    ratios: list[torch.Tensor] = []  # (B·V, L) computed-feature ratio per view and layer
    frame_ratios: list[torch.Tensor] = []  # the same, of output frames alone
    channel_ratios: list[torch.Tensor] = []  # and of output channels alone
    view_labels: list[torch.Tensor] = []
    videos: list[VideoRow] = []
    batch_times: list[tuple[int, float]] = []  # (views, forward seconds) per batch
    num_views = 1
    try:
        for batch in loader:
            x, num_views = _views(batch["video"])
            x = x.to(device, non_blocking=True)
            if channels_last and x.dim() == 5:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            labels = batch["label"]
            if not batch_times:  # first batch: set up the model that runs, now that the clip shape is known
                if fuse_bn:  # an eval-mode copy; the caller's model is untouched
                    model = fuse_batchnorm(caller_model, x.shape[-4:])
                track_costs(model)
                layers = dynamic_layers(model)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            logits = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            batch_times.append((x.shape[0], time.perf_counter() - start))
            logits = logits.float().cpu()
            cost = clip_gflops(model).float()
            s = score_views(logits, labels, num_views)
            one_view, centres = centre_views(num_views, crops)
            clip_correct.append(s["clip_correct"].view(-1, num_views)[:, one_view])
            top1.append(s["video_top1"])
            top5.append(s["video_top5"])
            losses.append(F.cross_entropy(logits, labels.repeat_interleave(num_views), reduction="none"))
            view_cost.append(cost)
            centre_cost.append(cost.view(-1, num_views)[:, centres].flatten())
            view_labels.append(labels.repeat_interleave(num_views))
            per_video_ratio = torch.zeros(len(labels), 0)
            if layers:
                ratios.append(torch.stack([m.last.cost_fraction.detach().float().cpu() for _, m in layers], 1))
                per_dim = [_dimension_ratios(m) for _, m in layers]
                frame_ratios.append(torch.stack([t for t, _ in per_dim], 1))
                channel_ratios.append(torch.stack([c for _, c in per_dim], 1))
                per_video_ratio = ratios[-1].view(len(labels), num_views, -1).mean(1)
            per_video_cost = cost.view(-1, num_views).mean(1)
            extra_keys = [k for k in ("motion", "clutter") if isinstance(batch.get(k), torch.Tensor)]
            indices = batch["index"].tolist() if isinstance(batch.get("index"), torch.Tensor) else [None] * len(labels)
            for i in range(len(labels)):
                videos.append(VideoRow(
                    index=int(indices[i]) if indices[i] is not None else positions[len(videos)],
                    label=int(labels[i]), pred=int(s["video_pred"][i]), gflops=float(per_video_cost[i]),
                    extra={k: int(batch[k][i]) for k in extra_keys}, layer_ratio=per_video_ratio[i].tolist(),
                ))  # fmt: skip
    finally:
        caller_model.train(was_training)
    timed = batch_times[warmup_batches:] or batch_times  # too few batches to leave the warm-up out: all
    part = _Part(
        positions=positions, videos=videos, num_views=num_views, layer_names=[n for n, _ in layers],
        timed_views=sum(n for n, _ in timed), timed_seconds=sum(s for _, s in timed),
        per_video={k: _per_video(v, len(videos)) for k, v in {
            "clip_correct": clip_correct, "top1": top1, "top5": top5, "losses": losses, "view_cost": view_cost,
            "centre_cost": centre_cost, "view_labels": view_labels, "ratios": ratios, "frame_ratios": frame_ratios,
            "channel_ratios": channel_ratios}.items()},
    )  # fmt: skip
    parts = gather_objects(part, w)
    videos = [v for p in parts for v in p.videos]
    if not videos:
        raise ValueError("evaluate: the dataset is empty")
    order = torch.tensor([i for p in parts for i in p.positions]).argsort()
    videos = [videos[i] for i in order.tolist()]
    merged = {k: _merged([p.per_video[k] for p in parts], order) for k in part.per_video}
    num_views = max(p.num_views for p in parts)
    layer_names = next((p.layer_names for p in parts if p.layer_names), [])
    names = list(class_names or getattr(dataset, "classes", None) or [])
    labels_all = merged["view_labels"]
    num_classes = max(len(names), int(labels_all.max()) + 1)
    names += [str(i) for i in range(len(names), num_classes)]
    cost_all = merged["view_cost"]
    cost_centre = merged["centre_cost"]
    feature_ratio = temporal_ratio = channel_ratio = []
    if layer_names:
        feature_ratio = _per_class(merged["ratios"], labels_all, num_classes)
        temporal_ratio = _per_class(merged["frame_ratios"], labels_all, num_classes)
        channel_ratio = _per_class(merged["channel_ratios"], labels_all, num_classes)
    seconds = max(p.timed_seconds for p in parts)
    return EvalResult(
        clip_top1=100.0 * float(merged["clip_correct"].float().mean()),
        video_top1=100.0 * float(merged["top1"].float().mean()),
        video_top5=100.0 * float(merged["top5"].float().mean()),
        loss=float(merged["losses"].mean()),
        gflops_avg=float(cost_centre.mean()),
        gflops_max=float(cost_centre.max()),
        gflops_min=float(cost_centre.min()),
        clips_per_s=sum(p.timed_views for p in parts) / seconds if seconds > 0 else math.nan,
        num_videos=len(videos),
        num_views=num_views,
        class_names=names,
        layer_names=layer_names,
        feature_ratio=feature_ratio,
        temporal_ratio=temporal_ratio,
        channel_ratio=channel_ratio,
        view_gflops=cost_all.tolist(),
        videos=videos,
    )
