"""One driver per study: the lock in the study's storage, held by real processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.study_lock import LOCK_FILE, StudyLock, StudyLocked

_HOLD = """
import sys, time
from orchestrator.study_lock import StudyLock
lock = StudyLock.acquire(sys.argv[1], "s", resume=False)
print("locked", flush=True)
time.sleep(60)
"""


def _holder(storage: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(storage)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_driver_is_refused_at_once_naming_the_holder(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    try:
        t0 = time.perf_counter()
        with pytest.raises(StudyLocked, match=rf"already running \(driver pid {proc.pid} on ") as e:
            StudyLock.acquire(tmp_path, "s", resume=True)  # --resume does not take a live driver's lock either
        assert time.perf_counter() - t0 < 1.0 and str(tmp_path / LOCK_FILE) in str(e.value)
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_drivers_lock_is_stale_refused_by_a_plain_run_and_taken_over_by_resume(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    proc.kill()  # SIGKILL: no clean-up ran, the file still names the dead driver
    proc.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == proc.pid
    with pytest.raises(StudyLocked, match="stopped without finishing; continue it with --resume"):
        StudyLock.acquire(tmp_path, "s", resume=False)
    with StudyLock.acquire(tmp_path, "s", resume=True) as lock:
        assert lock.took_over["pid"] == proc.pid and f"pid {proc.pid}" in lock.describe_takeover()
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()  # finished: removed, the next plain run starts freely
    StudyLock.acquire(tmp_path, "s", resume=False).release()


def test_an_interrupted_run_keeps_its_record_for_the_next_run(tmp_path: Path) -> None:
    StudyLock.acquire(tmp_path, "s", resume=False).release(keep_record=True)
    with pytest.raises(StudyLocked, match="--resume"):
        StudyLock.acquire(tmp_path, "s", resume=False)
    lock = StudyLock.acquire(tmp_path, "s", resume=True)
    assert lock.took_over["pid"] == os.getpid()
    lock.release()


def test_a_refused_resume_gives_the_stale_record_back(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    proc.kill()
    proc.wait()
    StudyLock.acquire(tmp_path, "s", resume=True).give_back()  # e.g. a preflight check refused the run
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == proc.pid
    (tmp_path / LOCK_FILE).unlink()
    StudyLock.acquire(tmp_path, "s", resume=False).give_back()  # a fresh lock given back leaves nothing
    assert not (tmp_path / LOCK_FILE).exists()
