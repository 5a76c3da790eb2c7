"""Fixtures for study runs: a tiny study file written per test, real local Ray, real MLflow SQLite."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import copy

import pytest
import yaml
from mlflow.tracking import MlflowClient


def tiny_study(tmp_path: Path, name: str, *, grid: dict[str, list] | None = None,
               sample: dict[str, Any] | None = None, num_samples: int = 1, **extra: Any) -> Path:  # fmt: skip
    """Write a study of tiny trials (1 base epoch, 2 trial epochs, 2 classes of 32² synthetic clips)."""
    study = {
        "name": name,
        "storage": "runs",
        "recipe": "static_base",  # one shared static base; tests of the seed's recipe pass recipe="seed"
        "data": {
            "synthetic": {"root": str(tmp_path.parent / "synth_orchestrator"), "classes": 2, "videos_per_class": 4,
                          "frames": 8, "size": 32},
            "flip": False, "num_frames": 4, "frame_stride": 2, "crop_size": 32, "batch_size": 2, "num_workers": 0,
        },
        "base": {"model": "r2plus1d_18_tiny", "epochs": 1, "optim": {"lr": 0.01}, "threads": 1},
        "trial": {"epochs": 2, "lambda_e": 0.8, "dynamic": {"search_space": 2}, "threads": 1},
        "search": {"grid": grid or {}, "sample": sample or {}, "num_samples": num_samples, "seed": 0,
                   "sampler": "tpe" if sample else "grid"},
        "objectives": {"video_top1": "max", "gflops_avg": "min"},
        "reference": {"video_top1": 0.0, "gflops_avg": 1.0},
        "resources": {"cpu_per_worker": 1, "gpu_per_worker": 0},
        "max_concurrent": 2,
        "max_failures": 0,
        **extra,
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def write_study():
    return tiny_study


def start_local_ray(num_cpus: int) -> Iterator[None]:
    """A Ray of this test module's own, offering ``num_cpus`` logical CPUs, shut down afterwards (a fixture body)."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_ray():
    yield from start_local_ray(2)


def study_dict(**changes: Any) -> dict[str, Any]:
    """A small valid study as a dict (not run: loaded and validated); top-level ``changes`` replace whole sections."""
    study = {
        "name": "t",
        "storage": "runs",
        "recipe": "static_base",
        "data": {"synthetic": {"root": "synth", "classes": 2, "videos_per_class": 4, "frames": 8, "size": 32},
                 "flip": False, "num_frames": 4, "crop_size": 32, "batch_size": 2, "num_workers": 0},
        "base": {"model": "r2plus1d_18_tiny", "epochs": 1, "seed": 7, "optim": {"lr": 0.02}},
        "trial": {"epochs": 2, "lambda_e": 0.8, "optim": {"momentum": 0.8}, "dynamic": {"search_space": 2}},
        "search": {"grid": {"dims": ["temporal", "both"]}, "sample": {"lambda_e": {"loguniform": [0.1, 4.0]}},
                   "num_samples": 2},
        "objectives": {"video_top1": "max", "gflops_avg": "min"},
        "reference": {"video_top1": 0.0, "gflops_avg": 1.0},
    }  # fmt: skip
    study.update(copy.deepcopy(changes))
    return study


def write_yaml(folder: Path, study: dict[str, Any] | str, name: str = "study.yaml") -> Path:
    """Write a study (a dict, or YAML text as it is) into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(study if isinstance(study, str) else yaml.safe_dump(study, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def make_study():
    return study_dict


@pytest.fixture(scope="session")
def write_file():
    return write_yaml


def runs_with_role(client: MlflowClient, role: str) -> list:
    """Every run tagged ``role`` (``trial``, ``base``, ``study``, …) in any experiment of ``client``'s store."""
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=f"tags.role = '{role}'")
