"""`TrainConfig`: typed, serialisable, strict; `load_config` names the file and the field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vared_core import DynamicSpec
from vared_core.engine import ConfigError, TrainConfig, load_config

MINIMAL = {"model": "r2plus1d_18_tiny", "epochs": 2, "output_dir": "runs/x", "data": {"synthetic": {"root": "d"}}}


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config({**MINIMAL, "stage": "dynamic", "dynamic": {"search_space": 3, "channel": False}})
    assert cfg.spec == DynamicSpec(search_space=3, channel=False)
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg
    assert yaml.safe_load(cfg.to_yaml())["dynamic"]["search_space"] == 3


def test_overrides_use_dotted_keys() -> None:
    cfg = load_config(MINIMAL, {"optim.lr": 0.3, "data.batch_size": 2, "seed": 5})
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.seed) == (0.3, 2, 5)


def test_errors_name_the_file_and_every_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "epochs": 0, "optim": {"lr": -1, "nesterof": True}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    for needle in ("bad.yaml: epochs", "bad.yaml: optim.lr", "bad.yaml: optim.nesterof"):
        assert needle in msg


def test_stage_rules() -> None:
    with pytest.raises(ConfigError, match="belong to stage 'dynamic'"):
        load_config({**MINIMAL, "dynamic": {"search_space": 2}})
    with pytest.raises(ConfigError, match="synthetic.*train_list"):
        load_config({**MINIMAL, "data": {"synthetic": {"root": "d"}, "train_list": "t.csv"}})
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent/run.yaml")
    assert TrainConfig.model_validate(MINIMAL).spec is None
