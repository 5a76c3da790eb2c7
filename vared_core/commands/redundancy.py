"""`vared redundancy`: feature-map redundancy of a model on a validation list (seed appendix B.1, Table B.1).

Usage::

    vared redundancy --model r2plus1d_18 --num-classes 200 --checkpoint runs/base/last.pt \\
        --list data/mini_kinetics/val.csv --max-clips 1000 --json redundancy.json

Prints per-layer CC / RMSE / RP along time and channels, the layer averages, and the most and least
temporally redundant clips; ``--json`` writes `RedundancyReport.to_dict` plus the run's settings and the
clips' video paths. Definitions: `vared_core.analysis.redundancy`.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

PROG = "vared redundancy"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "redundancy",
        help="CC / RMSE / redundancy proportion of a model's feature maps along time and channels",
        description="Measure how redundant a model's conv feature maps are along time and channels on a "
        "validation list (seed appendix B.1, Table B.1).",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", required=True, help="registered backbone name (e.g. r2plus1d_18_tiny)")
    model.add_argument("--num-classes", type=int, required=True, help="classifier outputs of the model")
    model.add_argument("--checkpoint", type=Path, help="weights: a state dict, or a dict with key 'model'")
    data = parser.add_argument_group("data")
    data.add_argument("--list", type=Path, required=True, help="validation list file (path,label[,...])")
    data.add_argument("--root", type=Path, help="base of relative paths in the list (default: its folder)")
    data.add_argument("--frames", type=int, help="frames per clip (default: the model's num_frames)")
    data.add_argument("--size", type=int, help="center-crop side, pixels (default: the model's test crop)")
    data.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    data.add_argument("--max-clips", type=int, help="analyse at most this many clips (default: all)")
    analysis = parser.add_argument_group("analysis")
    analysis.add_argument("--layers", nargs="+", metavar="PATTERN",
                          help="convs matching these fnmatch patterns, or exact module names of any type "
                          "(default: every conv)")  # fmt: skip
    analysis.add_argument("--pairs", choices=("adjacent", "all"), default="adjacent",
                          help="compare adjacent frames / channels (default) or every pair")  # fmt: skip
    analysis.add_argument("--cc-threshold", type=float, default=0.85, help="RP: CC above this (default 0.85)")
    analysis.add_argument("--rmse-threshold", type=float, default=1e-3,
                          help="RP: and RMSE above this (default 0.001, as the seed)")  # fmt: skip
    analysis.add_argument("--no-rmse-rule", action="store_true", help="RP counts CC alone (drop the RMSE rule)")
    analysis.add_argument("--device", default="cpu", help="torch device (default cpu)")
    analysis.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON here")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _load_weights(model: Any, path: Path) -> str | None:
    """Load ``path`` into ``model``; a note when a dynamic checkpoint's extra entries were ignored."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict or {{'model': ...}}")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"checkpoint {path} does not fit the model ({err}); check --model and --num-classes") from None
    if missing:
        raise ValueError(
            f"checkpoint {path} does not fit the model: {len(missing)} missing entries "
            f"(e.g. {', '.join(missing[:3])}); check --model and --num-classes"
        )
    if unexpected:  # a dynamic model's gates and cheap ops: the static base weights are all there
        return f"ignored {len(unexpected)} checkpoint entries not in the static model (e.g. {unexpected[0]})"
    return None


def _print_report(report: Any, paths: dict[int, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    header, rows = report.table_rows()
    table = Table(
        title=f"Feature-map redundancy, {report.num_clips} clips ({report.pairs} pairs)",
        caption=f"RP = share of pairs with {report.rp_rule()} (seed Table B.1)",
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right", no_wrap=i < 2)
    for i, row in enumerate(rows[:-1]):
        table.add_row(*row, end_section=i == len(rows) - 2)
    table.add_row(*rows[-1], style="bold")
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)

    def show(clips: list[tuple[int, float]]) -> str:
        return ", ".join(f"{paths.get(i, i)} ({v:.3f})" for i, v in clips)

    for dim in ("time", "channel"):
        ext = report.extremes(dim, "cc", k=3)
        if ext["most"]:
            console.print(f"{dim}: most redundant clips (mean CC) {show(ext['most'])}", highlight=False)
            console.print(f"{dim}: least redundant clips (mean CC) {show(ext['least'])}", highlight=False)
    for name, reason in report.skipped.items():
        console.print(f"skipped {name}: {reason}", highlight=False)


def run(args: argparse.Namespace) -> int:
    if not args.list.is_file():
        return _fail(f"list file not found: {args.list}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        return _fail(f"checkpoint not found: {args.checkpoint}")
    for flag in ("num_classes", "frames", "size", "batch_size", "max_clips"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return _fail(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")

    from vared_core.analysis import analyze_redundancy
    from vared_core.data import make_dataset, make_loader
    from vared_core.models import build_model, get_model_cfg

    try:
        cfg = get_model_cfg(args.model)
        model = build_model(args.model, num_classes=args.num_classes, num_frames=args.frames)
        note = _load_weights(model, args.checkpoint) if args.checkpoint is not None else None
        frames, size = args.frames or cfg.num_frames, args.size or cfg.test_crop_size
        dataset = make_dataset(
            args.list, train=False, num_frames=frames, stride=cfg.frame_stride or 1, size=size,
            sampling=cfg.sampling, clips=1, crops=1, root=args.root,
        )  # fmt: skip
        if len(dataset) == 0:
            return _fail(f"no usable videos in {args.list}")
        loader = make_loader(dataset, batch_size=args.batch_size, train=False, num_workers=0)
        if note:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        report = analyze_redundancy(
            model, loader, layers=args.layers, pairs=args.pairs, cc_threshold=args.cc_threshold,
            rmse_threshold=None if args.no_rmse_rule else args.rmse_threshold,
            max_clips=args.max_clips, device=args.device,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, RuntimeError, pickle.UnpicklingError) as err:  # incl. ListFileError
        return _fail(str(err))

    paths = {i: str(dataset.records[i].path) for i in set(report.clip_ids.tolist()) if 0 <= i < len(dataset)}
    _print_report(report, paths)
    if args.json is not None:
        out = report.to_dict()
        out["clips"]["paths"] = [paths.get(i) for i in report.clip_ids.tolist()]
        out["config"] = {
            "model": args.model, "num_classes": args.num_classes,
            "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
            "list": str(args.list), "root": None if args.root is None else str(args.root),
            "frames": frames, "size": size, "sampling": cfg.sampling,
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0
