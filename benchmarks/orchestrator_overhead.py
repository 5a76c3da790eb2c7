"""What the orchestrator costs on top of the training it runs: a study's wall time vs its `fit` calls.

Runs a study (the smoke study by default) in a fresh folder, so its base model is trained too, and
reads back from MLflow how long every `fit` call took (``fit_time_s`` of each base and trial run):

    overhead = wall − useful,  useful = Σ base fits + Σ trial fits / max_concurrent

With ``--concurrent 1`` (the default) trials run one at a time and ``useful`` is exactly the summed fit
time; with more, it is the time of perfectly packed trials, so packing losses count as overhead too.
``wall`` is `run_study` from start (it starts Ray; ``ray_init_s`` is a separate `ray.init` for the
record) until the front is logged; the synthetic clips are written beforehand and count in neither. Target: overhead ≤ 10% of wall.

    python benchmarks/orchestrator_overhead.py [--study studies/smoke.yaml] [--concurrent 1] [--repeats 1]
                                               [--set trial.epochs=16 ...]

Prints one JSON line per repeat, then a last line with one JSON object (medians over the repeats).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(study_file: Path, concurrent: int, folder: Path, sets: dict) -> dict[str, float]:
    import ray
    from mlflow.tracking import MlflowClient

    from orchestrator.run import run_study
    from orchestrator.validation import load_study
    from vared_core.engine.data import ensure_synthetic

    study = load_study(study_file, {**sets, "storage": str(folder), "max_concurrent": concurrent})
    if study.data.synthetic is not None:
        ensure_synthetic(study.data.synthetic)  # one-time data writing is neither overhead nor training
    t0 = time.perf_counter()  # ray.init alone, for the record (run_study overlaps it with MLflow's set-up)
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_init = time.perf_counter() - t0
    ray.shutdown()
    t0 = time.perf_counter()
    try:
        result = run_study(study, verbose=0)  # starts its own local Ray
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    client = MlflowClient(study.tracking_uri())

    def fit_times(role: str) -> list[float]:
        return [client.get_run(r.info.run_id).data.metrics["fit_time_s"] for r in result.tracker.child_runs(role)]

    bases, trials = fit_times("base"), fit_times("trial")
    useful = sum(bases) + sum(trials) / concurrent
    return {
        "wall_s": wall, "ray_init_s": ray_init, "base_fit_s": sum(bases), "trial_fit_s": sum(trials),
        "num_trials": len(trials), "max_concurrent": concurrent, "useful_s": useful,
        "overhead_s": wall - useful, "overhead_pct": 100.0 * (wall - useful) / wall,
        "overhead_pct_without_ray_init": 100.0 * (wall - ray_init - useful) / (wall - ray_init),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "smoke.yaml")
    parser.add_argument("--concurrent", type=int, default=1, help="max_concurrent trials (1: sequential)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="study overrides, e.g. --set trial.epochs=16 (longer fits, the same fixed costs)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from orchestrator.validation import parse_overrides

    sets = parse_overrides(args.set)
    rows = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="vared-overhead-") as d:
            row = one_run(args.study, args.concurrent, Path(d), sets)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    summary = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    summary.update(study=str(args.study), overrides=sets, repeats=args.repeats, target_overhead_pct=10.0,
                   target_met=summary["overhead_pct"] <= 10.0)  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
