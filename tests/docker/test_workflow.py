"""docker/ci/github-nightly.yml: valid against SchemaStore's github-workflow schema; scheduled and manual;
installs and runs the nightly with the cluster addresses from repository variables and secrets; keeps
the report as an artifact even when the nightly fails.
"""
from __future__ import annotations

import copy
import re
from typing import Any

import pytest


@pytest.fixture(scope="module")
def workflow(docker_dir, yaml_files) -> dict[str, Any]:
    return yaml_files.load_yaml(docker_dir / "ci" / "github-nightly.yml")


def _errors(schemas, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schemas.workflow_validator().iter_errors(doc)]


def test_workflow_matches_the_github_workflow_schema(workflow, schemas):
    assert _errors(schemas, workflow) == []


def test_workflow_schema_rejects_broken_workflows(workflow, schemas):
    unknown_key = copy.deepcopy(workflow)
    unknown_key["jobs"]["nightly"]["run-on"] = "ubuntu-24.04"
    assert _errors(schemas, unknown_key)
    no_trigger = copy.deepcopy(workflow)
    del no_trigger["on"]
    assert any("'on' is a required property" in e for e in _errors(schemas, no_trigger))


def test_yaml_reads_on_as_a_key_not_a_boolean(workflow):
    assert "on" in workflow and True not in workflow  # PyYAML's YAML 1.1 default would turn `on:` into True


def test_runs_on_a_schedule_and_by_hand(workflow):
    crons = [entry["cron"] for entry in workflow["on"]["schedule"]]
    assert crons and all(len(c.split()) == 5 for c in crons)
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["permissions"] == {"contents": "read"}


def test_installs_then_runs_the_nightly(workflow):
    (job,) = workflow["jobs"].values()
    runs = [step.get("run", "") for step in job["steps"]]
    install = next(i for i, r in enumerate(runs) if "scripts/install.sh" in r)
    nightly = next(i for i, r in enumerate(runs) if re.search(r"^\s*orchestrator nightly ", r, re.MULTILINE))
    assert install < nightly
    assert job["env"]["STUDY"].endswith("'studies/nightly.yaml' }}")


def test_cluster_addresses_and_secrets_come_from_repository_settings(workflow):
    (job,) = workflow["jobs"].values()
    env = job["env"]
    assert env["MLFLOW_TRACKING_URI"] == "${{ vars.MLFLOW_TRACKING_URI }}"
    assert env["CLUSTER_RAY_ADDRESS"] == "${{ vars.RAY_ADDRESS }}"
    for key, value in env.items():
        if re.search(r"PASSWORD|SECRET|TOKEN", key):
            assert re.fullmatch(r"\$\{\{ secrets\.\w+ \}\}", value), f"{key}: {value!r} is not a secret reference"


def test_uploads_the_report_even_on_failure(workflow):
    (job,) = workflow["jobs"].values()
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"
    assert "runs/nightly/" in upload["with"]["path"]
    for step in job["steps"]:
        if "uses" in step:
            assert re.search(r"@(v\d+|[0-9a-f]{40})$", step["uses"]), f"{step['uses']}: pin a version or commit"
