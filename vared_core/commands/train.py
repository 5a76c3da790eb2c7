"""`vared train`: one training run from a YAML `TrainConfig` and/or flags, with a progress line per
epoch and a summary table at the end."""
from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a base model or a dynamic fine-tune (TrainConfig from YAML and flags)",
        description="Train from a YAML TrainConfig; --set KEY=VALUE overrides any field (dotted keys, YAML values).",
    )  # fmt: skip
    p.add_argument("config", nargs="?", help="YAML TrainConfig (fields of vared_core.engine.TrainConfig)")
    p.add_argument("--model", help="backbone name (vared_core.list_models())")
    p.add_argument("--stage", choices=["base", "dynamic"])
    p.add_argument("--base-checkpoint", help="base checkpoint for stage dynamic")
    p.add_argument("--synthetic", metavar="ROOT", help="train on a synthetic set written to ROOT on first use")
    p.add_argument("--train-list")
    p.add_argument("--val-list")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lambda-e", type=float)
    p.add_argument("--output-dir")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field, e.g. optim.lr=0.1")
    p.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Flag values → dotted-key overrides of a TrainConfig."""
    out: dict[str, Any] = {}
    for flag, key in (("model", "model"), ("stage", "stage"), ("base_checkpoint", "base_checkpoint"),
                      ("epochs", "epochs"), ("lr", "optim.lr"), ("lambda_e", "lambda_e"),
                      ("output_dir", "output_dir"), ("train_list", "data.train_list"),
                      ("val_list", "data.val_list"), ("synthetic", "data.synthetic.root")):  # fmt: skip
        value = getattr(args, flag, None)
        if value is not None:
            out[key] = value
    if getattr(args, "resume", False):
        out["resume_from"] = "last"
    for item in getattr(args, "set", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from vared_core.engine import CheckpointError, ConfigError, TrainingDiverged, fit, load_config

    console = Console(highlight=False)
    try:
        config = load_config(args.config or {}, overrides_from(args))
    except (ConfigError, ValueError) as e:
        print(f"vared train: {e}", file=sys.stderr)
        return 2

    def on_epoch(epoch: int, m: dict[str, float], ckpt: Any) -> None:
        shown = [f"loss {m['loss']:.4f}", f"train_top1 {m['train_top1']:.1f}"]
        if "video_top1" in m:
            shown += [f"video_top1 {m['video_top1']:.1f}", f"gflops_avg {m['gflops_avg']:.4g}"]
        console.print(f"epoch {epoch}/{config.epochs} · " + " · ".join(shown) + f" · {m['epoch_time_s']:.1f}s")

    try:
        result = fit(config, on_epoch=on_epoch)
    except (CheckpointError, TrainingDiverged, ValueError) as e:
        print(f"vared train: {e}", file=sys.stderr)
        return 1
    table = Table(title=f"{config.model} · stage {config.stage} · {config.epochs} epochs")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("clip_top1", "video_top1", "video_top5", "gflops_avg", "gflops_max", "gflops_min", "clips_per_s"):
        if k in result.metrics:
            table.add_row(k, f"{result.metrics[k]:.4g}")
    console.print(table)
    console.print(f"checkpoint: {result.checkpoint}")
    return 0
