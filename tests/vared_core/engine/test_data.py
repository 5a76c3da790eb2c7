"""`ensure_synthetic`: a synthetic set is written once, found again by its parameters, refused when they differ."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vared_core.engine import SyntheticData, ensure_synthetic

_SMALL = dict(classes=2, videos_per_class=4, frames=4, size=32, seed=0)


def test_a_set_is_written_once_and_reused(tmp_path: Path) -> None:
    spec = SyntheticData(root=tmp_path / "synth", **_SMALL)
    train, val = ensure_synthetic(spec)
    assert train.read_text().count("\n") == 1 + 6 and val.read_text().count("\n") == 1 + 2
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "synth").rglob("*.mp4")}
    assert ensure_synthetic(spec) == (train, val)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not written again
    marker = json.loads((tmp_path / "synth" / "synthetic.json").read_text())
    assert "appearance" not in marker and "cue_version" not in marker  # a set without the cue, as before it existed


def test_other_parameters_are_refused_by_field(tmp_path: Path) -> None:
    ensure_synthetic(SyntheticData(root=tmp_path / "synth", **_SMALL))
    with pytest.raises(ValueError, match=r"data\.synthetic\.root: .*synth holds a synthetic set with other parameters"
                                         r".*'frames': \(4, 6\)"):
        ensure_synthetic(SyntheticData(root=tmp_path / "synth", **{**_SMALL, "frames": 6}))


def test_a_cue_set_records_how_its_cue_was_drawn_and_an_older_one_is_refused(tmp_path: Path) -> None:
    spec = SyntheticData(root=tmp_path / "synth", appearance=1.0, appearance_fast=0.0, **_SMALL)
    ensure_synthetic(spec)
    marker_file = tmp_path / "synth" / "synthetic.json"
    marker = json.loads(marker_file.read_text())
    assert marker["appearance"] == 1.0 and marker["appearance_fast"] == 0.0 and marker["cue_version"] == 2
    del marker["cue_version"], marker["appearance_fast"]  # what a set of the first cue recorded
    marker_file.write_text(json.dumps(marker))
    with pytest.raises(ValueError, match=r"other parameters .*'cue_version': \(None, 2\)"):
        ensure_synthetic(spec.model_copy(update={"appearance_fast": None}))
