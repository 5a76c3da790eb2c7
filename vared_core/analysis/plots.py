"""Plots of an evaluation: the seed's per-layer, per-class heatmap of computed features (Figure 4-1), the
same for the temporal and the channel policy apart (Figures B-4, B-5) and the histogram of per-clip cost
(Figure B-6). PNG files, drawn on matplotlib `Figure` objects without pyplot: the caller's backend, its
open figures and pyplot's state stay as they were (a notebook keeps its inline backend), and nothing is
left open to close."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vared_core.engine.evaluate import EvalResult

__all__ = ["plot_cost_histogram", "plot_feature_ratio", "plot_policy_by_dimension"]


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure  # saved through Agg, whatever backend the caller's pyplot uses

    return Figure(figsize=figsize)


def plot_feature_ratio(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Heatmap: rows = dynamic layers (input → output), columns = classes, colour = mean ratio of the
    layer's output features computed for clips of that class (1 = everything)."""
    if not result.layer_names:
        raise ValueError("plot_feature_ratio: the model has no dynamic layers")
    rows, cols = len(result.layer_names), len(result.class_names)
    fig = _figure((max(4, 0.5 * cols + 3), max(3, 0.25 * rows + 1.5)))
    ax = fig.subplots()
    im = ax.imshow(result.feature_ratio, aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(cols), result.class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(rows), result.layer_names, fontsize=6)
    ax.set_xlabel("class")
    ax.set_ylabel("dynamic layer")
    ax.set_title("ratio of computed features")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out


def plot_policy_by_dimension(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Two heatmaps side by side (seed Figures B-4, B-5): per dynamic layer and class, the mean fraction of
    output frames (temporal policy) and of output channels (channel policy) the layer computed."""
    if not result.layer_names:
        raise ValueError("plot_policy_by_dimension: the model has no dynamic layers")
    rows, cols = len(result.layer_names), len(result.class_names)
    fig = _figure((2 * max(3, 0.5 * cols + 2) + 2, max(3, 0.25 * rows + 1.5)))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, values, title in ((axes[0], result.temporal_ratio, "frames computed (temporal policy)"),
                              (axes[1], result.channel_ratio, "channels computed (channel policy)")):
        im = ax.imshow(values, aspect="auto", vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(cols), result.class_names, rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("class")
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(range(rows), result.layer_names, fontsize=6)
    axes[0].set_ylabel("dynamic layer")
    fig.colorbar(im, ax=list(axes))
    out = Path(path)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out


def plot_cost_histogram(result: EvalResult, path: str | os.PathLike[str], bins: int = 30) -> Path:
    """Histogram of the GFLOPs of every evaluated view, with the average marked."""
    fig = _figure((5, 3.2))
    ax = fig.subplots()
    ax.hist(result.view_gflops, bins=bins, color="#4477aa")
    ax.axvline(result.gflops_avg, color="#cc3311", linestyle="--", label=f"avg {result.gflops_avg:.4g}")
    ax.set_xlabel("GFLOPs per clip")
    ax.set_ylabel("clips")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out
