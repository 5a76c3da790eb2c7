"""`evaluate` on cases built by hand: known logits → known clip-1 / video-1 / video-5 and costs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vared_core import DynamicSpec, dynamize, force_policy
from vared_core.engine import evaluate, score_views


class FirstValues(nn.Module):
    """Logits = the first N values of each clip, through an identity Linear (N² MACs per clip)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)[:, : self.fc.in_features])


def _video(view_logits: list[list[float]]) -> torch.Tensor:
    """(V, 1, 1, 2, 4) clips whose first values are the given logits."""
    v = torch.zeros(len(view_logits), 1, 1, 2, 4)
    for i, row in enumerate(view_logits):
        v[i].view(-1)[: len(row)] = torch.tensor(row)
    return v


def test_known_logits_give_known_accuracies() -> None:
    # 6 classes, 3 videos × 2 views
    dataset = [
        # video 0, label 2: view 0 right, view 1 wrong (class 0); mean softmax → class 2 wins
        {"video": _video([[0, 0, 5, 0, 0, 0], [1, 0, 0.5, 0, 0, 0]]), "label": 2, "index": 0},
        # video 1, label 5: both views prefer class 0; 5 is 2nd-best → top-5 hit, top-1 miss
        {"video": _video([[4, 0, 0, 0, 0, 1], [4, 0, 0, 0, 0, 1]]), "label": 5, "index": 1},
        # video 2, label 1: class 1 is the smallest score → outside the top-5 of 6
        {"video": _video([[3, -9, 2, 2, 2, 2], [3, -9, 2, 2, 2, 2]]), "label": 1, "index": 2},
    ]
    model = FirstValues(6)
    r = evaluate(model, dataset, batch_size=2, class_names=list("abcdef"))
    assert r.num_videos == 3 and r.num_views == 2
    assert r.clip_top1 == pytest.approx(100 / 3)  # clip-1 = each video's first of 2 clips: right for video 0 only
    assert r.video_top1 == pytest.approx(100 / 3)
    assert r.video_top5 == pytest.approx(200 / 3)
    assert [v.pred for v in r.videos] == [2, 0, 0]
    assert r.gflops_avg == r.gflops_max == r.gflops_min == pytest.approx(36 / 1e9)
    expected_loss = torch.nn.functional.cross_entropy(
        torch.tensor([[0, 0, 5, 0, 0, 0], [1, 0, 0.5, 0, 0, 0], [4, 0, 0, 0, 0, 1], [4, 0, 0, 0, 0, 1],
                      [3, -9, 2, 2, 2, 2], [3, -9, 2, 2, 2, 2]], dtype=torch.float),
        torch.tensor([2, 2, 5, 5, 1, 1]),
    )  # fmt: skip
    assert r.loss == pytest.approx(float(expected_loss), rel=1e-6)
    assert r.clips_per_s > 0
    assert set(r.metrics()) == {"clip_top1", "video_top1", "video_top5", "gflops_avg", "gflops_max",
                                "gflops_min", "clips_per_s", "loss"}  # fmt: skip


def test_clip1_is_the_middle_clip_centre_crop_and_gflops_the_centre_crops() -> None:
    """3 clips × left/centre/right: clip-1 reads view 4 (clip 1, centre) alone; costs come from views 1, 4, 7."""
    right, wrong = [0.0, 5.0], [5.0, 0.0]
    views = [wrong] * 9
    views[4] = right
    dataset = [{"video": _video(views), "label": 1, "index": 0}, {"video": _video([right] * 9), "label": 1, "index": 1}]
    r = evaluate(FirstValues(2), dataset, batch_size=2, crops=3)
    assert r.num_views == 9 and r.clip_top1 == pytest.approx(100.0)  # its 8 other views are wrong
    assert r.video_top1 == pytest.approx(50.0)  # the mean over 9 views follows the 8 wrong ones
    with pytest.raises(ValueError, match="whole clips of 3 crops"):
        evaluate(FirstValues(2), [{"video": _video([right] * 4), "label": 1, "index": 0}], crops=3)


def test_score_views_checks_shapes() -> None:
    with pytest.raises(ValueError, match="B·V"):
        score_views(torch.zeros(5, 3), torch.tensor([0, 1]), num_views=2)


class TinyDynamicNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3, 4)))


def test_feature_ratios_costs_and_extremes_of_a_dynamic_model() -> None:
    torch.manual_seed(0)
    model = dynamize(TinyDynamicNet(), DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))
    # labels 0,0,1,2; motion annotations; clip i's content is scaled so costs differ only by policy
    dataset = [{"video": torch.randn(3, 4, 8, 8), "label": lab, "index": i, "motion": i, "clutter": i % 2}
               for i, lab in enumerate([0, 0, 1, 2])]  # fmt: skip
    policy = torch.tensor([0, 1, 1, 0])  # per clip: full, half channels, half channels, full
    with force_policy(model, channel=policy, temporal=0):
        r = evaluate(model, dataset, batch_size=4)
    assert r.layer_names == ["conv"]
    # computed-feature ratio per class: class 0 = mean(1, 0.5), class 1 = 0.5, class 2 = 1
    assert r.feature_ratio == [pytest.approx([0.75, 0.5, 1.0])]
    costs = [v.gflops for v in r.videos]
    assert costs[0] == costs[3] > costs[1] == costs[2]
    assert r.gflops_max == pytest.approx(costs[0]) and r.gflops_min == pytest.approx(costs[1])
    ext = r.extremes()
    assert ext["0"]["most"].index == 0 and ext["0"]["least"].index == 1
    assert r.gflops_by("motion") == pytest.approx({0: costs[0], 1: costs[1], 2: costs[2], 3: costs[3]})
    assert [v.layer_ratio for v in r.videos] == [pytest.approx([x]) for x in (1.0, 0.5, 0.5, 1.0)]
    assert r.feature_ratio_by("motion") == {m: pytest.approx([x]) for m, x in enumerate((1.0, 0.5, 0.5, 1.0))}
    assert r.feature_ratio_by("clutter") == {0: pytest.approx([0.75]), 1: pytest.approx([0.75])}  # clips 0, 2 / 1, 3
    assert r.feature_ratio_by("speed") == {}  # not an annotation of this set
    assert not math.isnan(r.clips_per_s)


def test_temporal_and_channel_policies_are_reported_apart(tmp_path) -> None:
    """Figures B-4 / B-5: clip 0 computes every frame and half the channels, clip 1 half of 4 frames and every
    channel, clip 2 (its gate pushed to zero) skips the layer."""
    from vared_core.analysis.plots import plot_policy_by_dimension

    torch.manual_seed(0)
    model = dynamize(TinyDynamicNet(), DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))
    dataset = [{"video": torch.randn(3, 4, 8, 8), "label": i, "index": i} for i in range(2)]
    with force_policy(model, channel=torch.tensor([1, 0]), temporal=torch.tensor([0, 1])):
        r = evaluate(model, dataset, batch_size=2)
    assert r.temporal_ratio == [pytest.approx([1.0, 0.5])] and r.channel_ratio == [pytest.approx([0.5, 1.0])]
    assert r.feature_ratio == [pytest.approx([0.5, 0.5])]  # their product: one number cannot tell them apart
    conv = model.conv
    with torch.no_grad():
        conv.gate.fc2.weight.zero_()
        conv.gate.beta.fill_(-1.0)  # every weight 0: the layer is skipped
    skipped = evaluate(model, dataset[:1], batch_size=1)
    assert skipped.temporal_ratio == skipped.channel_ratio == [[0.0]]
    png = plot_policy_by_dimension(r, tmp_path / "policy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


class ConvBNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn = nn.BatchNorm3d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3, 4)))


def test_fused_inference_copy_scores_like_the_model_it_leaves_untouched() -> None:
    """evaluate times a BN-folded copy by default; a model straight out of a training step (its layers'
    records holding autograd history) is evaluated as it is and comes back in training mode, unchanged."""
    from vared_core.dynamic import fuse_batchnorm

    torch.manual_seed(0)
    model = dynamize(ConvBNNet(), DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))
    dataset = [{"video": torch.randn(3, 4, 8, 8), "label": i % 3, "index": i} for i in range(6)]
    model.train()
    for _ in range(3):  # training forwards: BN statistics move, the layer keeps its record (with history)
        model(torch.randn(4, 3, 4, 8, 8)).sum().backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = []  # batch sizes the BN saw (the copy shares the hook: its probe forward is one clip)
    model.bn.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    fused = evaluate(model, dataset, batch_size=3)
    assert 3 not in batches  # the folded copy scored the clips, the model's BN never ran on them
    plain = evaluate(model, dataset, batch_size=3, fuse_bn=False)
    assert batches.count(3) == 2
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [v.pred for v in fused.videos] == [v.pred for v in plain.videos]
    assert fused.loss == pytest.approx(plain.loss, rel=1e-5)
    assert [v.gflops for v in fused.videos] == pytest.approx([v.gflops for v in plain.videos])
    assert isinstance(fuse_batchnorm(model, (3, 4, 8, 8)).bn, nn.Identity)
