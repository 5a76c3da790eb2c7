"""Training and evaluation speed of `vared_core.engine.fit` on 1 vs 2 data-parallel CPU processes (gloo).

Each setting trains the same run (same global batch, same epochs) as ``ranks`` forked processes in one
torch process group, the way Ray Train's workers run it, without Ray's own start-up: ``1x1`` one process
with one thread, ``1x2`` one process with two threads, ``2x1`` two processes with one thread each. Training
clips/s is the clips of all epochs over the summed ``epoch_time_s`` (the slowest rank's; evaluation not
included). Evaluation: the time of one sharded `evaluate` over the validation set, and the cost of its
gather alone (`gather_objects` of the per-video records a rank holds, timed over ``--gather-repeats``).

On a 2-core machine two processes share the two cores one process can already use, so this measures the
overhead of data parallelism (gradient and BatchNorm all-reduces, per-step collectives), not a speed-up:
GPU scaling needs GPUs (`docs/distributed.md`).

Usage::

    python benchmarks/data_parallel.py                      # about two minutes on 2 cores
    python benchmarks/data_parallel.py --model x3d_m_tiny --epochs 1 --settings 1x1 2x1
    python benchmarks/data_parallel.py --settings 2x1 --no-sync-batchnorm    # what SyncBN costs
    python benchmarks/data_parallel.py --settings 2x1 --stop-check    # what asking for a stop every step costs

The last output line is one JSON object::

    {"benchmark": "data_parallel", "model": ..., "global_batch": 8, "train_clips_per_s": {"1x1": ..., "1x2": ...,
     "2x1": ...}, "eval_s": {...}, "gather_ms": {"2x1": ...}, ...}
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from vared_core.engine import DataConfig, OptimConfig, SyntheticData, TrainConfig, evaluate, fit
from vared_core.engine.data import build_datasets
from vared_core.engine.distributed import gather_objects, world
from vared_core.models import get_model_cfg


def _config(args: argparse.Namespace, folder: Path, ranks: int, threads: int) -> TrainConfig:
    data = DataConfig(
        synthetic=SyntheticData(root=folder / "synth", classes=2, videos_per_class=args.videos_per_class, frames=8,
                                size=32, appearance=0.8),
        flip=False, batch_size=args.global_batch // ranks, num_workers=0, num_frames=4, frame_stride=2, crop_size=32,
    )  # fmt: skip
    return TrainConfig(model=args.model, epochs=args.epochs, output_dir=folder / f"run_{ranks}x{threads}", data=data,
                       device="cpu", threads=threads, eval_every=10_000, sync_batchnorm=args.sync_batchnorm,
                       optim=OptimConfig(lr=0.02, warmup_epochs=0.5, total_batch=args.global_batch))  # fmt: skip


def _rank(rank: int, ranks: int, threads: int, args: argparse.Namespace, folder: Path, out: Path) -> None:
    torch.set_num_threads(threads)
    if ranks > 1:
        dist.init_process_group("gloo", init_method=f"file://{folder / f'rdv_{ranks}x{threads}'}", rank=rank,
                                world_size=ranks)  # fmt: skip
    try:
        config = _config(args, folder, ranks, threads)
        result = fit(config, should_stop=(lambda: False) if args.stop_check else None)
        train_set, val_set = build_datasets(config.data, get_model_cfg(config.model), seed=config.seed)
        t0 = time.perf_counter()
        evaluation = evaluate(result.model, val_set, batch_size=config.data.batch_size)
        eval_s = time.perf_counter() - t0
        w = world()
        mine = evaluation.videos[w.rank::w.size]  # about the records a rank gathers
        times = []
        for _ in range(args.gather_repeats):
            t0 = time.perf_counter()
            gather_objects(mine, w)
            times.append(time.perf_counter() - t0)
        if rank == 0:
            train_clips = len(result.history) * (len(train_set) // args.global_batch) * args.global_batch
            out.write_text(json.dumps({
                "train_clips_per_s": train_clips / sum(h["epoch_time_s"] for h in result.history),
                "eval_s": eval_s, "gather_ms": 1000 * statistics.median(times), "val_videos": evaluation.num_videos,
                "final_loss": result.history[-1]["loss"],
            }))  # fmt: skip
    finally:
        if ranks > 1:
            dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="r2plus1d_18_tiny")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--videos-per-class", type=int, default=24)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--settings", nargs="+", default=["1x1", "1x2", "2x1"], help="RANKSxTHREADS")
    parser.add_argument("--gather-repeats", type=int, default=20)
    parser.add_argument("--no-sync-batchnorm", dest="sync_batchnorm", action="store_false",
                        help="per-rank BatchNorm statistics (what SyncBN costs: the difference)")
    parser.add_argument("--stop-check", action="store_true",
                        help="fit asks should_stop at every step, as in a data-parallel Tune trial (its answer rides "
                             "on the finite-loss all-reduce; what ASHA support costs: the difference)")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ctx = mp.get_context("fork")  # forked children: no thread pool may be running in this process
        torch.set_num_threads(1)
        build_datasets(_config(args, folder, 1, 1).data, get_model_cfg(args.model), seed=0)  # write the clips once
        for setting in args.settings:
            ranks, threads = (int(v) for v in setting.split("x"))
            out = folder / f"{setting}.json"
            procs = [ctx.Process(target=_rank, args=(r, ranks, threads, args, folder, out)) for r in range(ranks)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            if any(p.exitcode for p in procs):
                raise SystemExit(f"data_parallel: setting {setting} failed")
            results[setting] = json.loads(out.read_text())
            print(setting, results[setting], flush=True)
    print(json.dumps({
        "benchmark": "data_parallel", "model": args.model, "epochs": args.epochs, "global_batch": args.global_batch,
        "sync_batchnorm": args.sync_batchnorm, "stop_check": args.stop_check,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
        "train_clips_per_s": {k: round(v["train_clips_per_s"], 2) for k, v in results.items()},
        "eval_s": {k: round(v["eval_s"], 3) for k, v in results.items()},
        "gather_ms": {k: round(v["gather_ms"], 3) for k, v in results.items()},
        "val_videos": {k: v["val_videos"] for k, v in results.items()},
        "final_loss": {k: round(v["final_loss"], 5) for k, v in results.items()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
