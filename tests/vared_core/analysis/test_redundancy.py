"""Feature-map redundancy (seed appendix B.1): the hooked analysis, its report and `vared redundancy`."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vared_core import DynamicSpec, build_model
from vared_core.analysis import (
    DimRedundancy,
    RedundancyReport,
    analyze_redundancy,
)
from vared_core.commands import redundancy as redundancy_cmd


def _identity() -> nn.Module:
    """A model whose one analysed module ('0') outputs its input: the analysis sees crafted feature maps."""
    return nn.Sequential(nn.Identity())


def _static(clips: int, frames: int = 8, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(clips, 3, 1, size, size, generator=g).expand(-1, -1, frames, -1, -1).contiguous()


def _noise(clips: int, frames: int = 8, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(clips, 3, frames, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------- the analysis
def _crafted_clip() -> torch.Tensor:
    """(1, 2, 4, 8, 8): per channel frame1 = 2·frame0 (CC 1, RMSE > 0), frame2 = frame1 (RMSE 0),
    frame3 independent noise; channel 1 = −channel 0 (CC −1)."""
    g = torch.Generator().manual_seed(5)
    f0 = torch.randn(8, 8, generator=g)
    ch = torch.stack([f0, 2 * f0, 2 * f0, torch.randn(8, 8, generator=g)])
    return torch.stack([ch, -ch]).unsqueeze(0)


def test_crafted_mix_gives_known_rp_per_clip_and_layer() -> None:
    clip = _crafted_clip()
    report = analyze_redundancy(_identity(), [torch.cat([clip, _noise(1, 4, 8)[:, :2]])], layers=["0"])
    (layer,) = report.layers
    assert layer.name == "0" and layer.kind == "Identity" and layer.shape == (2, 4, 8, 8)
    assert layer.time.num_pairs == 2 * 3 and layer.channel.num_pairs == 4 * 1
    # clip 0, time: per channel pairs (0,1) redundant, (1,2) identical → RMSE 0 → not, (2,3) CC ≈ 0 → not
    assert layer.time.rp[0].item() == pytest.approx(1 / 3)
    assert layer.channel.rp[0].item() == 0.0 and layer.channel.cc[0].item() == pytest.approx(-1.0)
    assert layer.time.rp[1].item() == 0.0  # noise clip
    without_rmse = analyze_redundancy(_identity(), [clip], layers=["0"], rmse_threshold=None)
    assert without_rmse.layers[0].time.rp[0].item() == pytest.approx(2 / 3)
    assert report.average("time")["rp"] == pytest.approx((1 / 3 + 0) / 2)


def test_static_video_is_more_temporally_redundant_than_noise() -> None:
    torch.manual_seed(0)
    net = build_model("r2plus1d_18_tiny", num_classes=4)
    kw = {"layers": ["stem.*", "layer1.0.conv1.*"], "rmse_threshold": None}
    static = analyze_redundancy(net, [_static(2)], **kw)
    noise = analyze_redundancy(net, [_noise(2)], **kw)
    assert [l.name for l in static.layers] == ["stem.0", "stem.3", "layer1.0.conv1.0.0", "layer1.0.conv1.0.3"]
    for s, n in zip(static.layers[:2], noise.layers[:2]):  # the first conv layers
        assert s.time.mean("cc") > n.time.mean("cc") + 0.3, s.name
        assert s.time.mean("rp") > n.time.mean("rp"), s.name
    # stem.0 is a 1×k×k spatial conv: identical input frames give identical output frames
    assert static.layers[0].time.mean("cc") == pytest.approx(1.0) and static.layers[0].time.mean("rmse") < 1e-6
    assert static.average("time")["cc"] > noise.average("time")["cc"]
    # in one batch, the static clip is found as the most temporally redundant (Figure B-1)
    mixed = analyze_redundancy(net, [torch.cat([_noise(1), _static(1)])], **kw)
    assert mixed.extremes("time", "cc")["most"][0][0] == 1 and mixed.extremes("time", "cc")["least"][0][0] == 0


def test_time_folded_2d_net_is_unfolded_per_clip() -> None:
    net = build_model("tsn_resnet50_tiny", num_classes=4)
    report = analyze_redundancy(net, [_static(2, seed=3)], layers=["conv1", "layer1.0.conv*"])
    assert [l.name for l in report.layers] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"]
    assert report.layers[0].shape == (16, 8, 32, 32)
    # each clip's frames are identical and 2D convs work frame by frame: a wrong unfolding would mix clips
    for layer in report.layers:
        torch.testing.assert_close(layer.time.cc, torch.ones(2, dtype=torch.float64))
        assert layer.time.rmse.max().item() < 1e-6 and layer.time.rp.max().item() == 0.0  # RMSE rule (sic)
    explicit = analyze_redundancy(net, [_static(2, seed=3)], layers=["conv1"], num_frames=8)
    torch.testing.assert_close(explicit.layers[0].channel.cc, report.layers[0].channel.cc)


def test_layer_selection_defaults_and_patterns() -> None:
    net = build_model("r2plus1d_18_tiny", num_classes=4)
    clips = [_noise(1, 4, 32)]
    everything = analyze_redundancy(net, clips)
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv3d)]
    assert [l.name for l in everything.layers] == convs and not everything.skipped
    picked = analyze_redundancy(net, clips, layers=["layer2.*", "layer1.0.relu", "fc"])
    names = [l.name for l in picked.layers]
    assert names[0] == "layer1.0.relu" and len(names) > 1  # an exact name selects any module
    assert all(n.startswith("layer2.") and isinstance(net.get_submodule(n), nn.Conv3d) for n in names[1:])
    assert "fc" in picked.skipped and "not a feature map" in picked.skipped["fc"]
    with pytest.raises(ValueError, match="select no module"):
        analyze_redundancy(net, clips, layers=["nothing.*"])
    with pytest.raises(ValueError, match="rmse_threshold"):
        analyze_redundancy(net, clips, rmse_threshold=-1.0)


def test_dynamic_model_hooks_dynamic_convs_not_their_insides() -> None:
    net = build_model("r2plus1d_18_tiny", num_classes=4, dynamic=DynamicSpec(search_space=2))
    report = analyze_redundancy(net, [_noise(2, 8, 32)])
    kinds = {l.kind for l in report.layers}
    assert "DynamicConv" in kinds and kinds <= {"DynamicConv", "Conv3d"}
    dyn = [l.name for l in report.layers if l.kind == "DynamicConv"]
    assert not any(l.name.startswith(d + ".") for d in dyn for l in report.layers)
    assert net.training  # the model's mode is restored


def test_per_clip_arrays_ids_views_and_limits() -> None:
    net = _identity()
    batches = [
        {"video": torch.randn(2, 3, 3, 4, 8, 8), "index": torch.tensor([7, 9]), "label": torch.tensor([0, 1])},
        {"video": torch.randn(1, 3, 3, 4, 8, 8), "index": torch.tensor([11]), "label": torch.tensor([0])},
    ]
    report = analyze_redundancy(net, batches, layers=["0"])
    assert report.num_clips == 9 and report.clip_ids.tolist() == [7, 7, 7, 9, 9, 9, 11, 11, 11]
    layer = report.layers[0]
    for dim in ("time", "channel"):
        for metric in ("cc", "rmse", "rp"):
            assert layer.dim(dim).values(metric).shape == (9,)
            assert report.per_clip(dim, metric).shape == (9,)
    tensors = [torch.randn(2, 3, 4, 8, 8) for _ in range(3)]
    assert analyze_redundancy(net, tensors, layers=["0"], max_clips=3).clip_ids.tolist() == [0, 1, 2]
    assert analyze_redundancy(net, tensors, layers=["0"], max_batches=2).num_clips == 4
    with pytest.raises(ValueError, match="no clips"):
        analyze_redundancy(net, [], layers=["0"])


def test_report_to_dict_is_json_and_table_marks_not_applicable() -> None:
    report = analyze_redundancy(_identity(), [torch.randn(3, 4, 1, 8, 8)], layers=["0"])  # T = 1
    layer = report.layers[0]
    assert not layer.time.applicable and layer.time.cc.isnan().all() and layer.channel.applicable
    assert math.isnan(report.average("time")["cc"]) and not math.isnan(report.average("channel")["cc"])
    for per_clip in (False, True):
        d = json.loads(json.dumps(report.to_dict(per_clip=per_clip), allow_nan=False))
        assert d["num_clips"] == 3 and d["average"]["time"]["cc"] is None
        assert d["layers"][0]["time"]["num_pairs"] == 0 and len(d["clips"]["channel"]["rp"]) == 3
        assert d["settings"] == {**d["settings"], "cc_threshold": 0.85, "rmse_threshold": 0.001, "pairs": "adjacent"}
    assert len(report.to_dict(per_clip=True)["layers"][0]["channel"]["per_clip"]["cc"]) == 3
    table = report.format_table()
    assert "n/a" in table and "average (1 layers)" in table and "CC > 0.85 and RMSE > 0.001" in table
    assert isinstance(report, RedundancyReport) and isinstance(layer.channel, DimRedundancy)


# --------------------------------------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vared")
    redundancy_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["redundancy", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from vared_core.data import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth"), classes=2, videos_per_class=4, frames=8, size=64, seed=0)


def test_cli_prints_table_and_writes_json(synthetic, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "base.pt"
    torch.save({"model": build_model("r2plus1d_18_tiny", num_classes=2).state_dict(), "epoch": 1}, ckpt)
    out = tmp_path / "red" / "report.json"
    rc = _cli(["--model", "r2plus1d_18_tiny", "--num-classes", "2", "--checkpoint", str(ckpt),
               "--list", str(synthetic.val_list), "--layers", "stem.*", "--max-clips", "2",
               "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert "stem.0" in printed and "stem.3" in printed and "average (2 layers)" in printed and "time CC" in printed
    assert "most redundant" in printed
    d = json.loads(out.read_text())
    assert d["num_clips"] == 2 and [l["name"] for l in d["layers"]] == ["stem.0", "stem.3"]
    assert d["config"]["model"] == "r2plus1d_18_tiny" and all(p.endswith(".mp4") for p in d["clips"]["paths"])


def test_cli_errors_exit_2_with_a_message(synthetic, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope_val.csv"
    assert _cli(["--model", "r2plus1d_18_tiny", "--num-classes", "2", "--list", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err
    assert _cli(["--model", "no_such_net", "--num-classes", "2", "--list", str(synthetic.val_list)]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    ckpt = tmp_path / "two_classes.pt"
    torch.save(build_model("r2plus1d_18_tiny", num_classes=2).state_dict(), ckpt)  # a raw state dict
    argv = ["--model", "r2plus1d_18_tiny", "--num-classes", "3", "--list", str(synthetic.val_list)]
    assert _cli([*argv, "--checkpoint", str(ckpt)]) == 2
    assert "does not fit the model" in capsys.readouterr().err
