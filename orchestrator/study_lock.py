"""One driver per study: a lock file in the study's storage, held while `run_study` runs.

``<storage>/driver.lock`` is locked with ``flock`` for the driver's lifetime and says who holds it (pid,
host, start time, study). The operating system drops the lock when the driver dies, however it dies, so
a second ``orchestrator run`` of a running study is refused at once (`StudyLocked`, naming the holder),
and a lock left behind by a killed driver is recognised as stale: ``--resume`` takes it over (and says
so); a plain run refuses it, since the storage holds an unfinished run that only ``--resume`` continues.
A driver that finishes removes the file; one that is interrupted or fails after it started keeps its
record in it (unlocked), so the next plain run points at ``--resume`` too.

``flock`` holds between processes of one machine; on a shared file system (NFS) locks between hosts
depend on the server. Run a study's driver from one machine.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "StudyLock", "StudyLocked"]

LOCK_FILE = "driver.lock"


class StudyLocked(RuntimeError):
    """Another driver runs this study, or a dead one left it unfinished (without ``--resume``)."""


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}"


class StudyLock:
    """The held lock of one study's storage; `release` (or leaving the ``with`` block) gives it up."""

    def __init__(self, path: Path, fd: int, took_over: dict[str, Any] | None) -> None:
        self.path = path
        self._fd: int | None = fd
        #: what the stale lock taken over by ``--resume`` said (None when there was none)
        self.took_over = took_over

    @classmethod
    def acquire(cls, storage: str | os.PathLike[str], study: str, *, resume: bool) -> StudyLock:
        """Lock ``storage`` for this process (see the module doc).

        Raises:
            StudyLocked: a live driver holds the lock, or (without ``resume``) a dead one left it.
        """
        path = Path(storage) / LOCK_FILE
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise StudyLocked(
                    f"{path}: study {holder.get('study', study)!r} is already running (driver "
                    f"{_describe(holder)}); wait for it to finish or stop it before starting another driver"
                ) from None
            if path.exists() and os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)  # locked a file its holder removed on release meanwhile: lock the current one
        holder = _read(fd)
        if holder and not resume:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise StudyLocked(
                f"{path}: the last driver of study {holder.get('study', study)!r} ({_describe(holder)}) stopped "
                f"without finishing; continue it with --resume, or delete {path} to start over in this storage"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                  "study": study}).encode(), 0)  # fmt: skip
        os.fsync(fd)
        return cls(path, fd, holder or None)

    def release(self, *, keep_record: bool = False) -> None:
        """Unlock, and remove the lock file unless ``keep_record`` (a run interrupted or failed: the next
        plain run is told to ``--resume``). Idempotent."""
        if self._fd is None:
            return
        if not keep_record:
            self.path.unlink(missing_ok=True)  # while still locked: no other driver can hold a file we delete
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def give_back(self) -> None:
        """Release as if this driver had never taken the lock: a stale record taken over is written back
        (a run refused before it started leaves the storage as it found it)."""
        if self._fd is not None and self.took_over:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(self.took_over).encode(), 0)
        self.release(keep_record=bool(self.took_over))

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def describe_takeover(self) -> str | None:
        """A line saying whose stale lock ``--resume`` took over, or None."""
        if not self.took_over:
            return None
        return f"took over the lock of a driver that is no longer running ({_describe(self.took_over)})"


def _read(fd: int) -> dict[str, Any]:
    raw = os.pread(fd, 4096, 0)
    try:
        holder = json.loads(raw.decode()) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        holder = {"pid": "?", "host": "?"}  # a lock file of unknown content still counts as a lock
    return holder if isinstance(holder, dict) else {}
