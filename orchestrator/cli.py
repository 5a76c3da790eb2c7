"""The `orchestrator` command: validate, run, and inspect YAML studies.

    orchestrator validate studies/ablation.yaml [--address ray://head:10001]
    orchestrator run studies/smoke.yaml [--address ray://head:10001] [--resume] [--dry-run] [--set KEY=VALUE ...]
    orchestrator nightly studies/nightly.yaml [--baseline RUN_ID|FILE] [--update-baseline]
    orchestrator pareto studies/smoke.yaml
    orchestrator models studies/smoke.yaml
    orchestrator compare studies/ablation.yaml studies/lambda.yaml --out compare/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]


def _load(path: str, sets: list[str] | None = None):  # -> Study, or exits 2 with every problem listed
    from .validation import StudyError, load_study, parse_overrides

    try:
        return load_study(path, parse_overrides(sets or []))
    except StudyError as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(2) from None


def _validate(args: argparse.Namespace) -> int:
    import os

    from .validation import StudyError, load_study, parse_overrides

    try:
        overrides = parse_overrides(args.set)
    except StudyError as e:
        print(str(e), file=sys.stderr)
        return 2
    status, shapes = 0, {}
    for path in args.studies:
        try:
            study = load_study(path, overrides)
        except StudyError as e:
            problems = e.problems
        else:  # the resources against the cluster the study would run on (as `run` would refuse them)
            from .run import check_cluster, cluster_shape

            problems = []
            address = args.address or os.environ.get("RAY_ADDRESS") or study.ray.address
            if address not in shapes:
                shapes[address] = cluster_shape(address)
            try:
                check_cluster(study, *shapes[address])
            except ValueError as e:
                problems = [str(e)]
        if problems:
            status = 2
            print("\n".join(problems), file=sys.stderr)
        else:
            print(f"{path}: ok")
    return status


def _run(args: argparse.Namespace) -> int:
    study = _load(args.study, args.set)
    from .run import plan, run_study

    if args.dry_run:
        print(json.dumps(plan(study), indent=2, default=str))
        return 0
    from .preflight import PreflightError
    from .study_lock import StudyLocked

    try:
        result = run_study(study, address=args.address, resume=args.resume, verbose=args.verbose)
    except (StudyLocked, PreflightError) as e:  # refused before any trial started
        print(f"{args.study}: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from .tracking import tracking_unreachable, unreachable_message

        if not tracking_unreachable(e):
            raise
        print(f"{args.study}: {unreachable_message(study.tracking_uri(), study.tracking.outage_s)} ({e}). What was "
              f"logged stays; once the server answers, continue the study: orchestrator run {args.study} --resume",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"MLflow: {study.tracking_uri()} · experiment {study.experiment_name()!r} · parent run {result.tracker.parent_run_id}")
    print(f"open it: {ui_command(study.tracking_uri(), result.tracker.experiment_id)}")
    return 0


def ui_command(uri: str, experiment_id: str | None = None) -> str:
    """What opens the MLflow UI on the store ``uri`` at the study's experiment: its address for a tracking
    server, else ``mlflow ui`` on the store. The page asks for MLflow 3's model-training view (runs, charts,
    registry), which would otherwise open on its GenAI view (traces).

    Example:
        >>> ui_command("http://mlflow:5000", "3")
        'http://mlflow:5000/#/experiments/3?workflowType=machine_learning'
    """
    page = f"/#/experiments/{experiment_id}?workflowType=machine_learning" if experiment_id else ""
    if uri.split(":", 1)[0] in ("http", "https"):
        return uri.rstrip("/") + page
    return f"mlflow ui --backend-store-uri '{uri}'   # then http://127.0.0.1:5000{page}"


def _nightly(args: argparse.Namespace) -> int:
    """Exit status: 0 pass (or accepted with --update-baseline), 1 regression, 2 bad input, 3 the study could
    not run."""
    study = _load(args.study, args.set)
    from .nightly import run_nightly

    try:
        report = run_nightly(study, baseline=args.baseline, update_baseline=args.update_baseline,
                             address=args.address, verbose=args.verbose)  # fmt: skip
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    if args.verbose:
        print(report.to_markdown())
    print(report.summary())
    print(f"report: {Path(report.folder) / 'report'}" + (f" · MLflow parent run {report.run_id}" if report.run_id else ""))
    if report.error:
        return 3
    return 0 if report.passed or report.accepted else 1


def _tracker(study):  # the study's parent run, from the state file its run left behind
    from .tracking import STATE_FILE, StudyTracker, load_study_state

    parent = load_study_state(Path(study.storage)).get("parent_run_id")
    if parent is None:
        print(f"{study.source}: the study has not been run yet (no {Path(study.storage) / STATE_FILE})", file=sys.stderr)
        raise SystemExit(2)
    return StudyTracker.of_run(study.tracking_uri(), parent)


def _pareto(args: argparse.Namespace) -> int:
    from .pareto import compute_front, format_front
    from .tracking import study_trials

    study = _load(args.study)
    trials, failed, stopped = study_trials(_tracker(study))
    front = compute_front(trials, dict(study.objectives), study.reference)
    print(format_front(front))
    if failed:
        print(f"({len(failed)} failed trial(s) left out)")
    if stopped:
        print(f"({len(stopped)} trial(s) stopped early by the scheduler left out)")
    return 0


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .models import front_models

    study = _load(args.study, args.set)
    models = front_models(_tracker(study).client, study.model_name())
    if not models:
        print(f"{study.source}: no registered versions of the model {study.model_name()!r} at {study.tracking_uri()}",
              file=sys.stderr)  # fmt: skip
        return 2
    metrics = list(study.objectives)
    table = Table(title=f"MLflow model {study.model_name()!r} · {study.tracking_uri()}")
    for col in ("alias", "version", "trial", *metrics, "run"):
        table.add_column(col, justify="right" if col in metrics else "left")
    for m in models:
        table.add_row(", ".join(m.aliases) or "-", m.version, m.trial_id,
                      *(f"{m.metrics[k]:.4g}" if k in m.metrics else "-" for k in metrics), m.run_id)  # fmt: skip
    console = Console(highlight=False, width=160)
    console.print(table)
    console.print(f"load one: orchestrator.models.load_model({models[0].uri!r}, tracking_uri={study.tracking_uri()!r})")
    return 0


def _fronts_table(fronts: dict) -> dict[str, list]:
    """Every study's front in one column table: ``study`` first, then each front's columns (None where a
    study's front lacks one)."""
    tables = {name: front.table() for name, front in fronts.items()}
    columns = list(dict.fromkeys(c for t in tables.values() for c in t))
    merged: dict[str, list] = {"study": [], **{c: [] for c in columns}}
    for name, table in tables.items():
        n = len(table.get("trial_id", []))
        merged["study"] += [name] * n
        for c in columns:
            merged[c] += table.get(c, [None] * n)
    return merged


def _compare(args: argparse.Namespace) -> int:
    from .front_plots import plot_front_html, plot_front_png
    from .pareto import compute_front
    from .tracking import study_trials

    studies = [_load(p) for p in args.studies]
    objectives = dict(studies[0].objectives)
    fronts = {}
    for s in studies:
        if dict(s.objectives) != objectives:
            print(f"{s.source}: objectives {dict(s.objectives)} differ from {objectives}; fronts not comparable",
                  file=sys.stderr)  # fmt: skip
            return 2
        trials = study_trials(_tracker(s)).done
        fronts[s.name] = compute_front(trials, objectives, s.reference)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_front_png(fronts, out / "compare.png")
    html = plot_front_html(fronts, out / "compare.html")
    tracker = _tracker(studies[0])
    client = tracker.client
    run = client.create_run(tracker.experiment_id, run_name="compare: " + " vs ".join(fronts),
                            tags={"role": "compare", "studies": ",".join(fronts)})  # fmt: skip
    client.log_artifact(run.info.run_id, str(png), "compare")
    client.log_artifact(run.info.run_id, str(html), "compare")
    client.log_table(run.info.run_id, data=_fronts_table(fronts), artifact_file="compare/fronts.json")
    client.set_terminated(run.info.run_id)
    print(f"wrote {png} and {html}; logged to MLflow run {run.info.run_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description="YAML studies of vared_core on Ray Tune + Optuna + MLflow")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("validate", help="check study files completely; list every problem with its field and line")
    p.add_argument("studies", nargs="+")
    p.add_argument("--address", help="check resources against this Ray cluster (default: RAY_ADDRESS, the study's "
                                     "ray.address, this machine)")
    _add_set(p)
    p.set_defaults(func=_validate)
    p = sub.add_parser("run", help="run a study (base models, trials, MLflow, Pareto front)")
    p.add_argument("study")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, the study's ray.address, local Ray)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of this study")
    p.add_argument("--dry-run", action="store_true", help="print the plan (cells, base models, trials) and exit")
    p.add_argument("--verbose", type=int, default=1, help="0 quiet, 1 progress lines, 2 the libraries' own logs too")
    p.add_argument("-v", dest="verbose", action="store_const", const=2, help="the same as --verbose 2")
    _add_set(p)
    p.set_defaults(func=_run)
    p = sub.add_parser("nightly", help="run a study and compare it with its baseline; exit 1 on a regression")
    p.add_argument("study")
    p.add_argument("--baseline", metavar="RUN_ID|FILE",
                   help="an MLflow parent run id or a baseline JSON file (default: the last passing nightly)")
    p.add_argument("--update-baseline", action="store_true",
                   help="make this run the baseline whatever it finds (writes FILE when --baseline is a file)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, the study's ray.address, local Ray)")
    p.add_argument("--verbose", type=int, default=1, help="0 quiet, 1 progress lines and the report, 2 the libraries' logs too")
    p.add_argument("-v", dest="verbose", action="store_const", const=2, help="the same as --verbose 2")
    _add_set(p)
    p.set_defaults(func=_nightly)
    p = sub.add_parser("pareto", help="print the accuracy–GFLOPs front of a study that has run")
    p.add_argument("study")
    p.set_defaults(func=_pareto)
    p = sub.add_parser("models", help="list the registered front models of a study that has run (front-0 the cheapest)")
    p.add_argument("study")
    _add_set(p)
    p.set_defaults(func=_models)
    p = sub.add_parser("compare", help="overlay the fronts of several studies; write and log the plot")
    p.add_argument("studies", nargs="+")
    p.add_argument("--out", default="compare", help="folder for compare.png / compare.html")
    p.set_defaults(func=_compare)
    return parser


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study field by its dotted path, value in YAML (repeatable), e.g. "
                        "--set storage=/shared/runs/x --set trial.epochs=3 --set 'search.grid.dims=[both]'")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
