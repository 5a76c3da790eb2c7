"""Clip decode + augmentation throughput of `vared_core.data`, beside the training step rate of a model.

Writes synthetic 320×240 H.264 mp4s with `make_synthetic`, then times DataLoader iteration over
training clips (random dense clip, TSN multi-scale crop to 112², flip, normalise) with 0, 1 and 2
workers, for 8×112² (stride 8) and 16×112² (stride 4) clips. The first batch of each run (worker
start-up, decord's one-time initialisation) is not timed.

Then it times training steps (forward + cross-entropy + backward + SGD step) of each ``--model``
(default: r2plus1d_18_tiny and the full r2plus1d_18) on random batches of the same shape, so decode clips/s and model clips/s
can be compared: the smaller one is the bottleneck. Both are measured alone; in a real run the
loader workers and the model share the cores.

Usage::

    python benchmarks/decode_speed.py                # about a minute on 2 cores
    python benchmarks/decode_speed.py --clips 64 --workers 0 2
    python benchmarks/decode_speed.py --videos 4 --clips 16 --workers 0 --model-repeats 3   # quick check

The last output line is one JSON object::

    {"benchmark": "decode_speed", ..., "clips_per_s": {"8x112": {"0": …, "1": …, "2": …}, "16x112": {…}},
     "model_step_rate": [{"model": "…", "device": "cpu", "threads": …, "batch_size": 8,
                          "steps_per_s": {"8x112": …, "16x112": …}, "clips_per_s": {"8x112": …, "16x112": …}}, …]}

``model_step_rate`` (one entry per model) is empty with ``--model-repeats 0``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import decord
import torch
from torch.utils.data import ConcatDataset

from vared_core import build_model
from vared_core.data import make_dataset, make_loader, make_synthetic

CONFIGS = {"8x112": (8, 8), "16x112": (16, 4)}  # name: (frames per clip, frame stride)


def model_step_rate(
    model_name: str, *, frames: int, size: int, batch_size: int, num_classes: int = 4, repeats: int = 5,
    warmup: int = 2, threads: int | None = None,
) -> float:
    """Training steps per second of ``model_name`` on this machine's device (CUDA when available).

    One step = forward of a random (batch_size, 3, frames, size, size) batch → cross-entropy → backward →
    SGD step (momentum 0.9). The model is built for that clip (``num_frames=frames``, ``crop_size=size``).
    ``warmup`` steps (allocator, cuDNN / oneDNN kernel choice) are not timed; the rate is 1 / the median
    of ``repeats`` timed steps. On CPU, torch runs on ``threads`` intra-op threads (default: every core
    this process may use) for the duration, then the previous setting is restored.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads or _cores())
    try:
        torch.manual_seed(0)
        model = build_model(model_name, num_classes, num_frames=frames, crop_size=size).to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        clips = torch.randn(batch_size, 3, frames, size, size, device=device)
        labels = torch.randint(num_classes, (batch_size,), device=device)
        times = []
        for step in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(clips), labels).backward()
            optimizer.step()
            _sync(device)
            if step >= warmup:
                times.append(time.perf_counter() - start)
        return 1.0 / statistics.median(times)
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def clips_per_second(
    train_list: Path, *, frames: int, stride: int, size: int, workers: int, batch_size: int, clips: int,
    decode_short_side: int | None = None,
) -> float:
    """Clips/s of decode + augmentation through `make_loader`, after one untimed warm-up batch."""
    dataset = make_dataset(
        train_list, train=True, num_frames=frames, stride=stride, size=size, seed=0,
        decode_short_side=decode_short_side,
    )
    repeats = -(-(clips + batch_size) // len(dataset))  # enough items for warm-up + timed clips
    loader = make_loader(
        ConcatDataset([dataset] * repeats), batch_size=batch_size, train=True, num_workers=workers,
        persistent_workers=False if workers else None,
    )
    it = iter(loader)
    next(it)  # warm-up: worker start-up and decord initialisation
    done, start = 0, time.perf_counter()
    while done < clips:
        batch = next(it)
        done += batch["video"].shape[0]
    elapsed = time.perf_counter() - start
    del it
    return done / elapsed


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16, help="synthetic videos to write (default 16)")
    parser.add_argument("--video-frames", type=int, default=96, help="frames per video (default 96, 25 fps)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--size", type=int, default=112, help="clip side after augmentation")
    parser.add_argument("--clips", type=int, default=96, help="timed clips per measurement")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", nargs="+", default=["r2plus1d_18_tiny", "r2plus1d_18"],
                        help="models whose training step rates are reported (default: tiny and full R(2+1)D-18)")
    parser.add_argument("--model-repeats", type=int, default=5,
                        help="timed training steps per clip shape, median reported (default 5; 0 skips the model)")
    parser.add_argument("--model-threads", type=int, default=None,
                        help="torch threads for the model steps on CPU (default: every core)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the videos here (default: temp)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="vared_decode_") as tmp:
        root = args.data_dir or Path(tmp)
        t0 = time.perf_counter()
        classes = 4
        info = make_synthetic(
            root, classes=classes, videos_per_class=-(-args.videos // classes), frames=args.video_frames,
            width=args.width, height=args.height, seed=0, val_fraction=0.0,
        )
        write_s = time.perf_counter() - t0
        print(f"wrote {info.num_train} videos {args.width}x{args.height}x{args.video_frames} in {write_s:.1f}s",
              flush=True)
        results: dict[str, dict[str, float]] = {}
        for name, (frames, stride) in CONFIGS.items():
            results[name] = {}
            for workers in args.workers:
                rate = clips_per_second(
                    info.train_list, frames=frames, stride=stride, size=args.size, workers=workers,
                    batch_size=args.batch_size, clips=args.clips,
                )
                results[name][str(workers)] = round(rate, 1)
                print(f"{name} (stride {stride}) workers={workers}: {rate:.1f} clips/s", flush=True)
        reduced = clips_per_second(
            info.train_list, frames=8, stride=8, size=args.size, workers=0, batch_size=args.batch_size,
            clips=args.clips, decode_short_side=128,
        )
        print(f"8x112 workers=0 decode_short_side=128: {reduced:.1f} clips/s", flush=True)

    step_rates: list[dict[str, object]] = []
    if args.model_repeats > 0:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        threads = args.model_threads or _cores()
        where = f"cpu, {threads} threads" if device == "cpu" else device
        for model in args.model:
            steps: dict[str, float] = {}
            for name, (frames, _) in CONFIGS.items():
                rate = model_step_rate(
                    model, frames=frames, size=args.size, batch_size=args.batch_size,
                    num_classes=len(info.classes), repeats=args.model_repeats, threads=threads,
                )
                steps[name] = rate
                print(f"{name} {model} training step ({where}, batch {args.batch_size}): "
                      f"{rate:.2f} steps/s = {rate * args.batch_size:.1f} clips/s", flush=True)
            step_rates.append({
                "model": model, "device": device, "threads": threads if device == "cpu" else None,
                "batch_size": args.batch_size, "timed_steps": args.model_repeats,
                "step": "forward + cross-entropy + backward + SGD step, random clips",
                "steps_per_s": {k: round(v, 3) for k, v in steps.items()},
                "clips_per_s": {k: round(v * args.batch_size, 1) for k, v in steps.items()},
            })

    report: dict[str, object] = {
        "benchmark": "decode_speed",
        "machine": {
            "cpu_cores": _cores(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "decord": decord.__version__,
        },
        "videos": {"count": info.num_train, "width": args.width, "height": args.height,
                   "frames": args.video_frames, "fps": info.fps, "codec": "h264 (libx264, yuv420p)",
                   "write_s": round(write_s, 2)},
        "batch_size": args.batch_size,
        "timed_clips": args.clips,
        "pipeline": "random dense clip, multi-scale crop -> size^2, flip, normalise; float32 CxTxHxW",
        "clips_per_s": results,
        "clips_per_s_decode_short_side_128": {"8x112": {"0": round(reduced, 1)}},
        "model_step_rate": step_rates,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
