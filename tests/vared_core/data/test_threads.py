"""Decoding works from any thread (Ray Tune runs function trainables in a thread of their own, and
decord's torch bridge is set per thread)."""
from __future__ import annotations

import threading
from pathlib import Path

import torch

from vared_core.data import make_dataset, make_synthetic


def test_items_decode_in_a_new_thread(tmp_path: Path) -> None:
    info = make_synthetic(tmp_path, classes=2, videos_per_class=2, frames=8, size=32)
    ds = make_dataset(info.train_list, train=True, num_frames=4, stride=1, size=32)
    got: dict[str, object] = {}
    worker = threading.Thread(target=lambda: got.setdefault("video", ds[0]["video"]))
    worker.start()
    worker.join()
    assert isinstance(got["video"], torch.Tensor) and got["video"].shape == (3, 4, 32, 32)
    assert ds.stats.skipped_corrupt == 0
