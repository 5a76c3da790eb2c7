"""Reading the YAML files under ``docker/`` the way their tools read them.

* ``load_yaml`` / ``load_yaml_all``: YAML with 1.2 booleans. PyYAML follows YAML 1.1, where ``on``, ``off``,
  ``yes`` and ``no`` are booleans; GitHub Actions, docker compose and kubectl read them as strings (a
  workflow's ``on:`` key would otherwise become ``True``).
* ``interpolate``: docker compose's variable substitution (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
  ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}``, ``$VAR``, ``$$``), applied to every
  string of a parsed document.
* ``read_env_file``: ``KEY=VALUE`` lines of a compose ``.env`` file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MissingVariable", "interpolate", "load_yaml", "load_yaml_all", "read_env_file"]


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false (any case), as in YAML 1.2."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(source: str | Path) -> Any:
    """One YAML document, from a path or from text."""
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_all(source: str | Path) -> list[Any]:
    """Every non-empty document of a multi-document YAML stream."""
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    return [doc for doc in yaml.load_all(text, Loader=_Yaml12Loader) if doc is not None]  # noqa: S506


class MissingVariable(KeyError):
    """A ``${VAR:?message}`` / ``${VAR?message}`` whose variable is unset (compose refuses to start)."""


_VARIABLE = re.compile(
    r"\$\$"                                                    # escaped dollar
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?+])(?P<arg>(?:[^{}]|\{[^{}]*\})*))?\}"   # ${VAR}, ${VAR:-x}, ${VAR?x}, ...
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"                     # $VAR
)


def _substitute(text: str, env: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("bare"):
            return env.get(m.group("bare"), "")
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value
        missing = unset_or_empty if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return _substitute(arg, env) if missing else value  # type: ignore[return-value]
        if op in (":?", "?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return value  # type: ignore[return-value]
        if op in (":+", "+"):
            return "" if missing else _substitute(arg, env)
        return value or ""

    return _VARIABLE.sub(one, text)


def interpolate(doc: Any, env: dict[str, str]) -> Any:
    """``doc`` with compose's variable substitution applied to every string (keys stay as written)."""
    if isinstance(doc, str):
        return _substitute(doc, env)
    if isinstance(doc, dict):
        return {k: interpolate(v, env) for k, v in doc.items()}
    if isinstance(doc, list):
        return [interpolate(v, env) for v in doc]
    return doc


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments skipped, no quoting rules needed here."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}: {line!r} is not KEY=VALUE")
            env[key.strip()] = value.strip()
    return env
