"""Validators built from the published JSON schemas vendored under ``schemas/`` (see ``schemas/SOURCES.md``).

    compose_validator().iter_errors(yaml.safe_load(text))      # Compose Specification
    workflow_validator().iter_errors(...)                      # GitHub Actions workflow (SchemaStore)
    k8s_validator("CronJob").iter_errors(...)                  # Kubernetes v1.37 strict schemas

No network: every ``$ref`` resolves inside the vendored files. The Kubernetes schemas point at
``https://kubernetes.io/api/_definitions.json``; that document (1.8 MB, stored gzipped, byte-identical
once unpacked) is registered under its own ``$id`` in a ``referencing.Registry``, so refs resolve the way
``kubernetes-validate`` resolves them.
"""
from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource

__all__ = ["SCHEMAS", "K8S_SCHEMA_FILES", "compose_validator", "k8s_validator", "workflow_validator"]

SCHEMAS = Path(__file__).parent / "schemas"
_COMPOSE = SCHEMAS / "check-jsonschema-0.39.0" / "compose-spec.json"
_WORKFLOW = SCHEMAS / "check-jsonschema-0.39.0" / "github-workflows.json"
_K8S = SCHEMAS / "kubernetes-v1.37.0-local-strict"
K8S_SCHEMA_FILES = {
    "CronJob": _K8S / "cronjob-batch-v1.json",
    "PersistentVolumeClaim": _K8S / "persistentvolumeclaim-v1.json",
    "ConfigMap": _K8S / "configmap-v1.json",
}


def _json(path: Path) -> dict[str, Any]:
    if path.suffix == ".gz":
        return json.loads(gzip.decompress(path.read_bytes()))
    return json.loads(path.read_text(encoding="utf-8"))


def _checked(cls: type[Validator], schema: dict[str, Any], **kwargs: Any) -> Validator:
    cls.check_schema(schema)  # the vendored file is itself a valid schema of its draft
    return cls(schema, **kwargs)


@cache
def compose_validator() -> Validator:
    """The Compose Specification schema (draft 2020-12), as docker compose v2 validates with."""
    return _checked(Draft202012Validator, _json(_COMPOSE))


@cache
def workflow_validator() -> Validator:
    """SchemaStore's github-workflow schema (draft-07)."""
    return _checked(Draft7Validator, _json(_WORKFLOW))


@cache
def _k8s_registry() -> Registry:
    definitions = _json(_K8S / "_definitions.json.gz")
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))


@cache
def k8s_validator(kind: str) -> Validator:
    """The strict (no unknown fields) schema of one Kubernetes kind; ``kind`` is a key of K8S_SCHEMA_FILES."""
    try:
        path = K8S_SCHEMA_FILES[kind]
    except KeyError:
        raise ValueError(f"no vendored Kubernetes schema for kind {kind!r}; vendored: {sorted(K8S_SCHEMA_FILES)}") from None
    return _checked(Draft202012Validator, _json(path), registry=_k8s_registry())
