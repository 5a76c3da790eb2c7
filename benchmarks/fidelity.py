"""Fidelity of VA-RED² in kind with the seed's tables: a tiny R(2+1)D base vs its dynamic fine-tunes.

On synthetic motion-pattern clips (`vared_core.data.make_synthetic`), `fit` trains a tiny R(2+1)D-18 base, then
dynamic fine-tunes of that one base (method doc §6): the headline S = 2 along both dimensions with λ_e = 0.8 (seed
Tables 4.1, 4.2), S = 3 (Table 4.1), temporal-only and channel-only (Tables 4.11, 4.12), λ_e = 0 (Table 4.10), and
a control, the base network (S = 1) fine-tuned on the same schedule, so that extra training is not taken for the
dynamic model's merit. Every model is evaluated in hard mode; GFLOPs are per clip, per motion level as well (0 =
static … 3 = fast; seed Figures 4-2, B-6). Targets (issue 5), for the headline: ``gflops_down_25pct`` (average
GFLOPs at least 25% under the base), ``video_top1_within_1pt`` (video-1 at most 1 point under it) and
``static_cheaper_than_fast`` (static clips cost less on average than the fastest).

    python benchmarks/fidelity.py [--jobs 2] [--quick] [--out benchmarks/out/fidelity] [--seed 0 [1 2 ...]]
                                  [--variants N | --only NAME ...] [--set KEY=VALUE ...] [--tag TAG]

``--jobs 2`` runs two fits at a time (one torch thread each); ``--quick`` only checks that the script runs (its
numbers mean nothing). Several seeds run the whole benchmark once per seed, each with its own base (folders
``seedN``): one run does not rank settings whose cuts lie a few points apart. `SETTINGS` holds every choice (data,
base, fine-tune recipe) and ``--set`` changes one. Prints one JSON line per run, a table, and as its last line one
JSON object: the headline's accuracy, GFLOPs and targets, every variant's row (Wilson intervals, McNemar's test
against the base, a permutation test of static vs fastest clips' cost, η² of the cost by class, motion and clutter,
per-layer feature ratios by motion), and with several seeds their means, ``spread`` and ``per_seed``. Plots go to
``--out``, per seed.

The settings, every output key, the latest results and what they mean: docs/benchmarks/fidelity.md. The runs that
found the recipe: docs/lab-notes.md.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from vared_core.analysis.compare import mean_difference, paired_comparison, variance_explained, wilson_interval
from vared_core.dynamic import DynamicSpec
from vared_core.engine import CheckpointError, DataConfig, OptimConfig, SyntheticData, TrainConfig, ensure_synthetic, fit
from vared_core.engine.dotted import set_dotted

#: every choice of the benchmark; ``--quick`` overrides a few (`QUICK`)
SETTINGS: dict[str, Any] = {
    "model": "r2plus1d_18_tiny",
    "classes": 6, "videos_per_class": 160, "frames": 16, "size": 32, "data_seed": 0, "appearance": 1.0,
    "appearance_fast": None, "cast_fast": 0.0, "val_fraction": 0.625,  # data
    "num_frames": 8, "frame_stride": 2, "batch_size": 8,  # clips
    "base_epochs": 30, "base_lr": 0.01, "base_warmup_epochs": 1.0,  # base, from scratch
    "dyn_epochs": 60, "dyn_lr": 0.003, "dyn_warmup_epochs": 0.0, "gate_lr_mult": 30.0, "gate_grad_clip": 1.0,
    "dyn_policy_warmup_epochs": 15.0,
    "gate.bias_full": 1.0, "gate.bias_reduced": 0.5, "cheap_ops.zero_init": True,  # DynamicSpec, dotted
    "stability.normalize_weights": True, "stability.normalize_floor": 1e-6, "stability.detach_gate_input": True,
    "stability.skip_layers": False,
    "lambda_e": 0.8,  # of every variant with an efficiency loss (the λ_e 0 ones keep 0)
}  # fmt: skip
QUICK: dict[str, Any] = {"videos_per_class": 8, "val_fraction": 0.25, "base_epochs": 1, "dyn_epochs": 2,
                         "dyn_policy_warmup_epochs": 1.0}

#: (name, search space S, temporal, channel, λ_e: None = the ``lambda_e`` setting); the first is the headline
VARIANTS: list[tuple[str, int, bool, bool, float | None]] = [
    ("S2 both", 2, True, True, None),
    ("S3 both", 3, True, True, None),
    ("S2 temporal", 2, True, False, None),
    ("S2 channel", 2, False, True, None),
    ("S2 both, λ_e 0", 2, True, True, 0.0),
    ("static, same fine-tune", 1, True, True, 0.0),  # control: S = 1 is the base network, trained as long
]


def data_config(s: dict[str, Any], root: Path) -> DataConfig:
    """The synthetic set and how clips are cut (no flips: pan_left and pan_right are mirror images)."""
    synth = SyntheticData(root=root, classes=s["classes"], videos_per_class=s["videos_per_class"],
                          frames=s["frames"], size=s["size"], seed=s["data_seed"], appearance=s["appearance"],
                          appearance_fast=s["appearance_fast"], cast_fast=s["cast_fast"],
                          val_fraction=s["val_fraction"])
    return DataConfig(synthetic=synth, flip=False, batch_size=s["batch_size"], num_workers=0,
                      crop_size=s["size"], num_frames=s["num_frames"], frame_stride=s["frame_stride"])


def base_config(s: dict[str, Any], out: Path, seed: int, data_root: Path) -> TrainConfig:
    return TrainConfig(
        model=s["model"], epochs=s["base_epochs"], output_dir=out / "runs" / "base", data=data_config(s, data_root),
        optim=OptimConfig(lr=s["base_lr"], warmup_epochs=s["base_warmup_epochs"]),
        seed=seed, threads=1, eval_every=s["base_epochs"], keep_checkpoints=1,
        resume_from="last",  # a finished base of this same config is evaluated, not trained again
    )


def variant_config(
    s: dict[str, Any], out: Path, seed: int, variant: tuple, base_checkpoint: Path, data_root: Path, tag: str = ""
) -> TrainConfig:
    name, search_space, temporal, channel, lambda_e = variant
    lambda_e = s["lambda_e"] if lambda_e is None else lambda_e
    groups: dict[str, Any] = {}
    for key, value in s.items():
        if "." in key and key.split(".")[0] in DynamicSpec.__dataclass_fields__:  # the spec's groups
            set_dotted(groups, key, value)
    spec = DynamicSpec(search_space=search_space, temporal=temporal, channel=channel, **groups)
    folder = name.replace(" ", "_").replace(",", "").replace("λ_e", "lambda") + (f"_{tag}" if tag else "")
    return TrainConfig(
        model=s["model"], stage="dynamic", dynamic=spec, base_checkpoint=base_checkpoint, lambda_e=lambda_e,
        policy_warmup_epochs=s["dyn_policy_warmup_epochs"],
        epochs=s["dyn_epochs"], output_dir=out / "runs" / folder, data=data_config(s, data_root),
        optim=OptimConfig(lr=s["dyn_lr"], warmup_epochs=s["dyn_warmup_epochs"], gate_lr_mult=s["gate_lr_mult"],
                          gate_grad_clip=s["gate_grad_clip"]),
        seed=seed, threads=1, eval_every=s["dyn_epochs"], keep_checkpoints=1,
        resume_from="last",  # a finished fine-tune of this same config is evaluated, an interrupted one resumed
    )


def run(name: str, config: dict[str, Any], meta: dict[str, Any], plots: str | None = None) -> dict[str, Any]:
    """Fit one config (a plain dict, so it crosses process boundaries) and return its table row."""
    cfg = TrainConfig.model_validate(config)
    t0 = time.perf_counter()
    try:
        result = fit(cfg)
    except CheckpointError:  # the folder holds a run of other settings: train this one afresh in its place
        if cfg.resume_from != "last":
            raise
        result = fit(cfg.model_copy(update={"resume_from": None}))
    seconds = time.perf_counter() - t0
    ev = result.evaluation
    assert ev is not None
    # per video, in dataset order: for the paired comparison against the base and the static-vs-fast test
    videos = sorted(ev.videos, key=lambda v: v.index)
    by_video = [int(v.pred == v.label) for v in videos]
    video_gflops = [v.gflops for v in videos]
    annotations = {"class": [v.label for v in videos], "motion": [v.extra.get("motion", -1) for v in videos],
                   "clutter": [v.extra.get("clutter", -1) for v in videos]}
    correct: dict[int, list[int]] = {}  # per motion level
    for motion, right in zip(annotations["motion"], by_video):
        correct.setdefault(motion, []).append(right)
    row = {
        "variant": name, **meta,
        "video_top1": ev.video_top1, "clip_top1": ev.clip_top1,
        "gflops_avg": ev.gflops_avg, "gflops_min": ev.gflops_min, "gflops_max": ev.gflops_max,
        "gflops_by_motion": {str(k): v for k, v in ev.gflops_by("motion").items()},
        "video_top1_by_motion": {str(k): 100.0 * sum(c) / len(c) for k, c in sorted(correct.items())},
        "video_top1_ci95": [100.0 * e for e in wilson_interval(sum(by_video), len(by_video))],
        "num_val_videos": ev.num_videos, "fit_s": seconds, "checkpoint": str(result.checkpoint),
        "cost_variance_explained": {k: variance_explained(video_gflops, g) for k, g in annotations.items()},
        "layer_names": ev.layer_names,
        "feature_ratio_by_motion": {str(k): v for k, v in ev.feature_ratio_by("motion").items()},
        "correct": by_video, "video_gflops": video_gflops, "video_motion": annotations["motion"],
    }  # fmt: skip
    if plots is not None and ev.layer_names:
        from vared_core.analysis.plots import plot_cost_histogram, plot_feature_ratio

        plot_cost_histogram(ev, Path(plots) / "headline_cost_histogram.png")
        plot_feature_ratio(ev, Path(plots) / "headline_feature_ratio.png")
    return row


def _static_fast(row: dict[str, Any]) -> tuple[float, float]:
    levels = sorted(row["gflops_by_motion"], key=int)
    return row["gflops_by_motion"][levels[0]], row["gflops_by_motion"][levels[-1]]


def static_vs_fast(row: dict[str, Any]) -> dict[str, float | int]:
    """Whether the static clips' mean cost differs from the fastest clips' by more than chance: a permutation
    test on the per-video GFLOPs of the lowest and the highest motion level (`mean_difference`)."""
    levels = sorted(set(row["video_motion"]))
    cost = {lv: [g for g, m in zip(row["video_gflops"], row["video_motion"]) if m == lv] for lv in (levels[0], levels[-1])}
    return mean_difference(cost[levels[0]], cost[levels[-1]]).to_dict()


def layers_table(row: dict[str, Any]) -> str:
    """Per dynamic layer of one fine-tune: the ratio of output features it computed, per motion level."""
    levels = sorted(row["feature_ratio_by_motion"], key=int)
    lines = [f"| layer | computed share, motion {' / '.join(levels)} (static … fast) |", "|---|---|"]
    for i, name in enumerate(row["layer_names"]):
        lines.append(f"| {name} | " + " / ".join(f"{row['feature_ratio_by_motion'][lv][i]:.2f}" for lv in levels) + " |")
    return "\n".join(lines)


def table(base: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The results table (as in docs/benchmarks/fidelity.md): one line per model, the base first."""
    lines = [
        "| variant | S | dims | λ_e | video-1 (95% CI) | Δ vs base | lost / gained (p) | GFLOPs avg | reduction "
        "| static-clip GFLOPs | fast-clip GFLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [base, *rows]:
        static, fast = _static_fast(r)
        delta = r["video_top1"] - base["video_top1"]
        cut = 100.0 * (1 - r["gflops_avg"] / base["gflops_avg"])
        lam = "—" if r["lambda_e"] is None else f"{r['lambda_e']:g}"
        lo, hi = r["video_top1_ci95"]
        pair = "—" if r is base else "{lost} / {gained} ({p_value:.2g})".format(**r["paired_vs_base"])
        lines.append(
            f"| {r['variant']} | {r['S']} | {r['dims']} | {lam} | {r['video_top1']:.1f} ({lo:.0f}–{hi:.0f}) | "
            f"{delta:+.1f} | {pair} | {r['gflops_avg']:.4f} | {cut:+.1f}% | {static:.4f} | {fast:.4f} |"
        )
    return "\n".join(lines)


def plot(base: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """video-1 vs GFLOPs (base marked) and mean GFLOPs per motion level, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([base["gflops_avg"]], [base["video_top1"]], marker="*", s=180, color="black", label="base", zorder=3)
    for r in rows:
        ax.scatter([r["gflops_avg"]], [r["video_top1"]], s=50, label=r["variant"], zorder=3)
    ax.axhline(base["video_top1"] - 1, color="grey", linestyle=":", linewidth=1, label="base − 1 pt")
    ax.axvline(0.75 * base["gflops_avg"], color="grey", linestyle="--", linewidth=1, label="base − 25% GFLOPs")
    ax.set_xlabel("GFLOPs per clip (avg)")
    ax.set_ylabel("video-1 (%)")
    ax.set_title("accuracy vs cost (hard-mode inference)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "accuracy_vs_gflops.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    models = [base, *rows]
    levels = sorted({k for r in models for k in r["gflops_by_motion"]}, key=int)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(models) + 2), 4))
    width = 0.8 / len(levels)
    for i, level in enumerate(levels):
        xs = [m + (i - (len(levels) - 1) / 2) * width for m in range(len(models))]
        name = "static" if i == 0 else ("fastest" if i == len(levels) - 1 else "")
        ax.bar(xs, [r["gflops_by_motion"].get(level, math.nan) for r in models], width,
               label=f"motion {level}" + (f" ({name})" if name else ""))
    ax.set_xticks(range(len(models)), [r["variant"] for r in models], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("mean GFLOPs per clip")
    ax.set_title("cost by motion level")
    lo = min(v for r in models for v in r["gflops_by_motion"].values())
    ax.set_ylim(0.9 * lo, None)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "gflops_by_motion.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def exit_with_parent(parent: int) -> None:
    """Pool-worker initializer: the worker exits once ``parent`` (the benchmark) is gone, so a benchmark that
    is killed or interrupted does not leave its fits training on."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_all(jobs: list[tuple], pool: ProcessPoolExecutor | None) -> list[dict[str, Any]]:
    """Rows of `run` for each job, in order, in ``pool`` (or here, one after another); each printed as it is
    collected."""
    futures = [pool.submit(run, *job) for job in jobs] if pool is not None else None
    rows = []
    for i, job in enumerate(jobs):
        rows.append(futures[i].result() if futures is not None else run(*job))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def targets(h: dict[str, float]) -> dict[str, bool]:
    """Issue 5's targets on a headline's numbers (`headline`, or their means over seeds)."""
    return {
        "gflops_down_25pct": h["gflops_reduction_pct"] >= 25.0,
        "video_top1_within_1pt": h["video_top1_drop"] <= 1.0,
        "static_cheaper_than_fast": h["gflops_static_clips"] < h["gflops_fast_clips"],
    }


def headline(base: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's numbers and targets for one seed's base and its fine-tunes (headline = first row)."""
    head = rows[0]
    static, fast = _static_fast(head)
    h = {
        "base_video_top1": base["video_top1"], "dynamic_video_top1": head["video_top1"],
        "base_gflops_avg": base["gflops_avg"], "dynamic_gflops_avg": head["gflops_avg"],
        "gflops_static_clips": static, "gflops_fast_clips": fast,
        "gflops_reduction_pct": 100.0 * (1 - head["gflops_avg"] / base["gflops_avg"]),
        "video_top1_drop": base["video_top1"] - head["video_top1"],
    }  # fmt: skip
    return {**h, "targets_met": targets(h), "static_vs_fast": static_vs_fast(head),
            "cost_variance_explained": head["cost_variance_explained"]}


def seeds_table(per_seed: list[dict[str, Any]]) -> str:
    """One line per seed: the headline against its own base."""
    lines = ["| seed | base video-1 | headline video-1 | Δ | GFLOPs cut | static / fast clips (G) | static vs fast (p) "
             "| cost variance by class / motion |",
             "|---|---|---|---|---|---|---|---|"]
    for h in per_seed:
        d, eta = h["static_vs_fast"], h["cost_variance_explained"]
        lines.append(
            f"| {h['seed']} | {h['base_video_top1']:.1f} | {h['dynamic_video_top1']:.1f} | {-h['video_top1_drop']:+.1f} "
            f"| {h['gflops_reduction_pct']:.1f}% | {h['gflops_static_clips']:.4f} / {h['gflops_fast_clips']:.4f} "
            f"| {100 * d['relative']:+.1f}% ({d['p_value']:.2g}) | {100 * eta['class']:.0f}% / {100 * eta['motion']:.0f}% |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1, help="fits run at a time (one torch thread each)")
    ap.add_argument("--quick", action="store_true", help="small smoke version: checks the script, not the method")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/fidelity"))
    ap.add_argument("--seed", type=int, nargs="+", default=[0], metavar="N",
                    help="seed(s) of initialisation, sampling and shuffling; several run the whole benchmark once "
                         "per seed (each with its own base) and report means and the spread")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change one of SETTINGS (value as JSON), e.g. --set dyn_epochs=20")
    ap.add_argument("--tag", default="", help="suffix of the fine-tunes' run folders, to try settings (--set) "
                                              "against the same bases in one --out")
    ap.add_argument("--variants", type=int, default=len(VARIANTS), choices=range(1, len(VARIANTS) + 1),
                    help="run only the first N variants (1: the headline only)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", choices=[v[0] for v in VARIANTS],
                    help="run only these variants, by name (the first is then reported as the headline), e.g. "
                         "--only 'S2 temporal'")
    args = ap.parse_args()
    chosen = [v for v in VARIANTS if v[0] in args.only] if args.only else VARIANTS[: args.variants]
    s = {**SETTINGS, **(QUICK if args.quick else {})}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in SETTINGS:
            ap.error(f"--set {item}: unknown setting {key!r}; one of {', '.join(SETTINGS)}")
        s[key] = json.loads(value)
    seeds = list(dict.fromkeys(args.seed))
    out = args.out / ("quick" if args.quick else "full")
    outs = {seed: out if len(seeds) == 1 else out / f"seed{seed}" for seed in seeds}
    t0 = time.perf_counter()
    data_root = out / "data"  # one synthetic set for every seed, written before any fit reads it
    ensure_synthetic(data_config(s, data_root).synthetic)

    pool = None
    if args.jobs > 1:
        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=exit_with_parent, initargs=(os.getpid(),))
    finished = False
    try:
        base_meta = {"S": 1, "dims": "—", "lambda_e": None}
        bases = run_all([("base", base_config(s, outs[seed], seed, data_root).to_dict(), base_meta) for seed in seeds],
                        pool)
        jobs = []
        for seed, base in zip(seeds, bases):
            for i, v in enumerate(chosen):
                name, search_space, temporal, channel, _ = v
                dims = "—" if search_space == 1 else ("both" if temporal and channel else ("temporal" if temporal else "channel"))
                config = variant_config(s, outs[seed], seed, v, Path(base["checkpoint"]), data_root, args.tag).to_dict()
                meta = {"S": search_space, "dims": dims, "lambda_e": config["lambda_e"], "seed": seed}
                jobs.append((name, config, meta, str(outs[seed]) if i == 0 else None))
        all_rows = run_all(jobs, pool)
        finished = True
    finally:  # interrupted (Ctrl-C, an error): drop the queued fits; running ones end with this process
        if pool is not None:
            pool.shutdown(wait=finished, cancel_futures=not finished)

    per_seed, variants = [], []
    for k, (seed, base) in enumerate(zip(seeds, bases)):
        rows = all_rows[k * len(chosen) : (k + 1) * len(chosen)]
        for r in rows:  # which videos each fine-tune lost or gained against its base, and McNemar's p
            r["paired_vs_base"] = paired_comparison(base["correct"], r["correct"]).to_dict()
        base["seed"] = seed
        per_seed.append({"seed": seed, **headline(base, rows), "dynamic_paired_vs_base": rows[0]["paired_vs_base"],
                         "base_video_top1_ci95": base["video_top1_ci95"],
                         "dynamic_video_top1_ci95": rows[0]["video_top1_ci95"]})
        variants += [base, *rows]
        print()
        print(f"seed {seed}:" if len(seeds) > 1 else "", table(base, rows), "", layers_table(rows[0]), sep="\n")
        plots = plot(base, rows, outs[seed])
        print("plots:", ", ".join(str(p) for p in plots + [outs[seed] / "headline_cost_histogram.png",
                                                          outs[seed] / "headline_feature_ratio.png"]))
    if len(seeds) == 1:
        summary = per_seed[0]
    else:  # the keys as means over the seeds, targets on the means and at every seed
        numbers = [k for k, v in per_seed[0].items() if isinstance(v, float)]
        summary = {k: statistics.fmean(h[k] for h in per_seed) for k in numbers}
        summary["spread"] = {k: [min(h[k] for h in per_seed), max(h[k] for h in per_seed)] for k in numbers}
        summary["targets_met"] = targets(summary)
        summary["targets_met_every_seed"] = {k: all(h["targets_met"][k] for h in per_seed) for k in summary["targets_met"]}
        print()
        print(seeds_table(per_seed))
    print()
    print(json.dumps({
        **summary, "headline_variant": chosen[0][0], "seeds": seeds, "per_seed": per_seed if len(seeds) > 1 else None,
        "variants": variants, "settings": {**s, "seed": seeds, "quick": args.quick, "jobs": args.jobs},
        "num_val_videos": bases[0]["num_val_videos"], "total_s": time.perf_counter() - t0,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
