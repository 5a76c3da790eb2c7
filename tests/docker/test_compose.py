"""docker/compose.yaml: valid against the published Compose Specification, and safe and complete beyond it.

Beyond the schema: published ports bind to 127.0.0.1 (or a variable defaulting to it); every service has
a healthcheck and a restart policy; ``depends_on`` waits for healthy services that exist; secrets come
only from required variables; Ray nodes and clients use token auth; the scheduler runs the nightly.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY", re.IGNORECASE)
REQUIRED_VARIABLE = re.compile(r"^\$\{\w+:\?[^}]+\}$")  # ${VAR:?message}: no default, compose stops if unset


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


# -- schema ----------------------------------------------------------------------------------------

def test_compose_file_matches_the_compose_spec(schemas, compose_raw, compose):
    validator = schemas.compose_validator()
    assert _errors(validator, compose_raw) == []
    assert _errors(validator, compose) == []  # also once variables are substituted, as compose checks it


@cache
def _compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or a standalone `docker-compose` v2, when one is installed."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    if standalone and "version v2" in subprocess.run([standalone, "version"], capture_output=True, text=True).stdout:
        return [standalone]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="docker compose v2 not installed (optional)")
def test_docker_compose_accepts_the_file(docker_dir):
    """The real parser too, every profile on, with the example settings (`config` needs no docker engine)."""
    command = [*_compose_cli(), "-f", str(docker_dir / "compose.yaml"), "--env-file", str(docker_dir / ".env.example"),
               "--profile", "gpu", "--profile", "cpu", "config", "--quiet"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_compose_schema_rejects_broken_files(schemas, compose):
    validator = schemas.compose_validator()
    unknown_key = copy.deepcopy(compose)
    unknown_key["services"]["mlflow"]["helthcheck"] = {"test": ["CMD", "true"]}
    assert any("helthcheck" in e for e in _errors(validator, unknown_key))
    bad_condition = copy.deepcopy(compose)
    bad_condition["services"]["scheduler"]["depends_on"]["mlflow"]["condition"] = "healthy"
    assert _errors(validator, bad_condition)
    bad_gpu = copy.deepcopy(compose)
    bad_gpu["services"]["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["gpus"] = 1
    assert _errors(validator, bad_gpu)


# -- ports -----------------------------------------------------------------------------------------

def unsafe_ports(services: dict[str, Any], yaml_files) -> list[str]:
    """Published ports that listen beyond 127.0.0.1 when no bind variable is set."""
    bad = []
    for name, service in services.items():
        for port in yaml_files.interpolate(service.get("ports", []), {}):
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None  # "HOST:CONTAINER" / "CONTAINER": all interfaces
            if host_ip != "127.0.0.1":
                bad.append(f"{name}: {port}")
    return bad


def test_published_ports_bind_to_localhost_by_default(compose_raw, yaml_files):
    assert unsafe_ports(compose_raw["services"], yaml_files) == []
    published = {name for name, s in compose_raw["services"].items() if s.get("ports")}
    assert published == {"mlflow", "ray-head"}  # postgres and the workers stay on the compose network


def test_port_check_catches_open_ports(yaml_files):
    services = {"a": {"ports": ["5000:5000", "0.0.0.0:1:1", "9000", {"target": 2, "published": 2},
                                "${BIND:-0.0.0.0}:4:4", "127.0.0.1:3:3", "${BIND:-127.0.0.1}:5:5",
                                {"target": 6, "published": 6, "host_ip": "127.0.0.1"}]}}  # fmt: skip
    assert unsafe_ports(services, yaml_files) == [
        "a: 5000:5000", "a: 0.0.0.0:1:1", "a: 9000", "a: {'target': 2, 'published': 2}", "a: 0.0.0.0:4:4",
    ]  # fmt: skip


# -- health, restarts, dependencies ----------------------------------------------------------------

def test_every_service_has_a_healthcheck_and_a_restart_policy(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"] != ["NONE"], f"{name}: healthcheck disabled"
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: no restart policy"


def dependency_problems(services: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        for target, spec in deps.items():
            if target not in services:
                problems.append(f"{name} -> {target}: no such service")
                continue
            if spec.get("condition") != "service_healthy":
                problems.append(f"{name} -> {target}: condition is not service_healthy")
            if not (services[target].get("healthcheck") or {}).get("test"):
                problems.append(f"{name} -> {target}: the target has no healthcheck")
            if services[target].get("profiles") and not service.get("profiles"):
                problems.append(f"{name} -> {target}: a plain `up` would not start the target (profile)")
    return problems


def test_depends_on_waits_for_healthy_services_that_exist(compose):
    assert dependency_problems(compose["services"]) == []
    assert set(compose["services"]["scheduler"]["depends_on"]) == {"ray-head", "mlflow"}
    assert set(compose["services"]["mlflow"]["depends_on"]) == {"postgres"}


def test_dependency_check_catches_bad_dependencies():
    services = {
        "a": {"depends_on": ["b", "missing"]},
        "b": {"healthcheck": {"test": ["CMD", "true"]}},
        "c": {"depends_on": {"d": {"condition": "service_healthy"}}},
        "d": {"profiles": ["gpu"]},
    }
    assert dependency_problems(services) == [
        "a -> b: condition is not service_healthy",
        "a -> missing: no such service",
        "c -> d: the target has no healthcheck",
        "c -> d: a plain `up` would not start the target (profile)",
    ]


# -- secrets and variables -------------------------------------------------------------------------

def test_secrets_come_from_required_variables(compose_raw):
    seen = set()
    for name, service in compose_raw["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                seen.add(key)
                assert REQUIRED_VARIABLE.match(str(value)), f"{name}: {key} must be ${{VAR:?...}}, not {value!r}"
    assert {"POSTGRES_PASSWORD", "PGPASSWORD", "RAY_AUTH_TOKEN"} <= seen


def test_compose_refuses_to_start_without_the_secrets(compose_raw, yaml_files, example_env):
    with pytest.raises(yaml_files.MissingVariable, match="POSTGRES_PASSWORD"):
        yaml_files.interpolate(compose_raw, {k: v for k, v in example_env.items() if k != "POSTGRES_PASSWORD"})
    with pytest.raises(yaml_files.MissingVariable, match="RAY_AUTH_TOKEN"):
        yaml_files.interpolate(compose_raw, {k: v for k, v in example_env.items() if k != "RAY_AUTH_TOKEN"})


def test_env_example_documents_every_variable(docker_dir: Path, example_env):
    compose_text = (docker_dir / "compose.yaml").read_text()
    example_text = (docker_dir / ".env.example").read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", compose_text))
    documented = set(re.findall(r"^#?\s*(\w+)=", example_text, re.MULTILINE))
    assert used <= documented, f"variables compose reads but .env.example does not mention: {used - documented}"
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    assert required <= set(example_env), "every required variable has a (placeholder) line in .env.example"


def test_no_literal_password_in_the_database_uri(compose):
    command = compose["services"]["mlflow"]["command"]
    uri = next(a.split("=", 1)[1] for a in command if a.startswith("--backend-store-uri="))
    assert re.match(r"^postgresql\+psycopg2://[^:@/]+@postgres:5432/\w+$", uri), uri  # user@host, no :password


# -- what each service runs ------------------------------------------------------------------------

def test_ray_nodes_and_clients_use_token_auth(compose):
    ray_services = [n for n, s in compose["services"].items()
                    if s.get("command", [None])[0] == "ray" or "RAY_ADDRESS" in _environment(s)]  # fmt: skip
    assert set(ray_services) == {"ray-head", "ray-worker-gpu", "ray-worker-cpu", "scheduler"}
    for name in ray_services:
        env = _environment(compose["services"][name])
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"], name


def test_ray_head_command(compose):
    head = compose["services"]["ray-head"]
    assert head["command"][:3] == ["ray", "start", "--head"]
    for flag in ("--port=6379", "--ray-client-server-port=10001", "--dashboard-host=0.0.0.0", "--num-gpus=0", "--block"):
        assert flag in head["command"], flag
    assert sorted(p.split(":", 1)[1] for p in head["ports"]) == ["10001:10001", "8265:8265"]
    assert "shared:/shared" in head["volumes"]


def test_gpu_worker_reserves_nvidia_gpus_and_uses_the_cuda_wheels(compose):
    worker = compose["services"]["ray-worker-gpu"]
    assert worker["profiles"] == ["gpu"]
    assert worker["command"] == ["ray", "start", "--address=ray-head:6379", "--block"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert worker["build"]["args"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cu128"
    assert compose["services"]["ray-head"]["build"]["args"]["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert "shared:/shared" in worker["volumes"]


def test_mlflow_server_command(compose):
    command = compose["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    for arg in ("--artifacts-destination=/mlartifacts", "--serve-artifacts", "--host=0.0.0.0", "--port=5000"):
        assert arg in command, arg
    assert "mlartifacts:/mlartifacts" in compose["services"]["mlflow"]["volumes"]


def test_scheduler_runs_the_nightly_against_the_cluster(compose):
    scheduler = compose["services"]["scheduler"]
    assert scheduler["command"] == [
        "orchestrator", "nightly", "studies/nightly.yaml", "--set", "storage=/shared/runs/nightly",
    ]  # fmt: skip
    env = _environment(scheduler)
    assert env["RAY_ADDRESS"] == "ray://ray-head:10001"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["NIGHTLY_SCHEDULE"] == "0 2 * * *"
    assert scheduler["build"]["target"] == "scheduler"
    assert "shared:/shared" in scheduler["volumes"]


def test_scheduler_image_default_job_is_the_compose_job(compose, docker_dir, dockerfile_lint):
    stage = next(s for s in dockerfile_lint.stages((docker_dir / "Dockerfile").read_text()) if s.name == "scheduler")
    cmd = next(i.args for i in reversed(stage.instructions) if i.keyword == "CMD")
    assert json.loads(cmd) == compose["services"]["scheduler"]["command"]


# -- images, builds, volumes -----------------------------------------------------------------------

def test_images_have_exact_versions(compose, repo, docker_dir):
    """Pulled images: an exact release. Built ones: the version of what is in them (pyproject, MLflow pin)."""
    version = re.search(r'^version = "([^"]+)"', (repo / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    mlflow = re.search(r"^ARG MLFLOW_VERSION=(\S+)", (docker_dir / "Dockerfile.mlflow").read_text(), re.MULTILINE).group(1)
    for name, service in compose["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert "@sha256:" in image or re.search(r"\d+\.\d+", tag), f"{name}: {image} is not an exact version"
        if repository == "vared":
            assert "build" in service and tag.startswith(f"{version}-"), f"{name}: {image} is not vared {version}"
        if repository == "vared-mlflow":
            assert tag == mlflow, f"{name}: {image} is not tagged with Dockerfile.mlflow's MLflow {mlflow}"


def test_builds_name_existing_dockerfiles_and_non_root_targets(compose, docker_dir, dockerfile_lint):
    for name, service in compose["services"].items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = (docker_dir / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        targets = (build["target"],) if "target" in build else ()
        assert dockerfile_lint.lint(dockerfile.read_text(), targets) == [], name


def test_named_volumes_are_declared(compose):
    declared = set(compose["volumes"])
    assert {"shared", "mlartifacts", "pgdata"} <= declared
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith(("/", ".", "~")):
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_shared_volume_can_become_a_host_path(compose_raw, yaml_files, example_env):
    bound = yaml_files.interpolate(compose_raw, {**example_env, "VARED_SHARED": "/srv/vared"})
    for name in ("ray-head", "ray-worker-gpu", "ray-worker-cpu", "scheduler"):
        assert "/srv/vared:/shared" in bound["services"][name]["volumes"], name
