"""`vared flops`: static GFLOPs equal the library's count, dynamic policies are costed, bad input exits 2."""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator

import pytest
import torch

from vared_core import build_model, get_model_cfg, static_gflops
from vared_core.commands import flops


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny clips on a small shared machine: one intra-op thread keeps each forward fast and steady."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _vared_flops(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``vared flops ARGV`` through a parser holding only this command; (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="vared")
    flops.register(parser.add_subparsers())
    args = parser.parse_args(["flops", *argv])
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_static_gflops_equal_the_library_count(capsys: pytest.CaptureFixture[str]) -> None:
    expected = static_gflops(build_model("r2plus1d_18_tiny", 400, num_frames=8, crop_size=64), (3, 8, 64, 64))

    rc, out, _ = _vared_flops(capsys, "--model", "r2plus1d_18_tiny", "--frames", "8", "--size", "64", "--json")
    report = json.loads(out)
    assert rc == 0
    assert report["model"] == "r2plus1d_18_tiny" and report["clip_shape"] == [3, 8, 64, 64]
    assert report["static_gflops"] == pytest.approx(expected, rel=1e-12)
    assert report["params"] == sum(p.numel() for p in build_model("r2plus1d_18_tiny", 400).parameters())
    assert "policies" not in report

    rc, out, _ = _vared_flops(capsys, "--model", "r2plus1d_18_tiny", "--frames", "8", "--size", "64")
    assert rc == 0
    assert f"{expected:.4g}" in out and f"{report['params']:,}" in out


def test_clip_defaults_come_from_the_model_cfg(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _vared_flops(capsys, "--model", "x3d_m_tiny", "--json")
    assert rc == 0
    assert tuple(json.loads(out)["clip_shape"]) == get_model_cfg("x3d_m_tiny").test_clip_shape


def test_dynamic_costs_every_pinned_policy(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _vared_flops(capsys, "--model", "r2plus1d_18_tiny", "--frames", "8", "--size", "64", "--dynamic", "--json")
    report = json.loads(out)
    assert rc == 0
    static = report["static_gflops"]
    policies = {(p["temporal"], p["channel"]): p for p in report["policies"]}
    assert sorted(policies) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # S_t × S_c rows
    full, least = policies[0, 0]["gflops"], policies[1, 1]["gflops"]
    assert static <= full <= 1.02 * static  # the full policy: the static network plus the gates
    assert least < min(policies[0, 1]["gflops"], policies[1, 0]["gflops"]) < full
    for p in report["policies"]:
        assert p["fraction"] == pytest.approx(p["gflops"] / static)
    assert report["dynamic_params"] > report["params"]  # gates and cheap operations

    rc, out, _ = _vared_flops(capsys, "--model", "r2plus1d_18_tiny", "--frames", "8", "--size", "64", "--dynamic")
    assert rc == 0
    rows = [line for line in out.splitlines() if "frame " in line and "channels" in line]
    assert len(rows) == 4
    assert "1: every 2nd frame" in rows[-1] and "1: 1/2 channels" in rows[-1]
    assert f"{least:.4g}" in rows[-1] and f"{least / static:.1%}" in rows[-1]


def test_dynamic_one_dimension_larger_search_space(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _vared_flops(
        capsys, "--model", "x3d_m_tiny", "--dynamic", "--search-space", "3", "--dims", "channel", "--json",
    )
    report = json.loads(out)
    assert rc == 0
    assert [(p["temporal"], p["channel"]) for p in report["policies"]] == [(0, 0), (0, 1), (0, 2)]
    costs = [p["gflops"] for p in report["policies"]]
    assert costs[0] >= report["static_gflops"] > costs[1] > costs[2]


def test_unknown_model_exits_2_listing_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _vared_flops(capsys, "--model", "r2plus1d_19")
    assert rc == 2 and out == ""
    assert "unknown model 'r2plus1d_19'" in err and "r2plus1d_18_tiny" in err and "x3d_m" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "0"], "crop_size must be a positive integer, got 0"),
        (["--frames", "-1"], "num_frames must be a positive integer, got -1"),
        (["--num-classes", "0"], "num_classes must be a positive integer, got 0"),
        (["--width", "0"], "width must be > 0"),
        (["--dynamic", "--search-space", "0"], "search_space must be an integer >= 1"),
    ],
)
def test_invalid_numbers_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, out, err = _vared_flops(capsys, "--model", "r2plus1d_18_tiny", *argv)
    assert rc == 2 and out == ""
    assert err.startswith("vared flops: error:") and message in err
