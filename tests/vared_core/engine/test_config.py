"""`TrainConfig`: typed, serialisable, strict; `load_config` names the file and the field."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vared_core import DynamicSpec
from vared_core.engine import ConfigError, DataConfig, OptimConfig, TrainConfig, load_config, resolve_optim
from vared_core.models import get_model_cfg

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


def test_a_config_never_changes_once_built() -> None:
    from pydantic import ValidationError

    cfg = load_config(MINIMAL)
    for target, field in ((cfg, "epochs"), (cfg.optim, "lr"), (cfg.data, "batch_size"), (cfg.data.synthetic, "root")):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(target, field, 3)
    longer = cfg.model_copy(update={"epochs": 5})
    assert (cfg.epochs, longer.epochs) == (2, 5)


def test_errors_name_the_file_and_every_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "epochs": 0, "optim": {"lr": -1, "nesterof": True}}))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    for needle in ("bad.yaml: epochs", "bad.yaml: optim.lr", "bad.yaml: optim.nesterof"):
        assert needle in msg


def test_stage_rules() -> None:
    with pytest.raises(ConfigError, match="belongs to stage 'dynamic'"):
        load_config({**MINIMAL, "dynamic": {"search_space": 2}})
    with pytest.raises(ConfigError, match="synthetic.*train_list"):
        load_config({**MINIMAL, "data": {"synthetic": {"root": "d"}, "train_list": "t.csv"}})
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent/run.yaml")
    assert TrainConfig.model_validate(MINIMAL).spec is None


SEED_RECIPES = {  # appendix A.2 and §4.3: (base lr, fine-tune lr, weight decay) at 96 GPUs × 12 clips
    "r2plus1d_18": (0.18, 0.01, 5e-4),
    "i3d_inception_v2": (1.8, 0.1, 1e-4),
    "x3d_m": (1.8, 0.1, 5e-5),
}


@pytest.mark.parametrize("model", SEED_RECIPES)
def test_full_size_recipes_are_the_seeds_scaled_to_the_total_batch(model: str) -> None:
    base_lr, finetune_lr, wd = SEED_RECIPES[model]
    mcfg = get_model_cfg(model)
    lists = {"train_list": "t.csv", "val_list": "v.csv"}
    scratch = TrainConfig(model=model, epochs=120, output_dir="o", data=DataConfig(**lists, batch_size=12))
    at_seed = resolve_optim(scratch, mcfg, workers=96)
    assert (at_seed.lr, at_seed.weight_decay, at_seed.warmup_epochs, at_seed.total_batch) == (base_lr, wd, 15.0, 1152)
    assert scratch.optim.nesterov and scratch.optim.momentum == 0.9
    eight_gpus = resolve_optim(scratch, mcfg, workers=8)
    assert eight_gpus.lr == pytest.approx(base_lr * 96 / 1152) and eight_gpus.lr_scale == pytest.approx(1 / 12)
    finetune = scratch.model_copy(update={"stage": "dynamic", "base_checkpoint": "b", "epochs": 40})
    ft = resolve_optim(finetune, mcfg, workers=96)
    assert (ft.lr, ft.warmup_epochs, finetune.lambda_e) == (finetune_lr, 0.0, 0.8)
    given = scratch.model_copy(update={"optim": OptimConfig(lr=0.05, warmup_epochs=2)})
    assert (resolve_optim(given, mcfg, workers=8).lr, resolve_optim(given, mcfg).warmup_epochs) == (0.05, 2)


def test_tiny_presets_keep_one_unscaled_lr_and_no_warm_up() -> None:
    cfg = TrainConfig.model_validate(MINIMAL)
    r = resolve_optim(cfg, get_model_cfg(cfg.model), workers=4)
    assert (r.lr, r.warmup_epochs, r.lr_scale) == (get_model_cfg(cfg.model).lr, 0.0, 1.0)


def test_dynamic_include_is_refused_naming_its_new_place(tmp_path) -> None:
    raw = {"model": "r2plus1d_18_tiny", "epochs": 1, "output_dir": str(tmp_path), "stage": "dynamic",
           "data": {"synthetic": {"root": str(tmp_path)}}, "dynamic_include": ["layer1.*"]}
    with pytest.raises(ConfigError, match=r"'dynamic_include' is now 'dynamic.layers'"):
        load_config(raw)
    moved = {k: v for k, v in raw.items() if k != "dynamic_include"} | {"dynamic": {"layers": ["layer1.*"]}}
    assert load_config(moved).dynamic.layers == ("layer1.*",)


def test_a_flat_dynamic_field_of_before_is_refused_naming_its_new_place(tmp_path) -> None:
    raw = {"model": "r2plus1d_18_tiny", "epochs": 1, "output_dir": str(tmp_path), "stage": "dynamic",
           "data": {"synthetic": {"root": str(tmp_path)}}, "dynamic": {"search_space": 2, "normalize_weights": True}}
    with pytest.raises(ConfigError, match=r"'dynamic.normalize_weights' is now 'dynamic.stability.normalize_weights'"):
        load_config(raw)
    raw["dynamic"] = {"search_space": 2, "stability": {"normalize_weights": True}}
    assert load_config(raw).dynamic.stability.normalize_weights


@pytest.mark.parametrize(("key", "value"), [("search_space", True), ("search_space", 2.5), ("gate", {"hidden": True}),
                                            ("cheap_ops", {"kernel": "3"})])  # fmt: skip
def test_a_dynamic_integer_is_never_read_from_a_bool_float_or_string(tmp_path, key: str, value: object) -> None:
    """A config's ``search_space: true`` would otherwise become 1: a silently static network."""
    raw = {"model": "r2plus1d_18_tiny", "epochs": 1, "output_dir": str(tmp_path), "stage": "dynamic",
           "data": {"synthetic": {"root": str(tmp_path)}}, "dynamic": {key: value}}
    with pytest.raises(ConfigError, match=f"dynamic.{key}"):
        load_config(raw)
