"""A study on a real two-node Ray cluster on 127.0.0.1: `ray start --head` plus a second `ray start
--address` node, each with one CPU, so the study's trials must be placed on both."""
from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.validation import load_study

from .conftest import runs_with_role

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ids(address: str, env: dict[str, str]) -> set[str]:
    out = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True, timeout=60)
    return set(re.findall(r"node_([0-9a-f]{40,})", out.stdout))


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each node's process group (ray start --block and the raylet/GCS it started), SIGKILL stragglers."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5  # a node that has not stopped by then is killed with its whole group
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], set[str]]]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # a cluster-private token: every node and the driver must present it (Ray's token authentication)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> None:
        procs.append(subprocess.Popen([RAY, "start", *args, *common], env=env, start_new_session=True,
                                      stdout=open(tmp_path / log, "w"), stderr=subprocess.STDOUT))  # fmt: skip

    try:
        start(["--head", f"--port={port}", "--include-dashboard=false", '--resources={"head_node": 1}'], "head.log")
        nodes: set[str] = set()
        deadline = time.monotonic() + 90
        while not nodes and time.monotonic() < deadline:
            time.sleep(1)
            nodes = _node_ids(address, env)
        assert nodes, "the head node did not come up: " + (tmp_path / "head.log").read_text()[-2000:]
        start([f"--address={address}", '--resources={"second_node": 1}'], "worker.log")
        while len(nodes) < 2 and time.monotonic() < deadline:
            time.sleep(1)
            nodes = _node_ids(address, env)
        assert len(nodes) == 2, "the second node did not join: " + (tmp_path / "worker.log").read_text()[-2000:]
        yield address, env, nodes
    finally:
        _stop(procs)
        current = Path("/tmp/ray/ray_current_cluster")  # what `ray stop` would remove: later ray.init()s look here
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def test_a_study_runs_on_both_nodes_of_a_cluster(tmp_path: Path, write_study, two_nodes) -> None:
    address, env, nodes = two_nodes
    path = write_study(tmp_path, "cluster", grid={"dims": ["temporal", "channel", "both", "none"]}, max_concurrent=2)
    # validate checks resources against the cluster it is pointed at (two nodes of one CPU each)
    too_big = write_study(tmp_path, "too_big", resources={"workers": 3, "cpu_per_worker": 1})
    check = subprocess.run([ORCHESTRATOR, "validate", str(path), str(too_big), "--address", address], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 2 and check.stdout.strip() == f"{path}: ok", check.stdout + check.stderr[-2000:]
    assert (f"{too_big}: resources: 3 worker(s) × 1 CPU = 3 CPU, but the Ray cluster at {address} has 2 CPU"
            in check.stderr), check.stderr[-2000:]
    run = subprocess.run([ORCHESTRATOR, "run", str(path), "--address", address, "--verbose", "0"], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    study = load_study(path)
    client = MlflowClient(study.tracking_uri())
    trials = runs_with_role(client, "trial")
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
    (base,) = runs_with_role(client, "base")
    placed = {t.data.tags["ray.node_id"] for t in [base, *trials]}
    # one CPU per node: the first trial actor starts on the node the base task leaves free; once the base is
    # done, the second lands on the other node (unless the first actor has run every short trial by then)
    assert placed == nodes
