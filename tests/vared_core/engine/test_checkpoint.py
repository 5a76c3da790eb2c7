"""Checkpoint folders: saving with pruning, finding the newest, setting aside what a restarted run finds."""
from __future__ import annotations

import torch

from vared_core.engine import checkpoint_dirs, latest_checkpoint, load_checkpoint, save_checkpoint
from vared_core.engine.checkpoint import set_aside_later


def _save(out, epoch: int, keep: int | None = None):
    return save_checkpoint(out, {"model": {"w": torch.full((2,), float(epoch))}, "config": {"epochs": 9}},
                           epoch=epoch, keep=keep)


def test_pruning_keeps_the_newest(tmp_path) -> None:
    for e in range(1, 5):
        _save(tmp_path, e, keep=2)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["epoch_0003", "epoch_0004"]
    assert latest_checkpoint(tmp_path).name == "epoch_0004"
    assert float(load_checkpoint(latest_checkpoint(tmp_path))["model"]["w"][0]) == 4.0


def test_later_checkpoints_are_set_aside_not_deleted(tmp_path) -> None:
    for e in (1, 2, 3):
        _save(tmp_path, e)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    assert set_aside_later(tmp_path, 3) is None  # nothing past epoch 3

    dest = set_aside_later(tmp_path, 1)  # resuming from epoch 1: epochs 2 and 3 belong to an attempt that went on
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["epoch_0001"]
    assert [p.name for p in checkpoint_dirs(dest)] == ["epoch_0002", "epoch_0003"]
    assert (tmp_path / "metrics.jsonl").is_file()  # a resumed run keeps its history

    dest2 = set_aside_later(tmp_path, 0)  # from scratch: everything, history included, into a new folder
    assert dest2 != dest and checkpoint_dirs(tmp_path) == []
    assert [p.name for p in checkpoint_dirs(dest2)] == ["epoch_0001"]
    assert (dest2 / "metrics.jsonl").read_text() == "{}\n"
    assert float(load_checkpoint(dest / "checkpoints" / "epoch_0003")["model"]["w"][0]) == 3.0



def test_an_older_checkpoints_dynamic_include_loads_as_dynamic_layers(tmp_path) -> None:
    from vared_core.engine import TrainConfig

    old = {"model": "r2plus1d_18_tiny", "stage": "dynamic", "epochs": 1, "output_dir": str(tmp_path),
           "data": {"synthetic": {"root": str(tmp_path)}}, "dynamic": {"search_space": 2}, "dynamic_include": ["layer1.*"]}
    path = save_checkpoint(tmp_path, {"model": {}, "config": old}, epoch=1)
    config = TrainConfig.model_validate(load_checkpoint(path)["config"])
    assert config.dynamic.layers == ("layer1.*",) and config.dynamic.search_space == 2


def test_an_older_checkpoints_flat_dynamic_spec_loads_in_its_groups(tmp_path) -> None:
    from vared_core.engine import TrainConfig

    old = {"model": "r2plus1d_18_tiny", "stage": "dynamic", "epochs": 1, "output_dir": str(tmp_path),
           "data": {"synthetic": {"root": str(tmp_path)}},
           "dynamic": {"search_space": 3, "gate_hidden": 8, "cheap_zero_init": True, "normalize_weights": True,
                       "skip_layers": False}}  # fmt: skip
    path = save_checkpoint(tmp_path, {"model": {}, "config": old}, epoch=1)
    spec = TrainConfig.model_validate(load_checkpoint(path)["config"]).dynamic
    assert (spec.search_space, spec.gate.hidden, spec.cheap_ops.zero_init) == (3, 8, True)
    assert spec.stability.normalize_weights and not spec.stability.skip_layers
