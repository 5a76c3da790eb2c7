"""The `orchestrator` command in-process: exit codes and what it prints, on real study files."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from orchestrator.cli import main


def test_validate_says_ok_or_lists_each_problem_with_file_and_line(tmp_path: Path, write_study, capsys) -> None:
    good = write_study(tmp_path, "good")
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: ok"
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(good.read_text())
    raw["trial"]["epochz"] = 3
    raw["max_concurrent"] = 0
    bad.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "trial.epochz" in err and "max_concurrent" in err
    assert str(good) + ":" not in err


def test_validate_refuses_resources_this_machine_cannot_hold(tmp_path: Path, write_study, capsys) -> None:
    """Without an address a study runs on a local Ray of this machine: resources past its CPUs are refused, with
    the numbers, before anything runs (nothing is written, no Ray starts)."""
    huge = write_study(tmp_path, "huge", resources={"workers": 64, "cpu_per_worker": 64})
    assert main(["validate", str(huge)]) == 2
    err = capsys.readouterr().err
    assert f"{huge}: resources: 64 worker(s) × 64 CPU = 4096 CPU, but a local Ray on this machine has" in err
    assert "lower resources.workers or resources.cpu_per_worker" in err
    assert not (tmp_path / "runs").exists()


def test_a_set_that_is_not_key_value_is_refused(tmp_path: Path, write_study, capsys) -> None:
    assert main(["validate", str(write_study(tmp_path, "s")), "--set", "trial.epochs"]) == 2
    assert "--set 'trial.epochs': write KEY=VALUE" in capsys.readouterr().err


def test_a_dry_run_prints_the_plan_with_the_overrides_applied(tmp_path: Path, write_study, capsys) -> None:
    path = write_study(tmp_path, "plan", grid={"dims": ["temporal", "both"]})
    assert main(["run", str(path), "--dry-run", "--set", "search.grid.dims=[both]"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["trials"] == 1 and plan["cells"] == [{"dims": "both"}]
    assert [b["cached"] for b in plan["bases"]] == [False]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_pareto_of_a_study_that_never_ran_exits_2_saying_so(tmp_path: Path, write_study, capsys) -> None:
    path = write_study(tmp_path, "never")
    try:
        main(["pareto", str(path)])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("pareto of a study that never ran must exit")
    assert "the study has not been run yet" in capsys.readouterr().err


def test_compare_logs_the_overlay_and_one_table_of_every_front(tmp_path: Path, write_study, capsys) -> None:
    """Two studies' trials on a real MLflow store (written as trial runs write them): `compare` logs the overlay
    plot, its HTML and one table of both fronts, each row naming its study, to a run of the first study."""
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import StudyTracker, save_study_state
    from orchestrator.validation import load_study

    paths = []
    for name, points in (("a", [(70.0, 0.05), (60.0, 0.04), (50.0, 0.06)]), ("b", [(65.0, 0.03)])):
        (tmp_path / name).mkdir()
        path = write_study(tmp_path / name, name)
        study = load_study(path)
        storage = Path(study.storage)
        tracker = StudyTracker.open(study.tracking_uri(), study.experiment_name(), storage / "mlartifacts", name,
                                    parent_run_id=None)  # fmt: skip
        save_study_state(storage, {"parent_run_id": tracker.parent_run_id, "study": name})
        for i, (top1, gflops) in enumerate(points):
            run = tracker.trial_run(f"{name}{i}")
            run.log_params({"axis.lambda_e": i})
            run.log_metrics({"video_top1": top1, "gflops_avg": gflops}, 1)
            run.end()
        paths.append(str(path))
    out = tmp_path / "cmp"
    assert main(["compare", *paths, "--out", str(out)]) == 0
    run_id = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    study = load_study(paths[0])
    client = MlflowClient(study.tracking_uri())
    assert client.get_run(run_id).data.tags["studies"] == "a,b"
    files = {a.path for a in client.list_artifacts(run_id, "compare")}
    assert files == {"compare/compare.png", "compare/compare.html", "compare/fronts.json"}
    table = json.loads(Path(client.download_artifacts(run_id, "compare/fronts.json", str(tmp_path))).read_text())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert sorted((r["study"], r["trial_id"]) for r in rows) == [("a", "a0"), ("a", "a1"), ("b", "b0")]
