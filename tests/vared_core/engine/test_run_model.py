"""`build_run_model` / `load_model`: a run's model from its start checkpoint, and refusals that name the file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from vared_core import DynamicSpec, dynamic_layers
from vared_core.engine import (
    CheckpointError,
    DataConfig,
    SyntheticData,
    TrainConfig,
    build_run_model,
    load_model,
    save_checkpoint,
)

DATA = DataConfig(synthetic=SyntheticData(root="unused"), num_frames=4, crop_size=32, flip=False)  # geometry only: nothing is read


def _config(tmp_path: Path, **fields: object) -> TrainConfig:
    return TrainConfig(model="r2plus1d_18_tiny", epochs=1, output_dir=tmp_path / "run", data=DATA, **fields)


def _saved(tmp_path: Path, config: TrainConfig, seed: int) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint of ``config``'s untrained model built at ``seed``: its folder and its weights."""
    torch.manual_seed(seed)
    model = build_run_model(config, num_classes=3, load_base=False)
    state = {"config": config.to_dict(), "num_classes": 3, "model": model.state_dict()}
    return save_checkpoint(tmp_path / f"saved_{seed}", state, epoch=1), model.state_dict()


def test_a_base_checkpoint_starts_the_dynamic_model_with_its_weights(tmp_path: Path) -> None:
    ckpt, weights = _saved(tmp_path, _config(tmp_path), seed=1)
    torch.manual_seed(2)
    model = build_run_model(_config(tmp_path, stage="dynamic", dynamic=DynamicSpec(search_space=2),
                                    base_checkpoint=ckpt), num_classes=3)  # fmt: skip
    assert dynamic_layers(model)
    loaded = model.state_dict()
    # a dynamic conv keeps its static weights under their names: every one of them is the checkpoint's
    assert set(weights) <= set(loaded) and len(loaded) > len(weights)
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())


def test_a_dynamic_checkpoint_reloads_gates_and_cheap_ops(tmp_path: Path) -> None:
    config = _config(tmp_path, stage="dynamic", dynamic=DynamicSpec(search_space=2))
    ckpt, weights = _saved(tmp_path, config, seed=3)
    model, loaded_config = load_model(ckpt)
    assert loaded_config == config
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert any("gate" in k for k in weights)


def test_start_checkpoints_that_do_not_fit_are_refused_by_name(tmp_path: Path) -> None:
    ckpt, _ = _saved(tmp_path, _config(tmp_path), seed=1)
    other_model = TrainConfig(model="x3d_m_tiny", epochs=1, output_dir=tmp_path / "x", data=DATA, stage="dynamic",
                              dynamic=DynamicSpec(search_space=2), base_checkpoint=ckpt)  # fmt: skip
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(ckpt))}.*x3d_m_tiny"):
        build_run_model(other_model, num_classes=3)
    dyn, _ = _saved(tmp_path, _config(tmp_path, stage="dynamic", dynamic=DynamicSpec(search_space=2)), seed=4)
    with pytest.raises(CheckpointError, match=r"dynamic\.search_space: 2 there, 3 here"):
        build_run_model(_config(tmp_path, stage="dynamic", dynamic=DynamicSpec(search_space=3), base_checkpoint=dyn), 3)
    with pytest.raises(CheckpointError, match="cannot start a base run"):
        build_run_model(_config(tmp_path, base_checkpoint=dyn), 3)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(ckpt))}: weights do not fit r2plus1d_18_tiny with 5 classes"):
        build_run_model(_config(tmp_path, stage="dynamic", dynamic=DynamicSpec(search_space=2), base_checkpoint=ckpt), 5)
