"""A small Dockerfile parser and the rules the vared images keep; plus a ``.dockerignore`` matcher.

    problems = lint(Path("docker/Dockerfile").read_text())       # [] when every rule holds
    python tests/docker/dockerfile_lint.py docker/Dockerfile      # the same from a shell

Rules (each problem is reported as ``line N: ...``):

* every ``FROM`` names an exact image: a tag other than ``latest``, or a ``@sha256:`` digest (global ``ARG``
  defaults are substituted first; a FROM of an earlier stage inherits that stage);
* the final stage, and any stage named in ``targets``, runs as a non-root ``USER`` (an external base
  image is taken to run as root);
* ``pip install`` passes ``--no-cache-dir`` unless ``PIP_NO_CACHE_DIR`` is set in the stage's ``ENV``;
* ``apt-get install`` comes after ``apt-get update`` in the same ``RUN``, uses ``--no-install-recommends``,
  and the same ``RUN`` ends by removing ``/var/lib/apt/lists/*``;
* anything fetched with ``curl``/``wget`` is checked in the same ``RUN`` (``sha256sum -c``, ``sha1sum -c``,
  ``sha512sum -c`` or ``gpg --verify``); a remote ``ADD`` carries ``--checksum=``.

``DockerIgnore`` follows Docker's rules: patterns in order, the last match wins, ``!`` re-includes, a
pattern that matches a folder matches everything under it, ``*`` stays within one path segment, ``**``
spans any number.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DockerIgnore", "Instruction", "Stage", "lint", "parse", "stages"]


@dataclass(frozen=True)
class Instruction:
    line: int        # 1-based line of the instruction's first line
    keyword: str     # upper case: FROM, RUN, ...
    args: str        # the rest, continuation lines joined, inline comment lines dropped


@dataclass
class Stage:
    name: str | None
    base: str                         # the image (ARGs substituted) or an earlier stage's name
    line: int
    parent: Stage | None = None       # when ``base`` is an earlier stage
    instructions: list[Instruction] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """ENV in force at the end of the stage, inherited from a parent stage."""
        env = self.parent.env() if self.parent else {}
        for ins in self.instructions:
            if ins.keyword == "ENV":
                env.update(_env_pairs(ins.args))
        return env

    def user(self) -> str:
        """The USER in force at the end of the stage ("root" for an external base image that sets none)."""
        user = self.parent.user() if self.parent else "root"
        for ins in self.instructions:
            if ins.keyword == "USER":
                user = ins.args.strip()
        return user


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):          # a comment line inside a continuation is dropped
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(part for part in buf if part)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buf = []
    if buf:
        raise ValueError(f"line {start}: the file ends inside a continued instruction")
    return out


def _substitute_args(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def _env_pairs(args: str) -> dict[str, str]:
    if "=" not in args.split(" ", 1)[0]:             # legacy form: ENV KEY value
        key, _, value = args.partition(" ")
        return {key: value.strip()}
    return {k: v.strip("\"'") for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|'[^']*'|\S+)", args)}


def stages(text: str) -> list[Stage]:
    """The build stages in order, each with its instructions."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    by_name: dict[str, Stage] = {}
    for ins in parse(text):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            base = _substitute_args(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stage = Stage(name, base, ins.line, parent=by_name.get(base))
            result.append(stage)
            if name:
                by_name[name] = stage
        elif not result:
            if ins.keyword == "ARG":
                key, _, default = ins.args.partition("=")
                global_args[key.strip()] = default.strip().strip("\"'")
        else:
            result[-1].instructions.append(ins)
    if not result:
        raise ValueError("no FROM instruction")
    return result


def _is_root(user: str) -> bool:
    return user.split(":")[0] in ("root", "0")


def _pinned(image: str) -> bool:
    if image == "scratch" or "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and "$" not in image


_SEGMENT = re.compile(r"&&|\|\||;|\|")
_DOWNLOAD = re.compile(r"\b(?:curl|wget)\b.*\bhttps?://")
_CHECKSUM = re.compile(r"sha(?:1|256|512)sum\s+(?:-c|--check)\b|gpg\s+--verify")


def _lint_run(ins: Instruction, env: dict[str, str]) -> list[str]:
    problems = []
    segments = [s.strip() for s in _SEGMENT.split(ins.args)]
    for seg in segments:
        if re.search(r"\bpip3?\s+install\b", seg) and "--no-cache-dir" not in seg and not env.get("PIP_NO_CACHE_DIR"):
            problems.append(f"line {ins.line}: pip install without --no-cache-dir (or ENV PIP_NO_CACHE_DIR=1): {seg!r}")
        if re.search(r"\bapt-get\s+(?:-\S+\s+)*install\b", seg) and "--no-install-recommends" not in seg:
            problems.append(f"line {ins.line}: apt-get install without --no-install-recommends: {seg!r}")
    installs = [i for i, s in enumerate(segments) if re.search(r"\bapt-get\s+(?:-\S+\s+)*install\b", s)]
    if installs:
        updates = [i for i, s in enumerate(segments) if re.search(r"\bapt-get\s+update\b", s)]
        cleanups = [i for i, s in enumerate(segments) if re.search(r"rm\s+-(?:rf|fr)\s+/var/lib/apt/lists/\*", s)]
        if not updates or min(updates) > installs[0]:
            problems.append(f"line {ins.line}: apt-get install without apt-get update before it in the same RUN")
        if not cleanups or max(cleanups) < installs[-1]:
            problems.append(f"line {ins.line}: apt-get install without rm -rf /var/lib/apt/lists/* after it in the same RUN")
    if any(_DOWNLOAD.search(seg) for seg in segments) and not _CHECKSUM.search(ins.args):
        problems.append(f"line {ins.line}: a download (curl/wget) with no checksum check (sha256sum -c, ...) "
                        "in the same RUN")  # fmt: skip
    return problems


def lint(text: str, targets: tuple[str, ...] = ()) -> list[str]:
    """Every rule the module docstring lists; ``targets``: stage names that are built and run as images."""
    problems: list[str] = []
    all_stages = stages(text)
    for stage in all_stages:
        if stage.parent is None and not _pinned(stage.base):
            problems.append(f"line {stage.line}: FROM {stage.base} is not pinned (exact tag other than latest, or a digest)")
        env = stage.parent.env() if stage.parent else {}
        for ins in stage.instructions:
            if ins.keyword == "ENV":
                env.update(_env_pairs(ins.args))
            elif ins.keyword == "RUN":
                problems.extend(_lint_run(ins, env))
            elif ins.keyword == "ADD" and re.search(r"https?://", ins.args) and "--checksum=" not in ins.args:
                problems.append(f"line {ins.line}: ADD of a URL without --checksum=")
    names = {s.name: s for s in all_stages if s.name}
    missing = [t for t in targets if t not in names]
    if missing:
        problems.append(f"build targets {missing} are not stages of this Dockerfile (stages: {sorted(names)})")
    for stage in {id(s): s for s in [all_stages[-1], *(names[t] for t in targets if t in names)]}.values():
        if _is_root(stage.user()):
            problems.append(f"line {stage.line}: stage {stage.name or '(final)'} runs as root (USER {stage.user()}); "
                            "set a non-root USER")  # fmt: skip
    return problems


class DockerIgnore:
    """``DockerIgnore(text).excludes("path/in/context")``: whether the build context leaves the path out."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.strip("/")
            self.rules.append((negate, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = [], 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            elif pattern.startswith("**", i):
                out.append(".*")
                i += 2
            elif pattern[i] == "*":
                out.append("[^/]*")
                i += 1
            elif pattern[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(pattern[i]))
                i += 1
        return "^" + "".join(out) + "$"

    def excludes(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and every folder above it
        excluded = False
        for negate, rx in self.rules:
            if any(rx.match(c) for c in candidates):
                excluded = not negate
        return excluded


if __name__ == "__main__":
    status = 0
    for arg in sys.argv[1:]:
        for problem in lint(Path(arg).read_text(encoding="utf-8")):
            print(f"{arg}: {problem}")
            status = 1
    sys.exit(status)
