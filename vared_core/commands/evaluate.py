"""`vared eval`: evaluate a checkpoint on a test list (or its run's validation set): accuracies, GFLOPs,
speed, and the seed's per-layer / per-class heatmap and cost histogram as PNGs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: clip/video accuracy, GFLOPs, speed, plots")
    p.add_argument("checkpoint", help="a checkpoint folder (…/checkpoints/epoch_NNNN) or checkpoint.pt")
    p.add_argument("--list", help="test list (default: the run's validation list)")
    p.add_argument("--root", help="folder the list's paths are relative to")
    p.add_argument("--clips", type=int, help="K clips per video (default: the run's test_clips)")
    p.add_argument("--crops", type=int, choices=[1, 3], help="1 centre or 3 left/centre/right crops")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for eval.json, heatmap.png, policy_by_dimension.png and cost_histogram.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from vared_core.data import make_dataset
    from vared_core.engine import CheckpointError, evaluate, load_model
    from vared_core.engine.data import build_datasets, clip_geometry
    from vared_core.models import get_model_cfg

    try:
        model, config = load_model(args.checkpoint, device=args.device)
    except (CheckpointError, ValueError) as e:
        print(f"vared eval: {e}", file=sys.stderr)
        return 2
    data = config.data.model_copy(update={k: v for k, v in (("test_clips", args.clips), ("test_crops", args.crops))
                                          if v is not None})  # fmt: skip
    mcfg = get_model_cfg(config.model)
    try:
        if args.list:
            geo = clip_geometry(data, mcfg)
            dataset = make_dataset(args.list, train=False, num_frames=geo.num_frames, stride=geo.frame_stride,
                                   size=geo.test_crop_size, sampling=geo.sampling, clips=geo.test_clips,
                                   crops=geo.test_crops, root=args.root, mean=geo.mean, std=geo.std)  # fmt: skip
        else:
            _, dataset = build_datasets(data, mcfg, seed=config.seed)
    except (OSError, ValueError) as e:
        print(f"vared eval: {e}", file=sys.stderr)
        return 2
    result = evaluate(model, dataset, batch_size=args.batch_size, device=args.device)
    console = Console(highlight=False)
    table = Table(title=f"{config.model} · {result.num_videos} videos × {result.num_views} views")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics().items():
        table.add_row(k, f"{v:.4g}")
    console.print(table)
    if args.out:
        from vared_core.analysis.plots import plot_cost_histogram, plot_feature_ratio, plot_policy_by_dimension

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(result.to_dict(), indent=2))
        plot_cost_histogram(result, out / "cost_histogram.png")
        if result.layer_names:
            plot_feature_ratio(result, out / "heatmap.png")
            plot_policy_by_dimension(result, out / "policy_by_dimension.png")
        console.print(f"wrote {out}/eval.json and plots")
    return 0
