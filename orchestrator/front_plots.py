"""Pictures of Pareto fronts: one or several studies' fronts as a PNG (matplotlib) and an HTML page (plotly).

Each study's trials are drawn as points in its colour, its front as a step line through the front
points, with every trial's values and parameters in the HTML page's hover text. matplotlib and plotly
are imported inside the functions, so importing this module costs nothing until a plot is drawn.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from vared_core.engine.dotted import flatten_dotted

from .pareto import Front, FrontPoint, Sense, format_value

__all__ = ["plot_front_html", "plot_front_png"]


def plot_front_png(fronts: Mapping[str, Front], path: str | Path) -> Path:
    """A static scatter of one or more studies' fronts (several = the ``orchestrator compare`` overlay).

    The first objective is on the y axis and the second on the x axis (accuracy over GFLOPs for
    ``{"video_top1": "max", "gflops_avg": "min"}``). Every trial is a faint point; each study's front is
    a step line with markers tracing the boundary of the region it dominates, labelled with the study
    name (and hypervolume when known). With more than two objectives the first two are plotted, the
    front (computed on all objectives) is drawn as markers only, and the title says so.

    Args:
        fronts: study name -> `Front`; all with the same first two objectives and senses.
        path: where to write the PNG; parent folders are created.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: no fronts, a front with fewer than two objectives, or fronts with different axes.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state (Agg on save)

    (y_name, x_name), (y_sense, x_sense), n_obj = _axes(fronts)
    fig = Figure(figsize=(7.0, 5.0), dpi=120)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(fronts))]
    for color, (study, front) in zip(colors, fronts.items()):
        xs, ys = _xy([p for p in front.points if not p.on_front], x_name, y_name)
        ax.scatter(xs, ys, s=14, color=color, alpha=0.25, linewidths=0)
        fx, fy = _xy(_front_by_x(front, x_name), x_name, y_name)
        label = _label(study, front)
        if n_obj == 2:
            # the dominated region lies towards larger x for a "min" x axis, smaller x for "max"
            ax.step(fx, fy, where="post" if x_sense == "min" else "pre", color=color, marker="o", label=label)
        else:
            ax.plot(fx, fy, linestyle="none", color=color, marker="o", label=label)
    ax.set_xlabel(f"{x_name} ({x_sense})")
    ax.set_ylabel(f"{y_name} ({y_sense})")
    title = _title(fronts, n_obj)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_front_html(fronts: Mapping[str, Front], path: str | Path) -> Path:
    """A self-contained interactive plotly scatter of one or more studies' fronts.

    Same axes as `plot_front_png`. Per study, one legend group with two traces: all trials off the
    front (faint) and the front (step line with markers, markers only beyond two objectives). Hovering
    a point shows its trial id, objective values and parameters. plotly.js is inlined (~4.8 MB with
    plotly 7), so the file opens offline, e.g. in the MLflow artifact viewer.

    Args:
        fronts: study name -> `Front`; all with the same first two objectives and senses.
        path: where to write the HTML; parent folders are created.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: as `plot_front_png`.
    """
    import plotly.graph_objects as go

    (y_name, x_name), (y_sense, x_sense), n_obj = _axes(fronts)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    fig = go.Figure()
    for i, (study, front) in enumerate(fronts.items()):
        color = palette[i % len(palette)]
        off = [p for p in front.points if not p.on_front and _has_xy(p, x_name, y_name)]
        on = _front_by_x(front, x_name)
        label = _label(study, front)
        xs, ys = _xy(off, x_name, y_name)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers", name=f"{study}: other trials", legendgroup=study,
            marker={"color": color, "opacity": 0.3, "size": 7},
            hovertext=[_hover(p, front, study) for p in off], hoverinfo="text",
        ))
        fx, fy = _xy(on, x_name, y_name)
        fig.add_trace(go.Scatter(
            x=fx, y=fy, mode="lines+markers" if n_obj == 2 else "markers", name=label, legendgroup=study,
            line={"color": color, "shape": "hv" if x_sense == "min" else "vh"},
            marker={"color": color, "size": 9, "line": {"width": 1, "color": "black"}},
            hovertext=[_hover(p, front, study) for p in on], hoverinfo="text",
        ))
    title = _title(fronts, n_obj)
    fig.update_layout(
        title=title, xaxis_title=f"{x_name} ({x_sense})", yaxis_title=f"{y_name} ({y_sense})",
        template="plotly_white", hovermode="closest",
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True)  # True = inline: works offline
    return out


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _axes(fronts: Mapping[str, Front]) -> tuple[tuple[str, str], tuple[Sense, Sense], int]:
    """The plotted (y, x) objective names and senses, checked to agree across ``fronts``."""
    if not fronts:
        raise ValueError("no fronts to plot: give at least one study name -> Front")
    items = list(fronts.items())
    first_name, first = items[0]
    if len(first.objectives) < 2:
        raise ValueError(f"study {first_name!r} has {len(first.objectives)} objective(s); plotting needs at least 2")
    axes = (first.objectives[:2], first.senses[:2])
    for name, f in items[1:]:
        if (f.objectives[:2], f.senses[:2]) != axes:
            raise ValueError(
                f"study {name!r} plots {list(zip(f.objectives[:2], f.senses[:2]))} but study {first_name!r} "
                f"plots {list(zip(*axes))}; overlaid fronts need the same first two objectives and senses"
            )
    return axes[0], axes[1], max(len(f.objectives) for f in fronts.values())  # type: ignore[return-value]


def _label(study: str, front: Front) -> str:
    return study if front.hypervolume is None else f"{study} (HV {front.hypervolume:.4g})"


def _title(fronts: Mapping[str, Front], n_obj: int) -> str:
    title = "Pareto front" if len(fronts) == 1 else "Pareto fronts"
    if n_obj > 2:
        title += f" (first 2 of {n_obj} objectives plotted; front computed on all {n_obj})"
    return title


def _has_xy(p: FrontPoint, x: str, y: str) -> bool:
    return all(math.isfinite(p.values.get(k, math.nan)) for k in (x, y))


def _xy(points: Sequence[FrontPoint], x: str, y: str) -> tuple[list[float], list[float]]:
    """x and y lists of the points with finite values in both plotted objectives."""
    kept = [p for p in points if _has_xy(p, x, y)]
    return [p.values[x] for p in kept], [p.values[y] for p in kept]


def _front_by_x(front: Front, x: str) -> list[FrontPoint]:
    return sorted(front.front, key=lambda p: p.values[x])


def _hover(p: FrontPoint, front: Front, study: str) -> str:
    lines = [f"<b>{html.escape(p.trial_id)}</b> ({html.escape(study)}{', on front' if p.on_front else ''})"]
    lines += [f"{html.escape(o)}: {format_value(p.values.get(o))}" for o in front.objectives]
    lines += [f"{html.escape(k)} = {html.escape(format_value(v))}" for k, v in sorted(flatten_dotted(p.params).items())]
    return "<br>".join(lines)
