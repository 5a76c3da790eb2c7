"""Redundancy of a video CNN's feature maps along time and channels (the seed's appendix B.1, Table B.1).

Experimental (vared_core 0.1.0): the numbers are defined below and in `pair_stats`; names and defaults may still
change.

The seed motivates VA-RED² by measuring, for every convolution of a trained network and every clip of a
validation set, how alike the layer's feature maps are along time and along channels (seed, appendix
B.1): "(1) For a given input, we first extract the output feature maps from all convolutional layers in
the network at hand. (2) In each layer, we measure the similarity of each feature map to each other with
Person's [sic] correlation coefficient (CC) and root mean squared error (RMSE). We additionally flag feature
maps that exhibit high similarity as redundant. (3) After computing this for the validation sets, we
average the values over all examples to obtain mean metrics of redundancy per model and per dataset. We
additionally compute the ranges of these values". Table B.1: "RP is calculated as the number of tensors
with both CC and RMSE above redundancy thresholds of 0.85 and 0.001, respectively. We show results
corresponding to averaging the per layer values for all videos in the validation sets."

How the pair statistics of one layer's output (which maps are compared, CC, RMSE, RP) are defined:
`vared_core.analysis.pair_stats`. This module averages them (where the seed is silent, the choice is marked
**Decision**):

* **Averages.** For each layer, clip and dimension the CC, RMSE and RP are averaged over the clip's pairs
  (per-clip values, kept for every clip so the most / least redundant clips can be found, Figure B-1);
  a layer's value is the mean over clips; the model's value is the mean over layers of the layer values
  (each layer weighs the same: "averaging the per layer values"). Layers where a dimension has fewer than
  two maps (``T == 1`` for time) are "not applicable" there: NaN, left out of the averages.
* **Layers.** By default the output of every Conv2d / Conv3d / `DynamicConv` ("all convolutional
  layers"), before BN and ReLU. Wildcard patterns narrow that set; an exact module name adds any module
  (a ReLU, a residual block), e.g. to study the post-ReLU maps the seed's Figure B-2 draws.
* **Clips.** One clip is one view the model sees: multi-view test batches ``(B, V, C, T, H, W)`` are
  flattened with `merge_views`, each view counted as a clip and tagged with its video's index.
* **Time-folded 2D nets** (TSN): a Conv2d sees ``(B·T, C, H, W)`` with the frames of one clip consecutive;
  its 4-D output is unfolded to ``(B, C, T, H, W)`` with ``T = num_frames`` when given, else ``T =``
  output batch ÷ clips in the batch (exact, and independent of ``model.cfg.num_frames``, which may differ
  from the clips actually fed).

Example:
    >>> import torch
    >>> from vared_core import build_model
    >>> from vared_core.analysis import analyze_redundancy
    >>> net = build_model("r2plus1d_18_tiny", num_classes=4)
    >>> report = analyze_redundancy(net, [torch.randn(2, 3, 8, 64, 64)], layers=["stem.*", "layer1.0"])
    >>> [layer.name for layer in report.layers], report.num_clips       # the stem's convs, a whole block
    (['stem.0', 'stem.3', 'layer1.0'], 2)
    >>> sorted(report.average("time"))
    ['cc', 'rmse', 'rp']

Why one file of ~520 lines: a fifth of it is the definitions above, and the report classes and
`analyze_redundancy` share one per-clip layout (the accumulator builds exactly the arrays the report keeps
and formats); the pair statistics, which stand alone, are `pair_stats`.
"""
from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .pair_stats import (CC_THRESHOLD, DIMS, RMSE_THRESHOLD, Dim, Pairs, check_choice, num_pairs, pair_blocks,
                         pairwise_stats, redundancy_proportion, redundant)

__all__ = [
    "CC_THRESHOLD",
    "DIMS",
    "METRICS",
    "RMSE_THRESHOLD",
    "DimRedundancy",
    "LayerRedundancy",
    "RedundancyReport",
    "analyze_redundancy",
    "num_pairs",
    "pairwise_stats",
    "redundancy_proportion",
    "redundant",
]

Metric = Literal["cc", "rmse", "rp"]

METRICS: tuple[Metric, ...] = ("cc", "rmse", "rp")


# ------------------------------------------------------------------------------------------------- the report
def _nanmean(x: Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if x.numel() else math.nan


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _json_list(x: Tensor) -> list[float | None]:
    return [_json_float(v) for v in x.tolist()]


@dataclass(frozen=True)
class DimRedundancy:
    """One layer's redundancy along one dimension, for every clip analysed.

    Attributes:
        num_pairs: pairs of feature maps compared per clip (0: not applicable, e.g. T == 1 for time).
        cc / rmse / rp: ``(N,)`` float64 per-clip means over the pairs (RP: share of redundant pairs);
            NaN for clips this layer did not see, and everywhere when not applicable.
    """

    num_pairs: int
    cc: Tensor
    rmse: Tensor
    rp: Tensor

    @property
    def applicable(self) -> bool:
        return self.num_pairs > 0

    def values(self, metric: Metric) -> Tensor:
        """The ``(N,)`` per-clip values of ``"cc"``, ``"rmse"`` or ``"rp"``."""
        check_choice(metric, METRICS, "metric")
        return getattr(self, metric)

    def mean(self, metric: Metric) -> float:
        """Mean over clips (NaN when not applicable)."""
        return _nanmean(self.values(metric))

    def summary(self) -> dict[str, Any]:
        """Means over clips, and their range over clips (``min`` / ``max``), JSON-ready (NaN → None)."""
        out: dict[str, Any] = {"num_pairs": self.num_pairs}
        for metric in METRICS:
            v = self.values(metric)
            v = v[~v.isnan()]
            out[metric] = _json_float(self.mean(metric))
            out[f"{metric}_min"] = float(v.min()) if v.numel() else None
            out[f"{metric}_max"] = float(v.max()) if v.numel() else None
        return out


@dataclass(frozen=True)
class LayerRedundancy:
    """Redundancy of one layer's output feature maps.

    Attributes:
        name: module name in the model (``model.get_submodule(name)``).
        kind: the module's class name (``Conv3d``, ``Conv2d``, ``DynamicConv``, ...).
        shape: ``(C, T, H, W)`` of one clip's output (time-folded 2D outputs unfolded).
        time / channel: `DimRedundancy` along each dimension.
    """

    name: str
    kind: str
    shape: tuple[int, int, int, int]
    time: DimRedundancy
    channel: DimRedundancy

    def dim(self, dim: Dim) -> DimRedundancy:
        check_choice(dim, DIMS, "dim")
        return self.time if dim == "time" else self.channel


@dataclass(frozen=True)
class RedundancyReport:
    """Table B.1 for one model and data set: per-layer and layer-averaged CC, RMSE and RP, per clip kept.

    Attributes:
        layers: one `LayerRedundancy` per analysed layer, in module order.
        num_clips: N, clips analysed (views of multi-view items count one each).
        clip_ids: ``(N,)`` int64: the dataset ``"index"`` of each clip's video when batches carry it,
            else the clip's running number.
        cc_threshold / rmse_threshold / pairs: the settings the RP and pairs were computed with.
        skipped: selected modules left out, name → reason (output not a feature map, never called).
    """

    layers: list[LayerRedundancy]
    num_clips: int
    clip_ids: Tensor
    cc_threshold: float = CC_THRESHOLD
    rmse_threshold: float | None = RMSE_THRESHOLD
    pairs: Pairs = "adjacent"
    skipped: dict[str, str] = field(default_factory=dict)

    def layer(self, name: str) -> LayerRedundancy:
        """The entry of layer ``name``; ``KeyError`` listing the analysed layers otherwise."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in the report; analysed: {', '.join(l.name for l in self.layers)}")

    def average(self, dim: Dim) -> dict[str, float]:
        """``{"cc", "rmse", "rp"}`` along ``dim``: mean over applicable layers of each layer's clip mean."""
        out = {}
        for metric in METRICS:
            per_layer = torch.tensor([l.dim(dim).mean(metric) for l in self.layers], dtype=torch.float64)
            out[metric] = _nanmean(per_layer)
        return out

    def per_clip(self, dim: Dim, metric: Metric = "cc") -> Tensor:
        """``(N,)`` each clip's ``metric`` along ``dim``, averaged over the applicable layers (NaN if none)."""
        rows = [l.dim(dim).values(metric) for l in self.layers if l.dim(dim).applicable]
        if not rows:
            return torch.full((self.num_clips,), math.nan, dtype=torch.float64)
        return torch.stack(rows, 1).nanmean(1)

    def extremes(self, dim: Dim = "time", metric: Metric = "cc", k: int = 1) -> dict[str, list[tuple[int, float]]]:
        """The ``k`` most and least redundant clips by `per_clip` (``[(clip_id, value), ...]``, Figure B-1).

        For ``metric="rmse"`` "most redundant" means the lowest RMSE.
        """
        scores = self.per_clip(dim, metric)
        keep = (~scores.isnan()).nonzero().flatten()
        order = keep[torch.argsort(scores[keep], descending=metric != "rmse", stable=True)]
        pick = lambda idx: [(int(self.clip_ids[i]), float(scores[i])) for i in idx.tolist()]  # noqa: E731
        return {"most": pick(order[:k]), "least": pick(order.flip(0)[:k])}

    def to_dict(self, *, per_clip: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN → ``None``).

        Keys: ``num_clips``, ``settings``, ``average`` (per dim: cc, rmse, rp), ``layers`` (name, kind,
        shape and per dim the `DimRedundancy.summary`), ``clips`` (``ids`` and per dim and metric the
        layer-averaged per-clip values), ``skipped``. ``per_clip=True`` adds each layer's per-clip values
        (``layers[i][dim]["per_clip"]``), N values per layer, dimension and metric.
        """
        layers = []
        for l in self.layers:
            entry: dict[str, Any] = {"name": l.name, "kind": l.kind, "shape": list(l.shape)}
            for dim in DIMS:
                entry[dim] = l.dim(dim).summary()
                if per_clip:
                    entry[dim]["per_clip"] = {m: _json_list(l.dim(dim).values(m)) for m in METRICS}
            layers.append(entry)
        return {
            "num_clips": self.num_clips,
            "settings": {
                "cc_threshold": self.cc_threshold,
                "rmse_threshold": self.rmse_threshold,
                "pairs": self.pairs,
                "rp_rule": "CC > cc_threshold and RMSE > rmse_threshold (seed Table B.1)",
            },
            "average": {dim: {k: _json_float(v) for k, v in self.average(dim).items()} for dim in DIMS},
            "layers": layers,
            "clips": {
                "ids": self.clip_ids.tolist(),
                **{dim: {m: _json_list(self.per_clip(dim, m)) for m in METRICS} for dim in DIMS},
            },
            "skipped": dict(self.skipped),
        }

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the report as text: one row per layer, the layer average last (``n/a``)."""

        def cells(values: dict[str, float]) -> list[str]:
            fmt = {"cc": "{:.3f}", "rmse": "{:.4g}", "rp": "{:.3f}"}
            return ["n/a" if math.isnan(values[m]) else fmt[m].format(values[m]) for m in METRICS]

        def means(layer: LayerRedundancy, dim: Dim) -> dict[str, float]:
            return {m: layer.dim(dim).mean(m) for m in METRICS}

        header = ["layer", "C×T×H×W", "time CC", "time RMSE", "time RP", "chan CC", "chan RMSE", "chan RP"]
        rows = [
            [l.name, "×".join(map(str, l.shape)), *cells(means(l, "time")), *cells(means(l, "channel"))]
            for l in self.layers
        ]
        average = [*cells(self.average("time")), *cells(self.average("channel"))]
        rows.append([f"average ({len(self.layers)} layers)", "", *average])
        return header, rows

    def rp_rule(self) -> str:
        """The redundancy rule in words, e.g. ``"CC > 0.85 and RMSE > 0.001"``."""
        rmse = "" if self.rmse_threshold is None else f" and RMSE > {self.rmse_threshold:g}"
        return f"CC > {self.cc_threshold:g}{rmse}"

    def format_table(self) -> str:
        """A plain-text table: one row per layer, then the layer average (``n/a``: not applicable)."""
        header, rows = self.table_rows()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(row: list[str]) -> str:
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(line(header))
        foot = f"{self.num_clips} clips, {self.pairs} pairs; RP = share of pairs with {self.rp_rule()}"
        return "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1]), foot])


# ------------------------------------------------------------------------------------------------ the analysis
class _Accumulator:
    """Per-clip CC / RMSE / RP sums of one layer, batch by batch (only (B,) vectors are kept)."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.shape: tuple[int, int, int, int] | None = None
        self.num_pairs: dict[str, int] = {}
        self.chunks: dict[str, dict[str, list[Tensor]]] = {d: {m: [] for m in METRICS} for d in DIMS}
        self.batch: dict[str, dict[str, Tensor]] | None = None  # this batch's values, None until seen

    def update(self, y: Tensor, pairs: Pairs, cc_threshold: float, rmse_threshold: float | None) -> None:
        b, c, t, h, w = y.shape
        self.shape = self.shape or (c, t, h, w)
        self.batch = {}
        for dim in DIMS:
            self.num_pairs[dim] = max(self.num_pairs.get(dim, 0), num_pairs(c, t, dim, pairs))
            sums = torch.zeros(3, b, dtype=torch.float64)
            count = 0
            for cc, rmse in pair_blocks(y, dim, pairs):
                flagged = redundant(cc, rmse, cc_threshold, rmse_threshold)
                sums += torch.stack([cc.sum(1), rmse.sum(1), flagged.sum(1, dtype=torch.float64)]).cpu()
                count += cc.shape[1]
            means = sums / count if count else torch.full_like(sums, math.nan)
            self.batch[dim] = dict(zip(METRICS, means))

    def close_batch(self, clips: int) -> None:
        """Store this batch's values (NaN when the layer did not run on it)."""
        for dim in DIMS:
            for m in METRICS:
                v = self.batch[dim][m] if self.batch else torch.full((clips,), math.nan, dtype=torch.float64)
                self.chunks[dim][m].append(v)
        self.batch = None

    def result(self) -> LayerRedundancy:
        assert self.shape is not None
        stats = {
            d: DimRedundancy(self.num_pairs[d], *(torch.cat(self.chunks[d][m]) for m in METRICS)) for d in DIMS
        }
        return LayerRedundancy(self.name, self.kind, self.shape, stats["time"], stats["channel"])


def _default_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Conv2d / Conv3d / DynamicConv, not counting modules inside a DynamicConv (gate, cheap ops)."""
    from vared_core.dynamic import DynamicConv

    dynamic = [n for n, m in model.named_modules() if isinstance(m, DynamicConv)]
    inside = lambda n: any(n.startswith(d + ".") for d in dynamic)  # noqa: E731
    return [
        (n, m) for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Conv3d, DynamicConv)) and n and not inside(n)
    ]  # fmt: skip


def _select_layers(model: nn.Module, patterns: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """Wildcard patterns pick among the default convs; a name without wildcards picks that module, any type."""
    convs = _default_layers(model)
    if patterns is None:
        if not convs:
            raise ValueError("analyze_redundancy: the model has no Conv2d / Conv3d / DynamicConv; pass layers=")
        return convs
    if isinstance(patterns, str):
        patterns = [patterns]
    exact = {p for p in patterns if not any(ch in p for ch in "*?[")}
    conv_names = {n for n, _ in convs}
    chosen = [
        (n, m) for n, m in model.named_modules()
        if n in exact or (n in conv_names and any(fnmatch.fnmatchcase(n, p) for p in patterns))
    ]  # fmt: skip
    if not chosen:
        raise ValueError(
            f"analyze_redundancy: layers={list(patterns)} select no module (wildcard patterns match conv "
            f"names, exact names any module); convs include: {', '.join(sorted(conv_names)[:6])}, ..."
        )
    return chosen


def _as_clips(y: Any, clips: int, num_frames: int | None) -> Tensor | str:
    """A module output as ``(B, C, T, H, W)``, or the reason it is not a clip feature map."""
    if not isinstance(y, Tensor):
        return f"output is {type(y).__name__}, not a tensor"
    if y.dim() == 5 and y.shape[0] == clips:
        return y
    if y.dim() == 4:  # a 2D conv in a net that folds time into the batch: (B·T, C, H, W), clip-major
        frames = num_frames or (y.shape[0] // clips if y.shape[0] % clips == 0 else 0)
        if frames and y.shape[0] == clips * frames:
            return y.reshape(clips, frames, *y.shape[1:]).transpose(1, 2)
        return f"4-D output {tuple(y.shape)} is not (B·T, C, H, W) for B = {clips}, T = {num_frames or '?'}"
    return f"output of shape {tuple(y.shape)} is not a feature map (B, C, T, H, W) or (B·T, C, H, W)"


def _unpack(batch: Tensor | Mapping[str, Any] | Sequence[Any], seen: int) -> tuple[Tensor, Tensor]:
    """A batch → clips ``(B, C, T, H, W)`` and their ids ``(B,)``."""
    index = None
    if isinstance(batch, Mapping):
        if "video" not in batch:
            raise ValueError(f"analyze_redundancy: a dict batch needs a 'video' entry, got keys {list(batch)}")
        video, index = batch["video"], batch.get("index")
    elif isinstance(batch, Tensor):
        video = batch
    elif isinstance(batch, Sequence) and batch and isinstance(batch[0], Tensor):
        video = batch[0]
    else:
        raise ValueError(
            "analyze_redundancy: a batch must be a tensor, a dict with 'video' or a tuple (video, ...); "
            f"got {type(batch).__name__}"
        )
    if video.dim() == 6:
        from vared_core.data import merge_views

        views = video.shape[1]
        video = merge_views(video)
        if index is not None:
            index = torch.as_tensor(index).repeat_interleave(views)
    if video.dim() != 5:
        raise ValueError(
            f"analyze_redundancy: clips must be (B, C, T, H, W) or (B, V, C, T, H, W), got {tuple(video.shape)}"
        )
    ids = torch.as_tensor(index, dtype=torch.int64) if index is not None else torch.arange(seen, seen + len(video))
    return video, ids.cpu()


def analyze_redundancy(
    model: nn.Module,
    batches: Iterable[Tensor | Mapping[str, Any] | Sequence[Any]],
    *,
    layers: Sequence[str] | None = None,
    pairs: Pairs = "adjacent",
    cc_threshold: float = CC_THRESHOLD,
    rmse_threshold: float | None = RMSE_THRESHOLD,
    max_batches: int | None = None,
    max_clips: int | None = None,
    num_frames: int | None = None,
    device: str | torch.device = "cpu",
) -> RedundancyReport:
    """Measure the feature-map redundancy of ``model`` over ``batches`` (seed appendix B.1, Table B.1).

    Runs the model in eval mode under ``torch.no_grad`` with forward hooks on the chosen layers; each hook
    reduces its output to per-clip CC / RMSE / RP at once, so no feature map outlives its layer. The
    model's train/eval mode is restored afterwards (it stays on ``device``).

    Args:
        model: clips ``(B, C, T, H, W)`` → anything; static or dynamized.
        batches: tensors ``(B, C, T, H, W)``, tuples ``(video, ...)``, or loader dicts with ``"video"``
            ``(B, C, T, H, W)`` or ``(B, V, C, T, H, W)`` (views flattened, one clip each) and optionally
            ``"index"`` (kept as the clip ids).
        layers: which outputs to analyse. ``None``: every Conv2d / Conv3d and `DynamicConv` (not the
            modules inside a DynamicConv). Otherwise names from ``model.named_modules()``: a pattern with
            fnmatch wildcards (``"layer1.*"``) selects among those convs; a name without wildcards selects
            that module whatever its type (a ReLU, a block), to analyse its output. Modules whose output
            is not a feature map are listed in ``report.skipped``.
        pairs: ``"adjacent"`` or ``"all"`` pairs of maps (module doc).
        cc_threshold / rmse_threshold: a pair is redundant when CC > cc_threshold and RMSE >
            rmse_threshold (Table B.1: 0.85, 0.001); ``rmse_threshold=None`` drops the RMSE condition.
        max_batches / max_clips: stop after this many batches / clips (``None``: all).
        num_frames: T of time-folded 2D outputs ``(B·T, C, H, W)``; ``None`` infers T = rows ÷ clips.
        device: where the model and clips run.

    Returns:
        A `RedundancyReport`.

    Raises:
        ValueError: bad thresholds or options, patterns matching no module, no clips, or no selected
            layer producing a feature map.

    Example:
        >>> import torch
        >>> from vared_core import build_model
        >>> net = build_model("tsn_resnet50_tiny", num_classes=4)
        >>> report = analyze_redundancy(net, [torch.randn(1, 3, 8, 64, 64)], layers=["conv1"])
        >>> report.layers[0].shape          # (B·T, C, H, W) outputs unfolded to (C, T, H, W)
        (16, 8, 32, 32)
    """
    check_choice(pairs, ("adjacent", "all"), "analyze_redundancy: pairs")
    if not -1.0 <= cc_threshold <= 1.0:
        raise ValueError(f"analyze_redundancy: cc_threshold must lie in [-1, 1], got {cc_threshold!r}")
    if rmse_threshold is not None and not rmse_threshold >= 0:
        raise ValueError(f"analyze_redundancy: rmse_threshold must be >= 0 or None, got {rmse_threshold!r}")
    for what, value in (("max_batches", max_batches), ("max_clips", max_clips), ("num_frames", num_frames)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"analyze_redundancy: {what} must be a positive integer or None, got {value!r}")

    chosen = _select_layers(model, layers)
    accs = {name: _Accumulator(name, type(m).__name__) for name, m in chosen}
    skipped: dict[str, str] = {}
    current = {"clips": 0}

    def hook(name: str):  # noqa: ANN202
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            acc = accs[name]
            if acc.batch is not None:  # a module called twice in one forward: its first call counts
                return
            y = _as_clips(output, current["clips"], num_frames)
            if isinstance(y, str):
                skipped.setdefault(name, y)
                return
            acc.update(y, pairs, cc_threshold, rmse_threshold)

        return fn

    was_training = model.training
    model.eval().to(device)
    handles = [m.register_forward_hook(hook(name)) for name, m in chosen]
    ids: list[Tensor] = []
    seen = 0
    try:
        with torch.no_grad():
            for step, batch in enumerate(batches):
                if max_batches is not None and step >= max_batches:
                    break
                video, clip_ids = _unpack(batch, seen)
                if max_clips is not None:
                    video, clip_ids = video[: max_clips - seen], clip_ids[: max_clips - seen]
                if len(video) == 0:
                    break
                current["clips"] = len(video)
                model(video.to(device, non_blocking=True))
                for acc in accs.values():
                    acc.close_batch(len(video))
                ids.append(clip_ids)
                seen += len(video)
                if max_clips is not None and seen >= max_clips:
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    if seen == 0:
        raise ValueError("analyze_redundancy: no clips to analyse (empty batches, or max_batches / max_clips 0)")
    results = []
    for name, acc in accs.items():
        if acc.shape is None:
            skipped.setdefault(name, "never called in the forward pass")
        else:
            results.append(acc.result())
    if not results:
        raise ValueError(
            "analyze_redundancy: none of the selected layers produced a feature map: "
            + "; ".join(f"{n}: {r}" for n, r in list(skipped.items())[:5])
        )
    return RedundancyReport(
        layers=results, num_clips=seen, clip_ids=torch.cat(ids), cc_threshold=cc_threshold,
        rmse_threshold=rmse_threshold, pairs=pairs, skipped=skipped,
    )  # fmt: skip
