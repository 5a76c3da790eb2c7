"""Session-wide synthetic videos for the data tests (real H.264 mp4s, written once per session)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vared_core.data import SyntheticInfo, make_synthetic, write_mp4


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SyntheticInfo:
    """4 classes × 24 videos × 16 frames at 56×40 (non-square, so left/centre/right crops differ).

    Large enough for the learnability test (72 train / 24 val videos), small enough to write in ~1–2 s.
    """
    root = tmp_path_factory.mktemp("synth")
    return make_synthetic(root, classes=4, videos_per_class=24, frames=16, size=40, width=56, height=40, seed=0)


@pytest.fixture(scope="session")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-frame 64×48 mp4 whose frame i is filled with grey level 40·i + 20 (frames are easy to tell apart)."""
    path = tmp_path_factory.mktemp("short") / "short.mp4"
    frames = np.stack([np.full((48, 64, 3), 40 * i + 20, np.uint8) for i in range(5)])
    write_mp4(path, frames, fps=10)
    return path


@pytest.fixture()
def bad_list(synth: SyntheticInfo, tmp_path: Path) -> Path:
    """A CSV list: 6 good videos, plus a missing file, a corrupt (non-video) file and a truncated mp4.

    Rows (1-based lines): 1 header, 2–3 good, 4 missing, 5 good, 6 corrupt, 7 good, 8 truncated, 9–10 good.
    """
    good = [line.split(",")[0] for line in synth.train_list.read_text().splitlines()[1:7]]
    good_abs = [synth.root / g for g in good]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video file\n" * 200)
    truncated = tmp_path / "truncated.mp4"
    data = good_abs[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.mp4"
    rows = [
        (good_abs[0], 0), (good_abs[1], 0), (missing, 1), (good_abs[2], 0), (corrupt, 2), (good_abs[3], 0),
        (truncated, 3), (good_abs[4], 0), (good_abs[5], 0),
    ]
    path = tmp_path / "with_bad.csv"
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    shutil.copy(synth.classes_file, tmp_path / "classes.txt")
    return path
