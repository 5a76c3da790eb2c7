"""docker/k8s/nightly-cronjob.yaml: every document valid against the strict Kubernetes v1.37 schema of its
kind, and the CronJob safe to leave running (no overlap, bounded history, non-root, limits, shared claim).
"""
from __future__ import annotations

import copy
import re
from typing import Any

import pytest

NIGHTLY = ["orchestrator", "nightly", "studies/nightly.yaml"]


@pytest.fixture(scope="module")
def documents(docker_dir, yaml_files) -> dict[str, dict[str, Any]]:
    docs = yaml_files.load_yaml_all(docker_dir / "k8s" / "nightly-cronjob.yaml")
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), "one document per kind"
    return by_kind


@pytest.fixture(scope="module")
def pod(documents) -> dict[str, Any]:
    return documents["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _errors(schemas, doc) -> list[str]:
    validator = schemas.k8s_validator(doc["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_documents_match_the_kubernetes_schemas(documents, schemas):
    assert set(documents) == {"PersistentVolumeClaim", "ConfigMap", "CronJob"}
    for kind, doc in documents.items():
        assert _errors(schemas, doc) == [], kind


def test_kubernetes_schemas_reject_broken_manifests(documents, schemas):
    no_template = copy.deepcopy(documents["CronJob"])
    del no_template["spec"]["jobTemplate"]
    assert "spec: 'jobTemplate' is a required property" in _errors(schemas, no_template)
    unknown_field = copy.deepcopy(documents["CronJob"])
    unknown_field["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    assert any("securityContex" in e for e in _errors(schemas, unknown_field))  # strict: unknown fields fail
    bad_type = copy.deepcopy(documents["CronJob"])
    bad_type["spec"]["startingDeadlineSeconds"] = "one hour"
    assert any(e.startswith("spec/startingDeadlineSeconds:") for e in _errors(schemas, bad_type))
    bad_claim = copy.deepcopy(documents["PersistentVolumeClaim"])
    bad_claim["spec"]["accessModes"] = "ReadWriteMany"  # a string, not a list
    assert _errors(schemas, bad_claim)
    with pytest.raises(ValueError, match="no vendored Kubernetes schema"):
        schemas.k8s_validator("Deployment")


def test_cronjob_never_overlaps_and_keeps_bounded_history(documents):
    spec = documents["CronJob"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert 0 < spec["successfulJobsHistoryLimit"] <= 10 and 0 < spec["failedJobsHistoryLimit"] <= 10
    assert len(spec["schedule"].split()) == 5 and spec["timeZone"]
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0 and job["template"]["spec"]["restartPolicy"] == "Never"


def test_pod_runs_as_non_root_without_privileges(pod):
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container.get("securityContext", {}).get("runAsUser", 1000) != 0


def test_containers_have_requests_and_limits(pod):
    for container in pod["containers"]:
        for side in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][side]), f"{container['name']}: {side}"


def test_container_runs_the_nightly_on_the_shared_claim(pod, documents):
    (container,) = pod["containers"]
    assert container["command"][:3] == NIGHTLY
    assert "storage=$(NIGHTLY_STORAGE)" in container["command"]
    assert documents["ConfigMap"]["data"]["NIGHTLY_STORAGE"].startswith("/shared/")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/shared"]]["persistentVolumeClaim"]["claimName"]
    assert claim == documents["PersistentVolumeClaim"]["metadata"]["name"]
    assert documents["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]  # every node mounts it


def test_addresses_come_from_the_configmap_and_secrets_from_secret_refs(pod, documents):
    (container,) = pod["containers"]
    assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == [documents["ConfigMap"]["metadata"]["name"]]
    data = documents["ConfigMap"]["data"]
    assert data["RAY_ADDRESS"].startswith("ray://") and data["MLFLOW_TRACKING_URI"].startswith("http")
    assert not [k for k in data if re.search(r"PASSWORD|SECRET|TOKEN", k)], "secrets do not belong in a ConfigMap"
    secret_env = [e for e in container["env"] if re.search(r"PASSWORD|SECRET|TOKEN", e["name"])]
    assert secret_env and all("value" not in e and "secretKeyRef" in e["valueFrom"] for e in secret_env)


def test_image_is_pinned(pod):
    for container in pod["containers"]:
        image = container["image"]
        tag = image.rpartition(":")[2]
        assert "@sha256:" in image or (tag and "/" not in tag and tag != "latest"), image
