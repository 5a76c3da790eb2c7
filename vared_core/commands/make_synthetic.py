"""`vared make-synthetic`: write the synthetic motion-pattern dataset (H.264 mp4s + train/val lists).

    vared make-synthetic data/synth --classes 4 --videos-per-class 8 --frames 16 --size 64 --seed 0
    vared make-synthetic data/bench --classes 4 --videos-per-class 4 --frames 96 --width 320 --height 240

Wraps `vared_core.data.make_synthetic`; the same arguments give byte-identical files.
"""
from __future__ import annotations

import argparse
import shlex
import sys

_PROG = "vared make-synthetic"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "make-synthetic", help="write a synthetic motion-pattern video dataset with train/val lists",
        description="Write a synthetic motion-pattern dataset under ROOT: videos/<class>/*.mp4 (H.264), "
        "classes.txt, train.csv and val.csv (path,label,motion,clutter). Existing files are overwritten.",
    )
    parser.add_argument("root", metavar="ROOT", help="output folder (created)")
    parser.add_argument("--classes", type=int, required=True, help="number of classes, one motion pattern each")
    parser.add_argument("--videos-per-class", type=int, required=True, help="videos per class, both splits")
    parser.add_argument("--frames", type=int, required=True, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="square frame side in pixels, even (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.25, help="share of each class in val (default 0.25)")
    parser.add_argument("--width", type=int, default=None, help="frame width, even (overrides --size)")
    parser.add_argument("--height", type=int, default=None, help="frame height, even (overrides --size)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate stored in the files (default 25)")
    parser.add_argument("--motion-levels", type=int, default=4, help="motion levels per class (default 4)")
    parser.add_argument("--clutter-levels", type=int, default=3, help="clutter levels per class (default 3)")
    parser.add_argument("--appearance", type=float, default=0.0,
                        help="reliability in [0, 1] of a per-class scene colour cast (default 0: motion only)")
    parser.add_argument("--appearance-fast", type=float, default=None,
                        help="the cast's reliability for the fastest clips, linear in between (default: --appearance)")
    parser.add_argument("--cast-fast", type=float, default=1.0,
                        help="the cast's strength for the fastest clips relative to static ones (default 1: no fade)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vared_core.data import make_synthetic

    count = args.classes * args.videos_per_class
    # make_synthetic has no per-video progress hook: a spinner on stderr (silent when not a terminal)
    with Console(stderr=True).status(f"writing {count} videos under {args.root} ..."):
        try:
            info = make_synthetic(
                args.root, classes=args.classes, videos_per_class=args.videos_per_class, frames=args.frames,
                size=args.size, seed=args.seed, val_fraction=args.val_fraction, width=args.width,
                height=args.height, fps=args.fps, motion_levels=args.motion_levels,
                clutter_levels=args.clutter_levels, appearance=args.appearance,
                appearance_fast=args.appearance_fast, cast_fast=args.cast_fast,
            )
        except ValueError as err:  # the message names every rule broken and the values given
            print(f"{_PROG}: error: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            print(f"{_PROG}: error: cannot write under {args.root}: {err}", file=sys.stderr)
            return 1

    print(f"wrote {info.num_train + info.num_val} videos under {info.root}")
    print(f"  classes     {len(info.classes)}: {', '.join(info.classes)}  ({info.classes_file})")
    print(f"  videos      {info.width}x{info.height}, {info.frames} frames at {info.fps} fps, seed {info.seed}")
    print(f"  train       {info.num_train:4d} videos  {info.train_list}")
    print(f"  val         {info.num_val:4d} videos  {info.val_list}")
    if info.appearance or info.appearance_fast:
        fades = ""
        if info.appearance_fast != info.appearance:
            fades = f" for static clips, {info.appearance_fast:.2f} for the fastest"
        if info.cast_fast != 1.0:
            fades += f"; its strength falls to {info.cast_fast:.2f}x for the fastest"
        print(f"  cue         a class colour cast, reliability {info.appearance:.2f}{fades}")
    if info.num_val == 0:
        print("  (no val split: pass --val-fraction > 0 and --videos-per-class >= 2 to get one)")
    example = [
        "vared", "train", "--model", "r2plus1d_18_tiny", "--train-list", str(info.train_list),
        "--val-list", str(info.val_list), "--epochs", "4", "--output-dir", "runs/base",
        "--set", f"data.batch_size={min(8, info.num_train)}",  # training refuses a split with no full batch
    ]
    print(f"train on it:  {shlex.join(example)}")
    return 0
