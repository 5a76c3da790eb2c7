"""Nightly regression sweeps: the comparison rules on hand-made numbers, then real nightlies of a tiny
study (local Ray, MLflow SQLite) passing against themselves and failing on worse numbers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.nightly import compare, read_baseline_file
from orchestrator.schema import Tolerance
from orchestrator.validation import load_study, validate_study

REPO = Path(__file__).resolve().parents[2]
TOLERANCES = {"video_top1": {"drop": 20.0}, "gflops_avg": {"rise_pct": 2}, "clips_per_s": {"drop_pct": 95}}


# ------------------------------------------------------------------------------------------- rules
def test_tolerance_directions_and_the_larger_allowance() -> None:
    acc = Tolerance(drop=2.0, drop_pct=10)
    assert acc.allowance(50.0) == 5.0 and acc.allowance(10.0) == 2.0  # the larger of 10 % and 2 points
    assert not acc.regressed(50.0, 45.0) and acc.regressed(50.0, 44.9)
    assert not acc.regressed(50.0, 90.0)  # better is never a regression
    cost = Tolerance(rise_pct=5)
    assert not cost.regressed(1.0, 1.05) and cost.regressed(1.0, 1.051) and not cost.regressed(1.0, 0.5)
    assert cost.regressed(1.0, math.nan)


@pytest.mark.parametrize("bad", [{}, {"drop": 1, "rise": 1}, {"drop_pct": 1, "rise_pct": 1}, {"drop": -1}])
def test_a_tolerance_needs_exactly_one_direction(bad: dict) -> None:
    with pytest.raises(ValueError):
        Tolerance.model_validate(bad)


def test_compare_flags_regressions_missing_configs_and_reports_new_ones() -> None:
    tol = {"video_top1": Tolerance(drop=1.0), "gflops_avg": Tolerance(rise_pct=10)}
    baseline = {"dims=both": {"video_top1": 80.0, "gflops_avg": 1.0},
                "dims=temporal": {"video_top1": 70.0, "gflops_avg": 2.0},
                "dims=channel": {"video_top1": 60.0, "gflops_avg": 3.0}}  # fmt: skip
    current = {"dims=both": {"video_top1": 79.5, "gflops_avg": 1.2},
               "dims=temporal": {"video_top1": 75.0, "gflops_avg": 1.0},
               "dims=none": {"video_top1": 90.0, "gflops_avg": 5.0}}  # fmt: skip
    checks = {(c.config, c.metric): c for c in compare(baseline, current, tol, {"dims=channel": "TrainingDiverged"})}
    assert checks["dims=both", "video_top1"].status == "ok"
    assert checks["dims=both", "gflops_avg"].status == "regressed"
    assert checks["dims=both", "gflops_avg"].worse_by == pytest.approx(0.2)
    assert checks["dims=temporal", "video_top1"].status == checks["dims=temporal", "gflops_avg"].status == "ok"
    assert checks["dims=channel", "video_top1"].status == "missing"
    assert checks["dims=channel", "video_top1"].error == "TrainingDiverged"
    assert checks["dims=none", "video_top1"].status == "new"


def test_nightly_section_is_validated_with_field_names(tmp_path: Path, write_study) -> None:
    path = write_study(tmp_path, "bad", sample={"lambda_e": {"loguniform": [0.1, 4.0]}},
                       nightly={"tolerances": {"gflops": {"rise": 1}, "video_top1": {"drop": 1, "rise": 1}}})  # fmt: skip
    problems = "\n".join(validate_study(path))
    assert "nightly.tolerances.gflops" in problems
    assert "nightly.tolerances.video_top1: give drop" in problems
    assert "nightly: a nightly compares the same configurations" in problems


def test_a_broken_baseline_file_is_named_with_its_field(tmp_path: Path) -> None:
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"format": "vared-nightly-baseline/1", "configs": [{"params": {}, "metrics": {"x": "y"}}]}))
    with pytest.raises(ValueError, match=r"b\.json: configs\[0\]\.metrics\.x: must be a number"):
        read_baseline_file(f)
    f.write_text("{}")
    with pytest.raises(ValueError, match=r"b\.json: format"):
        read_baseline_file(f)


# ------------------------------------------------------------------------------------ real nightlies
def _report(capsys) -> str:
    return capsys.readouterr().out


@pytest.mark.slow
def test_the_shipped_nightly_passes_against_itself(tmp_path: Path, local_ray, capsys) -> None:
    """studies/nightly.yaml (the smoke study's pipeline on fixed configurations), in a scratch folder."""
    sets = ["--set", f"storage={tmp_path / 'runs'}", "--set", f"data.synthetic.root={tmp_path / 'synth'}"]
    args = [str(REPO / "studies" / "nightly.yaml"), "--verbose", "0", *sets]
    # 1. no baseline yet: recorded in MLflow, and the run passes
    assert main(["nightly", *args]) == 0
    assert "no baseline yet" in _report(capsys)
    # 2. the same code and seed against it (the last passing nightly): every check passes
    assert main(["nightly", *args]) == 0
    out = _report(capsys)
    assert "PASS" in out and "REGRESSED" not in out and "(last passing nightly)" in out
    latest = sorted((tmp_path / "runs" / "nightly").glob("*/report/report.json"))[-1]
    checks = json.loads(latest.read_text())["checks"]
    assert len(checks) == 6 and all(c["status"] == "ok" for c in checks)  # 2 configurations × 3 metrics


@pytest.mark.slow
def test_nightlies_fail_on_worse_numbers(tmp_path: Path, write_study, local_ray, capsys) -> None:
    path = write_study(tmp_path, "night", grid={"dims": ["both"]}, nightly={"tolerances": TOLERANCES})
    study = load_study(path)
    client = MlflowClient(study.tracking_uri())
    args = [str(path), "--verbose", "0"]
    baseline_file = tmp_path / "baseline.json"

    # 1. no baseline yet: recorded (into the file), and the run passes
    assert main(["nightly", *args, "--baseline", str(baseline_file)]) == 0
    out = _report(capsys)
    assert "no baseline yet" in out and baseline_file.exists()
    recorded = json.loads(baseline_file.read_text())["configs"]
    assert [c["params"] for c in recorded] == [{"dims": "both"}] and "video_top1" in recorded[0]["metrics"]

    # 2. a baseline with better accuracy: exit 1, the report names video_top1
    better = json.loads(baseline_file.read_text())
    better["configs"][0]["metrics"]["video_top1"] += 50.0
    better_file = tmp_path / "better.json"
    better_file.write_text(json.dumps(better))
    assert main(["nightly", *args, "--baseline", str(better_file)]) == 1
    out = _report(capsys)
    assert "FAIL" in out and "video_top1 (dims=both)" in out and "gflops_avg (dims=both)" not in out
    failed = client.search_runs([client.get_experiment_by_name("night").experiment_id], "tags.nightly = 'fail'")
    assert len(failed) == 1
    arts = {a.path for a in client.list_artifacts(failed[0].info.run_id, "nightly")}
    assert {"nightly/report.md", "nightly/report.html", "nightly/report.json"} <= arts
    md = Path(client.download_artifacts(failed[0].info.run_id, "nightly/report.md", str(tmp_path)))
    assert "| dims=both | video_top1 |" in md.read_text() and "REGRESSED" in md.read_text()

    # 3. a change that doubles the width: GFLOPs rise beyond 2 % against the last passing nightly (run 1)
    assert main(["nightly", *args, "--set", "base.width=2.0"]) == 1
    out = _report(capsys)
    assert "gflops_avg (dims=both)" in out
    passing = client.search_runs([failed[0].info.experiment_id], "tags.nightly = 'pass'")
    assert len(passing) == 1 and f"MLflow run {passing[0].info.run_id} (last passing nightly)" in out

    # 4. a study that cannot run (its base model diverges): exit 3, reported, not a crash
    assert main(["nightly", *args, "--set", "base.optim.lr=1.0e30"]) == 3
    assert "could not run" in _report(capsys)
