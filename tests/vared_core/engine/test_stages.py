"""The seed's two-stage recipe: a dynamic model trained from scratch, then fine-tuned with λ_e from its
own checkpoint; both stages resume; a start checkpoint that does not fit is refused by name."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vared_core import CheapOpsSpec, DynamicSpec, GateSpec, StabilitySpec
from vared_core.engine import CheckpointError, FitResult, OptimConfig, TrainConfig, build_run_model, fit, load_checkpoint

pytestmark = pytest.mark.slow

SPEC = DynamicSpec(search_space=2)


class Interrupt(Exception):
    pass


def _stop_after(n: int):
    def on_epoch(epoch: int, metrics: dict, ckpt: Path) -> None:
        if epoch == n:
            raise Interrupt

    return on_epoch


def _stage1(engine_data, make_base_config, out: Path, **kw) -> TrainConfig:
    """Stage 1: dynamic from epoch 0, no efficiency loss (the seed's 'before' row of Table 4.10)."""
    fields = dict(stage="dynamic", dynamic=SPEC, lambda_e=0.0, epochs=3, eval_every=1, optim=OptimConfig(lr=0.02))
    return make_base_config(engine_data, out, **{**fields, **kw})


def _stage2(engine_data, make_base_config, out: Path, start: Path, **kw) -> TrainConfig:
    """Stage 2: the L_e fine-tune from stage 1's checkpoint, with its own λ_e, epochs and lr."""
    fields = dict(stage="dynamic", dynamic=SPEC, base_checkpoint=start, lambda_e=2.0, epochs=2, eval_every=1,
                  optim=OptimConfig(lr=0.005))  # fmt: skip
    return make_base_config(engine_data, out, **{**fields, **kw})


@pytest.fixture(scope="module")
def stage1_run(engine_data, make_base_config, tmp_path_factory) -> FitResult:
    torch.set_num_threads(1)
    return fit(_stage1(engine_data, make_base_config, tmp_path_factory.mktemp("stage1")))


def test_a_dynamic_checkpoint_starts_the_fine_tune_with_its_gates(stage1_run: FitResult, engine_data,
                                                                   make_base_config, tmp_path) -> None:
    assert stage1_run.config.base_checkpoint is None and stage1_run.metrics["train_efficiency"] > 0
    # a strong λ_e, so two epochs move the cost clearly whatever the clips' pixels
    config = _stage2(engine_data, make_base_config, tmp_path / "s2", stage1_run.checkpoint, lambda_e=8.0,
                     optim=OptimConfig(lr=0.02))
    started = build_run_model(config, num_classes=2)
    trained = stage1_run.model.state_dict()
    assert any("gate" in k for k in trained)
    for k, v in started.state_dict().items():  # every tensor, gates and cheap ops included, is stage 1's
        assert torch.equal(v, trained[k]), k
    result = fit(config)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    assert load_checkpoint(result.checkpoint)["config"]["lambda_e"] == 8.0
    # the efficiency loss pulls the cost down from where stage 1 left it
    assert result.metrics["gflops_avg"] < stage1_run.metrics["gflops_avg"]


def test_both_stages_resume_to_the_uninterrupted_weights(stage1_run: FitResult, engine_data, make_base_config,
                                                         tmp_path) -> None:
    s1 = _stage1(engine_data, make_base_config, tmp_path / "s1")
    with pytest.raises(Interrupt):
        fit(s1, on_epoch=_stop_after(2))
    resumed1 = fit(s1.model_copy(update={"resume_from": "last"}))
    for (k, a), b in zip(stage1_run.model.state_dict().items(), resumed1.model.state_dict().values()):
        assert torch.equal(a, b), k

    straight = fit(_stage2(engine_data, make_base_config, tmp_path / "s2a", stage1_run.checkpoint))
    s2 = _stage2(engine_data, make_base_config, tmp_path / "s2b", resumed1.checkpoint)
    with pytest.raises(Interrupt):
        fit(s2, on_epoch=_stop_after(1))
    resumed2 = fit(s2.model_copy(update={"resume_from": "last"}))
    for (k, a), b in zip(straight.model.state_dict().items(), resumed2.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in resumed2.history] == [h["loss"] for h in straight.history]


def test_a_start_checkpoint_with_other_dynamic_layers_is_refused(stage1_run: FitResult, engine_data,
                                                                 make_base_config, tmp_path) -> None:
    other = _stage2(engine_data, make_base_config, tmp_path / "x", stage1_run.checkpoint,
                    dynamic=DynamicSpec(search_space=3))
    with pytest.raises(CheckpointError, match=r"dynamic\.search_space: 2 there, 3 here"):
        fit(other)
    grouped = _stage2(engine_data, make_base_config, tmp_path / "w", stage1_run.checkpoint,
                      dynamic=DynamicSpec(search_space=2, stability=StabilitySpec(normalize_weights=True)))
    with pytest.raises(CheckpointError, match=r"dynamic\.stability\.normalize_weights: False there, True here"):
        fit(grouped)
    # how a fresh layer starts is not a difference: the checkpoint's layers are loaded over it
    init_only = _stage2(engine_data, make_base_config, tmp_path / "y", stage1_run.checkpoint, epochs=1,
                        dynamic=DynamicSpec(search_space=2, gate=GateSpec(bias_reduced=0.9),
                                            cheap_ops=CheapOpsSpec(zero_init=True)))
    assert fit(init_only).history
    base_from_dynamic = make_base_config(engine_data, tmp_path / "z", base_checkpoint=stage1_run.checkpoint)
    with pytest.raises(CheckpointError, match="cannot start a base run"):
        fit(base_from_dynamic)
