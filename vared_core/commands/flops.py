"""`vared flops`: GFLOPs and parameters of one clip through a backbone, static or under each pinned policy.

GFLOPs are the seed's unit: conv + linear multiply-accumulates (in 10⁹) for one clip (3, T, S, S).

    vared flops --model r2plus1d_18                        # the variant's clip: 16×128²
    vared flops --model x3d_m_tiny --dynamic --search-space 3 --dims channel
    vared flops --model r2plus1d_18_tiny --dynamic --json  # one JSON object
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import nn

_T = TypeVar("_T")

_PROG = "vared flops"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "flops", help="GFLOPs and parameters of a backbone, static or under each dynamic policy",
        description="GFLOPs (conv + linear multiply-accumulates / 1e9) and parameters of one clip (3, T, S, S) "
        "through a backbone; with --dynamic, under every pinned policy of the dynamized model too.",
    )
    parser.add_argument("--model", required=True, help="registered backbone, e.g. r2plus1d_18 (a wrong name lists all)")
    parser.add_argument("--frames", type=int, default=None, help="clip length T (default: the variant's num_frames)")
    parser.add_argument("--size", type=int, default=None, help="clip side S in pixels (default: its test_crop_size)")
    parser.add_argument("--num-classes", type=int, default=400, help="classifier outputs (default 400)")
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    parser.add_argument("--dynamic", action="store_true", help="also cost the dynamized model under each policy")
    parser.add_argument("--search-space", type=int, default=2, help="alternatives per dynamic dimension (default 2)")
    parser.add_argument(
        "--dims", choices=("temporal", "channel", "both"), default="both",
        help="dynamic dimensions (default both)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        report = _measure(args)
    except ValueError as err:  # unknown model, non-positive sizes, bad spec: the library's message says which
        print(f"{_PROG}: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        _print_tables(report)
    return 0


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build the model(s) and count; raises ``ValueError`` for anything the user got wrong."""
    from vared_core import DynamicSpec, build_model, clip_gflops, force_policy, get_model_cfg, static_gflops
    from vared_core.dynamic.cost import forward_zero_clip

    cfg = get_model_cfg(args.model)  # ValueError listing the known models
    spec = None
    if args.dynamic:  # checked before any build
        spec = DynamicSpec(
            search_space=args.search_space, temporal=args.dims in ("temporal", "both"),
            channel=args.dims in ("channel", "both"),
        )
    frames = cfg.num_frames if args.frames is None else args.frames
    size = cfg.test_crop_size if args.size is None else args.size
    common = dict(num_frames=frames, crop_size=size, width=args.width)  # build_model checks they are positive
    clip_shape = (3, frames, size, size)
    static = build_model(args.model, args.num_classes, **common)
    gflops = _counted(lambda: static_gflops(static, clip_shape), args.model, clip_shape)
    report: dict[str, Any] = {
        "model": args.model,
        "clip_shape": list(clip_shape),
        "num_classes": args.num_classes,
        "width": args.width,
        "static_gflops": gflops,
        "params": _count_params(static),
    }
    if spec is None:
        return report

    model = _counted(lambda: build_model(args.model, args.num_classes, dynamic=spec, **common), args.model, clip_shape)
    policies = []
    for t in range(spec.num_temporal):
        for c in range(spec.num_channel):
            with force_policy(model, temporal=t, channel=c):
                forward_zero_clip(model, clip_shape)  # eval mode: hard, the reduced convs really run
                cost = float(clip_gflops(model)[0])
            policies.append({"temporal": t, "channel": c, "gflops": cost, "fraction": cost / gflops})
    report["dynamic_spec"] = spec.to_dict()
    report["policies"] = policies
    report["dynamic_params"] = _count_params(model)
    return report


def _counted(fn: Callable[[], _T], model: str, clip_shape: tuple[int, ...]) -> _T:
    """``fn()``, turning the RuntimeError of a clip too small for the network into a ValueError."""
    try:
        return fn()
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{model} cannot run a clip of shape {clip_shape} (C, T, H, W): {first}; try a larger --frames or --size"
        ) from None


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _temporal_label(i: int) -> str:
    return "every frame" if i == 0 else f"every {2**i}th frame" if i > 1 else "every 2nd frame"


def _channel_label(i: int) -> str:
    return "all channels" if i == 0 else f"1/{2**i} channels"


def _print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    static = report["static_gflops"]
    summary = Table(title=report["model"], show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    summary.add_row("clip (C, T, H, W)", str(tuple(report["clip_shape"])))
    summary.add_row("static GFLOPs (MACs / 1e9)", f"{static:.4g}")
    summary.add_row("parameters", f"{report['params']:,}")
    if "policies" in report:
        extra = report["dynamic_params"] - report["params"]
        summary.add_row("dynamic parameters", f"{report['dynamic_params']:,}")
        summary.add_row("gates + cheap ops", f"+{extra:,} ({extra / report['params']:+.2%})")
    console.print(summary)
    if "policies" not in report:
        return
    spec = report["dynamic_spec"]
    policies = Table(
        title=f"pinned policies, search space {spec['search_space']}",
        caption="gates included: policy 0, 0 exceeds 100% by their cost",
    )
    policies.add_column("temporal")
    policies.add_column("channel")
    policies.add_column("GFLOPs", justify="right")
    policies.add_column("of static", justify="right")
    for p in report["policies"]:
        policies.add_row(
            f"{p['temporal']}: {_temporal_label(p['temporal'])}", f"{p['channel']}: {_channel_label(p['channel'])}",
            f"{p['gflops']:.4g}", f"{p['fraction']:.1%}",
        )
    console.print(policies)
