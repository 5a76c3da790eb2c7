"""The model registry: names, cfgs, the build_model front door and its errors."""
from __future__ import annotations

import dataclasses

import subprocess
import sys

import pytest
import torch
from torch import nn

import vared_core.models as models
from vared_core.models import ModelCfg, build_model, get_model_cfg, list_models, register_model

ALL = [
    "i3d_inception_v2", "i3d_inception_v2_seed", "i3d_inception_v2_tiny", "r2plus1d_18", "r2plus1d_18_tiny",
    "tsn_resnet50", "tsn_resnet50_tiny", "x3d_m", "x3d_m_tiny",
]


def test_list_models_names_every_variant() -> None:
    assert list_models() == ALL
    assert list_models("*_tiny") == [n for n in ALL if n.endswith("_tiny")]
    assert list_models("nothing*") == []


def test_package_exports() -> None:
    assert set(models.__all__) == {"ModelCfg", "build_model", "get_model_cfg", "list_models", "register_model"}
    from vared_core.models import r2plus1d, x3d

    assert "r2plus1d_18_tiny" in r2plus1d.__all__ and "x3d_m" in x3d.__all__  # register_model adds builders


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'.*r2plus1d_18, r2plus1d_18_tiny"):
        build_model("resnet9000", num_classes=10)
    with pytest.raises(ValueError, match="known models: i3d_inception_v2"):
        get_model_cfg("x3d_xxl")


@pytest.mark.parametrize("field, value", [("num_classes", 0), ("num_frames", -2), ("crop_size", 1.5)])
def test_build_model_rejects_bad_sizes(field: str, value: object) -> None:
    kwargs = {"num_classes": 3, field: value}
    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        build_model("r2plus1d_18_tiny", **kwargs)


def test_build_model_rejects_bad_width() -> None:
    with pytest.raises(ValueError, match="width must be > 0"):
        build_model("x3d_m_tiny", num_classes=3, width=0.0)


@pytest.mark.parametrize("name", ALL)
def test_cfg_is_complete(name: str) -> None:
    cfg = get_model_cfg(name)
    assert isinstance(cfg, ModelCfg)
    assert cfg.num_frames >= 8 and cfg.crop_size >= 64 and cfg.test_crop_size >= cfg.crop_size
    assert len(cfg.mean) == len(cfg.std) == 3
    assert cfg.classifier == "fc"
    assert cfg.dynamic_include  # each variant names its dynamic convs
    if name.startswith("tsn"):
        assert cfg.sampling == "segment" and cfg.frame_stride is None
    else:
        assert cfg.sampling == "dense" and cfg.frame_stride >= 1
    if name.endswith("_tiny"):
        assert cfg.clip_shape == (3, 8, 64, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_frames = 3


def test_seed_conventions_in_cfgs() -> None:
    assert get_model_cfg("r2plus1d_18").test_crop_size == 128
    assert get_model_cfg("i3d_inception_v2").test_crop_size == 256
    assert get_model_cfg("x3d_m").test_crop_size == 256 and get_model_cfg("x3d_m").frame_stride == 5
    assert get_model_cfg("x3d_m").test_clip_shape == (3, 16, 256, 256)


def test_model_cfg_validates() -> None:
    with pytest.raises(ValueError, match="frame_stride must be set for dense sampling"):
        ModelCfg(num_frames=8, crop_size=64, test_crop_size=64, frame_stride=None)
    with pytest.raises(ValueError, match="sampling must be 'dense' or 'segment'"):
        ModelCfg(num_frames=8, crop_size=64, test_crop_size=64, sampling="uniform")  # type: ignore[arg-type]


def test_build_model_sets_cfg_and_drops_none_kwargs() -> None:
    net = build_model("x3d_m_tiny", num_classes=7, num_frames=4, dropout=None)
    assert net.cfg.num_frames == 4 and net.cfg.crop_size == 64
    assert net.dropout.p == 0.5  # None never overrides the variant's default
    assert isinstance(net.get_submodule(net.cfg.classifier), nn.Linear)
    assert build_model("x3d_m_tiny", num_classes=7, dropout=0.2).dropout.p == 0.2


def test_width_multiplies_the_variant_width() -> None:
    narrow = build_model("r2plus1d_18_tiny", num_classes=4)
    narrower = build_model("r2plus1d_18_tiny", num_classes=4, width=0.5)
    assert narrow.fc.in_features == 128 and narrower.fc.in_features == 64
    assert build_model("tsn_resnet50_tiny", num_classes=4, width=2.0).fc.in_features == 1024


def test_reset_classifier() -> None:
    net = build_model("tsn_resnet50_tiny", num_classes=4)
    net.reset_classifier(9)
    assert net.get_classifier().out_features == 9
    assert net(torch.zeros(1, 3, 2, 64, 64)).shape == (1, 9)


def test_register_model_needs_a_cfg() -> None:
    def not_in_cfgs(*, num_classes: int = 2, width: float = 1.0) -> nn.Module:
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="default_cfgs has no entry 'not_in_cfgs'"):
        register_model(not_in_cfgs)


def test_models_import_no_orchestration_stack() -> None:
    code = (
        "import sys, vared_core.models; "
        "bad = [m for m in ('ray', 'mlflow', 'optuna', 'orchestrator') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
