"""`vared train` then `vared eval` through the real console entry point's parser."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vared_core.cli import main

pytestmark = pytest.mark.slow

TINY = ["--set", "data.synthetic.classes=2", "--set", "data.synthetic.videos_per_class=4", "--set", "data.synthetic.size=32",
        "--set", "data.synthetic.frames=8", "--set", "data.num_frames=4", "--set", "data.crop_size=32",
        "--set", "data.batch_size=2", "--set", "data.num_workers=0", "--set", "data.flip=false"]  # fmt: skip


def test_train_then_eval_writes_checkpoint_report_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.set_num_threads(1)
    base = ["train", "--model", "r2plus1d_18_tiny", "--synthetic", str(tmp_path / "synth"), "--epochs", "1"]
    assert main([*base, "--output-dir", str(tmp_path / "base"), *TINY]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "video_top1" in out
    ckpt = tmp_path / "base" / "checkpoints" / "epoch_0001"
    dyn = ["train", "--model", "r2plus1d_18_tiny", "--stage", "dynamic", "--base-checkpoint", str(ckpt),
           "--synthetic", str(tmp_path / "synth"), "--epochs", "1", "--output-dir", str(tmp_path / "dyn"), *TINY]  # fmt: skip
    assert main(dyn) == 0
    assert main(["eval", str(tmp_path / "dyn" / "checkpoints" / "epoch_0001"), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["num_videos"] == 2 and len(report["layer_names"]) == 16  # R(2+1)D-18's spatial convs
    for png in ("heatmap.png", "cost_histogram.png"):
        assert (tmp_path / "ev" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_reports_config_errors_by_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: r2plus1d_18_tiny\nepochs: two\noutput_dir: x\ndata: {synthetic: {root: s}}\n")
    assert main(["train", str(bad)]) == 2
    assert "bad.yaml: epochs" in capsys.readouterr().err
