"""The evaluation plots: PNG files of the right figures, drawn without touching the caller's matplotlib."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image
from torch import nn

from vared_core import DynamicSpec, dynamize, force_policy
from vared_core.analysis.plots import plot_cost_histogram, plot_feature_ratio, plot_policy_by_dimension
from vared_core.engine import evaluate


class TwoLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1))
        self.conv2 = nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1))
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(torch.relu(self.conv1(x))).mean((2, 3, 4)))


@pytest.fixture(scope="module")
def result():
    torch.manual_seed(0)
    model = dynamize(TwoLayerNet(), DynamicSpec(search_space=2), clip_shape=(3, 4, 8, 8))
    dataset = [{"video": torch.randn(3, 4, 8, 8), "label": i % 3, "index": i} for i in range(3)]
    with force_policy(model, channel=torch.tensor([1, 0, 0]), temporal=torch.tensor([0, 1, 0])):
        return evaluate(model, dataset, batch_size=3)


def test_each_plot_writes_a_png(tmp_path: Path, result) -> None:
    for plot, name in ((plot_feature_ratio, "ratio.png"), (plot_policy_by_dimension, "policy.png"),
                       (plot_cost_histogram, "cost.png")):  # fmt: skip
        out = plot(result, tmp_path / name)
        with Image.open(out) as image:
            assert image.format == "PNG" and min(image.size) > 200, (name, image.size)


def test_plotting_leaves_the_callers_backend_and_figures_as_they_were(tmp_path: Path, result) -> None:
    """A notebook's backend is not switched (the plots used to call ``matplotlib.use("Agg")``) and no figure is
    left in pyplot's list."""
    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # any backend but Agg: what the caller chose
    try:
        mine = plt.figure()
        plot_feature_ratio(result, tmp_path / "ratio.png")
        plot_policy_by_dimension(result, tmp_path / "policy.png")
        plot_cost_histogram(result, tmp_path / "cost.png")
        assert matplotlib.get_backend().lower() == "svg"
        assert plt.get_fignums() == [mine.number]
        plt.close(mine)
    finally:
        plt.switch_backend(before)
