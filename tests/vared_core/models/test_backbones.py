"""Every backbone's tiny variant builds static and dynamic, runs forward and backward, and the dynamized model
with every gate pinned to the full alternative computes exactly what the static model computes."""
from __future__ import annotations

import fnmatch
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vared_core.models import build_model, get_model_cfg

TINY = ["i3d_inception_v2_tiny", "r2plus1d_18_tiny", "tsn_resnet50_tiny", "x3d_m_tiny"]
CLIP = (2, 3, 8, 64, 64)
CLASSES = 5


def _clip(seed: int = 0) -> torch.Tensor:
    return torch.randn(*CLIP, generator=torch.Generator().manual_seed(seed))


def _train_step(net: nn.Module) -> None:
    net.train()
    loss = F.cross_entropy(net(_clip()), torch.tensor([1, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert net.get_classifier().weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TINY)
def test_static_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name, num_classes=CLASSES)
    x = _clip()
    net.eval()
    with torch.no_grad():
        feats = net.forward_features(x)
        logits = net(x)
    assert feats.dim() == 5 and feats.shape[0] == 2
    assert logits.shape == (2, CLASSES)
    torch.testing.assert_close(net.forward_head(feats), logits)
    _train_step(net)


@pytest.mark.parametrize("name", TINY)
def test_static_accepts_other_clip_lengths(name: str) -> None:
    net = build_model(name, num_classes=CLASSES).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 4, 48, 48)).shape == (1, CLASSES)


def test_forward_rejects_frames_without_time() -> None:
    net = build_model("x3d_m_tiny", num_classes=CLASSES)
    with pytest.raises(ValueError, match=r"clips of shape \(B, C, T, H, W\)"):
        net(torch.zeros(2, 3, 64, 64))


@pytest.mark.parametrize("name", TINY)
def test_dynamic_pinned_full_equals_static(name: str) -> None:
    from vared_core.dynamic import DynamicConv, DynamicSpec, force_policy

    torch.manual_seed(0)
    static = build_model(name, num_classes=CLASSES, dropout=0.0)  # no dropout: train-mode outputs comparable
    spec = DynamicSpec(search_space=2, temporal=True, channel=True)
    dyn = build_model(name, num_classes=CLASSES, dropout=0.0, dynamic=spec)
    missing, unexpected = dyn.load_state_dict(static.state_dict(), strict=False)
    assert not unexpected  # the static weights keep their names inside the dynamic model

    # the default selection: exactly the convs the cfg's patterns name
    cfg = get_model_cfg(name)
    convs = [n for n, m in static.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    expected = [n for n in convs if any(fnmatch.fnmatchcase(n, p) for p in cfg.dynamic_include)]
    assert [n for n, m in dyn.named_modules() if isinstance(m, DynamicConv)] == expected

    x = _clip(1)
    for train in (False, True):  # hard (eval) and soft (training) paths
        static.train(train)
        dyn.train(train)
        with torch.no_grad(), force_policy(dyn, temporal=0, channel=0):
            want, got = static(x), dyn(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)

    _train_step(dyn)


def test_r2plus1d_default_dynamic_convs_are_the_spatial_ones() -> None:
    from vared_core.dynamic import DynamicConv, DynamicSpec

    net = build_model("r2plus1d_18_tiny", num_classes=CLASSES, dynamic=DynamicSpec(search_space=2))
    dyn = [m for m in net.modules() if isinstance(m, DynamicConv)]
    assert len(dyn) == 16  # two (2+1)D convs in each of the 8 basic blocks
    assert all(m.kernel_size == (1, 3, 3) for m in dyn)


def test_spec_layers_override_the_backbone_default() -> None:
    from vared_core.dynamic import DynamicConv, DynamicSpec

    net = build_model("x3d_m_tiny", num_classes=CLASSES, dynamic=DynamicSpec(search_space=2, layers=["res2.0.conv_b"]))
    assert [n for n, m in net.named_modules() if isinstance(m, DynamicConv)] == ["res2.0.conv_b"]


@pytest.mark.parametrize("swish, expected", [("se_blocks", "se"), ("all", "every"), ("none", "no")])
def test_x3d_swish_switch(swish: str, expected: str) -> None:
    from vared_core.models.x3d import X3DBlock

    net = build_model("x3d_m_tiny", num_classes=CLASSES, swish=swish)
    blocks = [m for m in net.modules() if isinstance(m, X3DBlock)]
    with_swish = [isinstance(b.act_b, nn.SiLU) for b in blocks]
    want = {"se": [b.se is not None for b in blocks], "every": [True] * len(blocks), "no": [False] * len(blocks)}
    assert with_swish == want[expected]
    assert sum(b.se is not None for b in blocks) == 2 + 3 + 6 + 4  # blocks 0, 2, 4, ... of stages of 3, 5, 11, 7


def test_x3d_rejects_unknown_swish_mode() -> None:
    with pytest.raises(ValueError, match="swish must be 'se_blocks', 'all' or 'none'"):
        build_model("x3d_m_tiny", num_classes=CLASSES, swish="some")


@pytest.mark.parametrize("name", TINY)
def test_fused_inference_form_equals_eval(name: str) -> None:
    """`fuse_batchnorm` folds every backbone BN that follows a conv; static and dynamic outputs stay."""
    from vared_core.dynamic import DynamicSpec, force_policy, fuse_batchnorm

    torch.manual_seed(0)
    for dynamic in (None, DynamicSpec(search_space=2)):
        net = build_model(name, num_classes=CLASSES, dynamic=dynamic).eval()
        for m in net.modules():  # statistics a trained net would have, so a wrong fold would show
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        fused = fuse_batchnorm(net, CLIP[1:])
        if dynamic is None:
            assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
        x = _clip(2)
        for policy in ((None, None), (1, 1), ([0, 1], [1, 0])):
            with torch.no_grad(), force_policy(net, *policy) if dynamic else nullcontext(), \
                    force_policy(fused, *policy) if dynamic else nullcontext():
                want, got = net(x), fused(x)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(1.0, want.abs().max().item()))

