"""Fixtures for the tests of ``docker/``: the parsed files, schema validators and the Dockerfile linter.

The helpers live in sibling modules (``yaml_files``, ``vendored_schemas``, ``dockerfile_lint``). Tests run
with ``--import-mode=importlib``, which puts no test folder on ``sys.path``, so they are loaded here by
file path and handed to tests as fixtures. No test needs the network or a docker engine.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]
DOCKER = REPO / "docker"


def _load(name: str) -> ModuleType:
    qualified = f"_vared_tests_docker_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[qualified]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def docker_dir() -> Path:
    return DOCKER


@pytest.fixture(scope="session")
def yaml_files() -> ModuleType:
    return _load("yaml_files")


@pytest.fixture(scope="session")
def schemas() -> ModuleType:
    return _load("vendored_schemas")


@pytest.fixture(scope="session")
def dockerfile_lint() -> ModuleType:
    return _load("dockerfile_lint")


@pytest.fixture(scope="session")
def compose_raw(yaml_files) -> dict[str, Any]:
    """docker/compose.yaml as written (variables not substituted)."""
    return yaml_files.load_yaml(DOCKER / "compose.yaml")


@pytest.fixture(scope="session")
def example_env(yaml_files) -> dict[str, str]:
    """docker/.env.example: what a user has after `cp docker/.env.example docker/.env`."""
    return yaml_files.read_env_file(DOCKER / ".env.example")


@pytest.fixture(scope="session")
def compose(yaml_files, compose_raw, example_env) -> dict[str, Any]:
    """docker/compose.yaml as docker compose sees it with docker/.env copied from the example."""
    return yaml_files.interpolate(compose_raw, example_env)
