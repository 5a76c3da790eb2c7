"""No secret value is written in any file under docker/: a password, token or secret is always a reference
(``${VAR}``, ``$(VAR)``, ``${{ secrets.X }}``, a secretKeyRef) or, in ``.env.example``, a placeholder; and the
real ``docker/.env`` is git-ignored.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# NAME=value or NAME: value, where NAME mentions a password, secret or token and is not itself inside
# a ${...} reference (compose's "${RAY_AUTH_TOKEN:?message}" is a reference, not an assignment).
ASSIGNMENT = re.compile(
    r"(?<![\w${.])(?P<key>\w*(?:PASSWORD|SECRET|TOKEN)\w*)[\"']?\s*(?::|=)(?!=)\s*"
    r"""(?P<value>\$\{\{.*?\}\}|\$\{[^}]*\}|"[^"]*"|'[^']*'|<[^>]*>|[^\s#,]*)""",
    re.IGNORECASE,
)
REFERENCE = re.compile(r"""^["']?(?:\$\{\{\s*secrets\.\w+\s*\}\}|\$\{\w+(?::?[-?+][^}]*)?\}|\$\(\S+\)|\$\w+)["']?$""")
PLACEHOLDER = re.compile(r"^(?:change-me\S*|<[^>]+>|\.\.\.)$")


def literal_secrets(text: str, *, placeholders: bool = False) -> list[str]:
    """Lines that assign a literal to a secret-looking name (``placeholders``: allow change-me / <...>)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in ASSIGNMENT.finditer(line):
            key, value = m.group("key"), m.group("value")
            if re.fullmatch(r"[A-Za-z][a-z]*", key):
                continue  # a plain word in prose ("the token: ..."), not a variable name
            if not value or value in ("|", ">", "true", "false") or REFERENCE.match(value):
                continue  # empty (a YAML block such as valueFrom follows), a flag, or a reference
            if placeholders and PLACEHOLDER.match(value):
                continue
            found.append(f"{number}: {key}={value}")
    return found


def _text_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".env":  # the real .env is local and git-ignored
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def test_no_literal_secret_in_any_docker_file(docker_dir):
    files = _text_files(docker_dir)
    assert {f.name for f in files} >= {"compose.yaml", "Dockerfile", ".env.example", "nightly-cronjob.yaml", "README.md"}
    problems = {}
    for path in files:
        found = literal_secrets(path.read_text(encoding="utf-8"), placeholders=path.name in (".env.example", "README.md"))
        if found:
            problems[str(path.relative_to(docker_dir))] = found
    assert problems == {}


def test_env_example_holds_only_placeholders(docker_dir):
    text = (docker_dir / ".env.example").read_text()
    secrets = dict(re.findall(r"^(\w*(?:PASSWORD|TOKEN|SECRET)\w*)=(.*)$", text, re.MULTILINE))
    assert set(secrets) == {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"}
    assert all(value == "change-me" for value in secrets.values()), secrets


def test_secret_scan_catches_literals():
    text = """\
POSTGRES_PASSWORD=hunter2
  RAY_AUTH_TOKEN: "0123456789abcdef"
--set mlflow_token=abc
PGPASSWORD: ${POSTGRES_PASSWORD:?set it}
RAY_AUTH_TOKEN: ${{ secrets.RAY_AUTH_TOKEN }}
storage=$(NIGHTLY_STORAGE) token="$RAY_AUTH_TOKEN"
RAY_AUTH_TOKEN: ${RAY_AUTH_TOKEN:?set RAY_AUTH_TOKEN in docker/.env}
POSTGRES_PASSWORD=change-me
# the token: a comment in prose; automountServiceAccountToken: false
"""
    assert literal_secrets(text) == [
        "1: POSTGRES_PASSWORD=hunter2",
        '2: RAY_AUTH_TOKEN="0123456789abcdef"',
        "3: mlflow_token=abc",
        "8: POSTGRES_PASSWORD=change-me",
    ]
    assert literal_secrets(text, placeholders=True)[-1] == "3: mlflow_token=abc"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_the_real_env_file_is_git_ignored(repo):
    inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=repo, capture_output=True, text=True)
    if inside.returncode != 0:
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=repo)
    assert result.returncode == 0, "docker/.env must be git-ignored (docker/.gitignore)"
