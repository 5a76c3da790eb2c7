"""`fit`: base training, dynamic fine-tuning from a base checkpoint, resume, failures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from vared_core import DynamicSpec, dynamic_layers, force_policy
from vared_core.engine import (
    CheckpointError,
    FitResult,
    OptimConfig,
    TrainConfig,
    TrainingDiverged,
    build_run_model,
    checkpoint_dirs,
    evaluate,
    fit,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from vared_core.engine.data import build_datasets
from vared_core.models import get_model_cfg

pytestmark = pytest.mark.slow


def test_base_model_loss_falls(base_run: FitResult) -> None:
    ce = [h["train_ce"] for h in base_run.history]
    assert len(ce) == 15
    first, last = sum(ce[:3]) / 3, sum(ce[-3:]) / 3
    assert last < 0.8 * first, ce
    assert last < math.log(2), ce  # below chance level for two classes
    for key in ("clip_top1", "video_top1", "video_top5", "gflops_avg", "gflops_max", "gflops_min", "clips_per_s"):
        assert key in base_run.metrics
    # a static net costs the same on every clip, and what it reports is what flop_counter counts
    assert base_run.metrics["gflops_min"] == pytest.approx(base_run.metrics["gflops_max"])


def test_run_folder_holds_checkpoints_and_metrics(base_run: FitResult) -> None:
    out = Path(base_run.config.output_dir)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 16))
    assert [p.name for p in checkpoint_dirs(out)] == ["epoch_0014", "epoch_0015"]  # keep_checkpoints=2
    state = load_checkpoint(base_run.checkpoint)
    assert state["epoch"] == 15 and set(state) >= {"model", "optimizer", "scheduler", "rng", "config"}
    assert TrainConfig.model_validate(state["config"]) == base_run.config
    model, config = load_model(base_run.checkpoint)
    for (k, a), b in zip(model.state_dict().items(), base_run.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_dynamic_stage_pinned_full_reproduces_base(base_run: FitResult, engine_data, make_base_config, tmp_path) -> None:
    config = make_base_config(
        engine_data, tmp_path / "dyn", stage="dynamic", base_checkpoint=base_run.checkpoint,
        dynamic=DynamicSpec(search_space=2), epochs=1, lambda_e=0.8, optim=OptimConfig(lr=0.01, gate_lr_mult=10),
    )  # fmt: skip
    model = build_run_model(config, num_classes=2)
    assert len(dynamic_layers(model)) > 0
    _, val = build_datasets(config.data, get_model_cfg(config.model), seed=config.seed)
    with force_policy(model, temporal=0, channel=0):
        pinned = evaluate(model, val, batch_size=4)
    base = base_run.evaluation
    assert pinned.clip_top1 == base.clip_top1 and pinned.video_top1 == base.video_top1
    assert pinned.loss == pytest.approx(base.loss, rel=1e-4)
    assert pinned.gflops_avg > base.gflops_avg  # the gates cost a little
    # and the fine-tune itself runs, with the efficiency term in its loss
    result = fit(config)
    assert result.history[0]["train_efficiency"] > 0
    assert result.evaluation.layer_names == [name for name, _ in dynamic_layers(model)]
    assert len(result.evaluation.feature_ratio) == len(dynamic_layers(model))
    # the gates (and only they) train at lr × gate_lr_mult
    groups = load_checkpoint(result.checkpoint)["optimizer"]["param_groups"]
    gate_params = sum(len(list(m.gate.parameters())) for _, m in dynamic_layers(model) if m.gate is not None)
    assert sorted({g["initial_lr"] for g in groups}) == [0.01, pytest.approx(0.1)]
    assert sum(len(g["params"]) for g in groups if g["initial_lr"] > 0.05) == gate_params


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(engine_data, make_base_config, tmp_path) -> None:
    straight = fit(make_base_config(engine_data, tmp_path / "a", epochs=3, eval_every=1))

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch: int, metrics: dict, ckpt: Path) -> None:
        if epoch == 2:
            raise Interrupt

    config = make_base_config(engine_data, tmp_path / "b", epochs=3, eval_every=1)
    with pytest.raises(Interrupt):
        fit(config, on_epoch=stop_after_two)
    seen = []
    resumed = fit(config.model_copy(update={"resume_from": "last"}), on_epoch=lambda e, m, c: seen.append(e))
    assert seen == [3]
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1.0, 2.0, 3.0]  # the resumed run continues the file
    with pytest.warns(UserWarning, match="moved to"):  # a fresh run in the same folder replaces it
        fresh = fit(make_base_config(engine_data, tmp_path / "b", epochs=1, eval_every=1))
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 1
    # its own checkpoint survives pruning (keep 2): the old run's epochs 2-3 are set aside, not taken as newer
    assert checkpoint_dirs(tmp_path / "b") == [fresh.checkpoint] and fresh.checkpoint.name == "epoch_0001"
    (replaced,) = (tmp_path / "b" / "replaced").iterdir()
    assert [p.name for p in checkpoint_dirs(replaced)] == ["epoch_0002", "epoch_0003"]
    assert len((replaced / "metrics.jsonl").read_text().splitlines()) == 3  # the old history is kept too


def test_resume_from_another_run_is_refused(base_run: FitResult, engine_data, make_base_config, tmp_path) -> None:
    other = make_base_config(engine_data, tmp_path / "c", optim=OptimConfig(lr=0.5), resume_from=base_run.checkpoint)
    with pytest.raises(CheckpointError, match=r"optim.*0\.5"):
        fit(other)


def test_a_checkpoint_from_before_a_new_config_field_still_resumes(base_run: FitResult, tmp_path) -> None:
    """A field added to TrainConfig later (with a default) is not a difference: the old run resumes."""
    state = load_checkpoint(base_run.checkpoint)
    del state["config"]["optim"]["gate_grad_clip"]  # as written before the field existed
    state.pop("format")
    old = save_checkpoint(tmp_path / "old", state, epoch=int(state["epoch"]))
    config = base_run.config.model_copy(update={"output_dir": tmp_path / "old", "resume_from": old})
    resumed = fit(config)  # at its last epoch: evaluates what the checkpoint holds
    assert resumed.checkpoint == old and resumed.evaluation.video_top1 == base_run.evaluation.video_top1
    changed = config.model_copy(update={"optim": config.optim.model_copy(update={"gate_grad_clip": 1.0})})
    with pytest.raises(CheckpointError, match="gate_grad_clip"):  # a real difference is still refused
        fit(changed)


def test_bad_base_checkpoints_are_named(base_run: FitResult, engine_data, make_base_config, tmp_path) -> None:
    wrong_model = make_base_config(
        engine_data, tmp_path / "d", model="x3d_m_tiny", stage="dynamic", base_checkpoint=base_run.checkpoint
    )
    with pytest.raises(CheckpointError, match="x3d_m_tiny"):
        fit(wrong_model)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        fit(make_base_config(engine_data, tmp_path / "e", stage="dynamic", base_checkpoint=junk))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(make_base_config(engine_data, tmp_path / "f", stage="dynamic", base_checkpoint=tmp_path / "missing"))


def test_nan_loss_raises_a_clear_error(engine_data, make_base_config, tmp_path) -> None:
    config = make_base_config(engine_data, tmp_path / "g", epochs=4, optim=OptimConfig(lr=1e30), eval_every=100)
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf).*epoch 1.*lower optim.lr"):
        fit(config)


def test_policy_warmup_trains_every_alternative_before_the_gates(base_run: FitResult, engine_data, make_base_config,
                                                                tmp_path) -> None:  # fmt: skip
    """Epoch 1 runs randomly drawn alternatives (the gates get no gradient and stay as initialised, the
    cheap ops train); epoch 2 hands the choice to the gates."""
    config = make_base_config(
        engine_data, tmp_path / "warm", stage="dynamic", base_checkpoint=base_run.checkpoint, epochs=2,
        dynamic=DynamicSpec(search_space=2), policy_warmup_epochs=1, optim=OptimConfig(lr=0.01, gate_lr_mult=10),
    )  # fmt: skip
    torch.manual_seed(config.seed)  # as fit does before building: the same gate initialisation
    start = build_run_model(config, num_classes=2).state_dict()

    def gates_and_cheap_ops(state: dict) -> tuple[dict, dict]:
        gate = {k: v for k, v in state.items() if ".gate." in k and "running" not in k and "batches" not in k}
        cheap = {k: v for k, v in state.items() if "_ops." in k and "running" not in k and "batches" not in k}
        assert gate and cheap
        return gate, cheap

    after = {}
    fit(config, on_epoch=lambda e, m, ckpt: after.setdefault(e, load_checkpoint(ckpt)["model"]))
    gate0, cheap0 = gates_and_cheap_ops(start)
    gate1, cheap1 = gates_and_cheap_ops(after[1])
    gate2, _ = gates_and_cheap_ops(after[2])
    assert all(torch.equal(gate0[k], gate1[k]) for k in gate0)  # pinned: no gradient reached the gates
    assert any(not torch.equal(cheap0[k], cheap1[k]) for k in cheap0)  # the cheap ops learned
    assert any(not torch.equal(gate1[k], gate2[k]) for k in gate1)  # then the gates did
    with pytest.raises(ValueError, match="policy_warmup_epochs"):
        make_base_config(engine_data, tmp_path / "b", policy_warmup_epochs=1)
    # S = 1 (the static control) has no dynamic layers: nothing to draw, the warm-up is a plain fine-tune
    static = fit(config.model_copy(update={"dynamic": DynamicSpec(search_space=1), "epochs": 1,
                                           "output_dir": tmp_path / "static"}))  # fmt: skip
    assert not dynamic_layers(static.model) and math.isfinite(static.history[0]["loss"])


def test_gate_grad_clip_bounds_the_gates_steps_only(base_run: FitResult, engine_data, make_base_config,
                                                    tmp_path) -> None:  # fmt: skip
    """optim.gate_grad_clip clips the gates' gradient norm alone: a tiny bound all but freezes the gates
    while the backbone trains as without it."""
    def fine_tune(folder: str, clip: float | None) -> tuple[float, float]:
        config = make_base_config(
            engine_data, tmp_path / folder, stage="dynamic", base_checkpoint=base_run.checkpoint, epochs=1,
            dynamic=DynamicSpec(search_space=2), optim=OptimConfig(lr=0.01, gate_lr_mult=10, gate_grad_clip=clip),
        )  # fmt: skip
        torch.manual_seed(config.seed)
        start = build_run_model(config, num_classes=2).state_dict()
        end = fit(config).model.state_dict()
        moved = {k: float((end[k] - start[k]).abs().max()) for k in start if start[k].is_floating_point()
                 and "running" not in k}  # fmt: skip
        gate = max(v for k, v in moved.items() if ".gate." in k)
        backbone = max(v for k, v in moved.items() if ".gate." not in k and "_ops." not in k)
        return gate, backbone

    gate_free, backbone_free = fine_tune("free", None)
    gate_clipped, backbone_clipped = fine_tune("clipped", 1e-9)
    assert gate_free > 1e-3 and backbone_free > 1e-4
    assert gate_clipped < 1e-2 * gate_free  # only weight decay moves them
    assert backbone_clipped > 0.1 * backbone_free


def test_unreadable_videos_are_counted_every_epoch_also_when_they_go_bad_mid_run(engine_data, make_base_config,
                                                                                   tmp_path) -> None:  # fmt: skip
    """A missing video in each list, and one validation video corrupted after the first epoch: counted, per
    epoch, in the metrics the trial's run logs."""
    import shutil

    from vared_core.engine import data_lists

    train_list, val_list = data_lists(engine_data)
    root = tmp_path / "copy"
    shutil.copytree(train_list.parent / "videos", root / "videos")
    for name, src in (("train.csv", train_list), ("val.csv", val_list)):
        (root / name).write_text(src.read_text() + "videos/pan_left/gone.mp4,1,0,0\n")
    victim = root / val_list.read_text().splitlines()[1].split(",")[0]
    data = engine_data.model_copy(update={"synthetic": None, "train_list": root / "train.csv",
                                          "val_list": root / "val.csv", "root": root})  # fmt: skip

    def corrupt_after_first(epoch: int, metrics: dict, ckpt: Path) -> None:
        if epoch == 1:
            victim.write_bytes(b"not a video any more")

    result = fit(make_base_config(data, tmp_path / "run", epochs=2, eval_every=1), on_epoch=corrupt_after_first)
    counts = [(h["skipped_videos_train"], h["skipped_videos_val"]) for h in result.history]
    assert counts == [(1.0, 1.0), (1.0, 2.0)]
