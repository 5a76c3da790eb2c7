"""`vared make-synthetic`: writes decodable videos and list files, refuses bad arguments with exit code 2."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import decord
import pytest

from vared_core.commands import make_synthetic


def _vared_make_synthetic(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``vared make-synthetic ARGV`` through a parser holding only this command; (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="vared")
    make_synthetic.register(parser.add_subparsers())
    args = parser.parse_args(["make-synthetic", *argv])
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_writes_lists_and_decodable_videos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "synth"
    rc, out, _ = _vared_make_synthetic(
        capsys, str(root), "--classes", "2", "--videos-per-class", "2", "--frames", "8", "--size", "32", "--seed", "3",
    )
    assert rc == 0
    train, val = root / "train.csv", root / "val.csv"
    assert train.is_file() and val.is_file() and (root / "classes.txt").is_file()
    assert (root / "classes.txt").read_text().split() == ["pan_right", "pan_left"]
    rows = []
    for path in (train, val):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    assert len(rows) == 4 and {r["label"] for r in rows} == {"0", "1"}
    for row in rows:
        video = decord.VideoReader(str(root / row["path"]))
        assert len(video) == 8
        assert video[0].shape == (32, 32, 3)

    assert f"train          2 videos  {train}" in out and f"val            2 videos  {val}" in out
    assert "pan_right, pan_left" in out and "seed 3" in out
    example = next(line for line in out.splitlines() if line.startswith("train on it:"))
    assert example.split()[3:] == [
        "vared", "train", "--model", "r2plus1d_18_tiny", "--train-list", str(train), "--val-list", str(val),
        "--epochs", "4", "--output-dir", "runs/base", "--set", "data.batch_size=2",
    ]


def test_the_appearance_cue_and_its_fade_reach_the_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "synth"
    rc, out, _ = _vared_make_synthetic(
        capsys, str(root), "--classes", "2", "--videos-per-class", "4", "--frames", "4", "--size", "32",
        "--appearance", "1", "--appearance-fast", "0.25",
    )
    assert rc == 0
    assert "cue         a class colour cast, reliability 1.00 for static clips, 0.25 for the fastest" in out
    rc, out, err = _vared_make_synthetic(
        capsys, str(tmp_path / "bad"), "--classes", "2", "--videos-per-class", "4", "--frames", "4",
        "--appearance-fast", "2",
    )
    assert rc == 2 and "appearance_fast must be in [0, 1], got 2.0" in err


def test_bad_classes_exit_2_with_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "synth"
    rc, out, err = _vared_make_synthetic(capsys, str(root), "--classes", "0", "--videos-per-class", "2", "--frames", "8")
    assert rc == 2 and out == ""
    assert err.startswith("vared make-synthetic: error:")
    assert "classes must be in [1, 21]" in err and "got 0" in err
    assert "Traceback" not in err
    assert not root.exists()  # nothing written
