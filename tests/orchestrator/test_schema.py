"""The study model: shipped studies load, grid cells and trials are the right TrainConfigs, paths and tracking."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.schema import BASE_OWNED, DIMS, TRIAL_OWNED, BaseRecipe, Distribution, Study, TrialRecipe
from orchestrator.validation import StudyError, load_study, parse_overrides, validate_study
from vared_core.engine import TrainConfig

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


# -- the shipped studies ---------------------------------------------------------------------------


def test_the_shipped_studies_are_there() -> None:
    assert {p.stem for p in STUDIES} >= {"smoke", "ablation", "lambda", "search_space", "backbones", "finetune", "multi_gpu"}
    assert load_study(REPO / "studies" / "finetune.yaml").recipe == "seed"


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_loads(path: Path) -> None:
    assert validate_study(path) == []
    study = load_study(path)
    assert study.name == path.stem and study.source == path.absolute()
    assert study.storage.is_absolute() and study.storage.is_relative_to(REPO / "runs")
    assert study.data.synthetic is not None and study.data.synthetic.root.is_relative_to(REPO / "runs")
    assert study.objective_senses() == (["video_top1", "gflops_avg"], ["max", "min"])
    assert study.resources.gpu == 0  # CPU-sized by default
    for cell in study.grid_cells():
        base = study.base_config(Path("/o/base"), {k: v for k, v in cell.items() if k in study.base_keys()})
        trial = study.trial_config(cell, Path("/o/trial"), Path("/o/base/ckpt"))
        assert (base.stage, trial.stage) == ("base" if study.recipe == "static_base" else "dynamic", "dynamic")
        if study.recipe == "seed":  # the fine-tune continues the base's own dynamic layers
            assert base.dynamic == trial.dynamic and base.base_checkpoint is None and base.lambda_e == 0
        assert trial.model == base.model and trial.data == base.data


def test_smoke_study_is_small(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study = load_study(REPO / "studies" / "smoke.yaml")
    trials = len(study.grid_cells()) * study.search.num_samples
    assert 3 <= trials <= 6 and study.base_keys() == set()
    assert study.base.model == "r2plus1d_18_tiny" and study.resources.cpu == 1 and study.max_concurrent == 2
    assert study.search.sample["lambda_e"].kind == "loguniform"
    assert study.tracking_uri() == f"sqlite:///{REPO}/runs/smoke/mlflow.db" and study.experiment_name() == "smoke"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")  # a deployment moves it by environment
    assert study.tracking_uri() == "http://mlflow:5000"


def test_study_axes_match_the_seed_tables() -> None:
    ablation = load_study(REPO / "studies" / "ablation.yaml")
    assert {c["dims"] for c in ablation.grid_cells()} == set(DIMS)
    assert ablation.base_keys() == {"data.num_frames"}
    backbones = load_study(REPO / "studies" / "backbones.yaml")
    assert [c["model"] for c in backbones.grid_cells()] == [
        "r2plus1d_18_tiny", "i3d_inception_v2_tiny", "x3d_m_tiny", "tsn_resnet50_tiny"]  # fmt: skip
    assert backbones.base_keys() == {"model"}
    space = load_study(REPO / "studies" / "search_space.yaml")
    assert sorted({c["dynamic.search_space"] for c in space.grid_cells()}) == [2, 3]
    lam = load_study(REPO / "studies" / "lambda.yaml")
    assert lam.search.sampler == "nsga2" and lam.grid_cells() == [{}] and lam.trial.lambda_e == 0.8


# -- what a study builds ----------------------------------------------------------------------------


def test_grid_cells_are_the_cross_product_in_yaml_order(tmp_path: Path, make_study, write_file) -> None:
    search = {"grid": {"dims": ["none", "temporal", "channel", "both"], "dynamic.search_space": [2, 3]}}
    study = load_study(write_file(tmp_path, make_study(search=search)))
    cells = study.grid_cells()
    assert len(cells) == 8 and list(cells[0]) == ["dims", "dynamic.search_space"]
    assert cells[:3] == [{"dims": "none", "dynamic.search_space": 2}, {"dims": "none", "dynamic.search_space": 3},
                         {"dims": "temporal", "dynamic.search_space": 2}]  # fmt: skip
    assert load_study(write_file(tmp_path, make_study(search={}))).grid_cells() == [{}]


def test_trial_config_expands_dims_and_dotted_keys(tmp_path: Path, make_study, write_file) -> None:
    study = load_study(write_file(tmp_path, make_study()))
    for dims, (temporal, channel) in DIMS.items():
        cfg = study.trial_config({"dims": dims, "dynamic.search_space": 3, "optim.lr": 0.5, "lambda_e": 2.0},
                                 Path("/o/t"), Path("/o/b/ckpt"))  # fmt: skip
        assert isinstance(cfg, TrainConfig) and cfg.stage == "dynamic"
        assert (cfg.dynamic.temporal, cfg.dynamic.channel, cfg.dynamic.search_space) == (temporal, channel, 3)
        assert cfg.optim.lr == 0.5 and cfg.optim.momentum == 0.8  # the trial's other optim fields stay
        assert cfg.lambda_e == 2.0 and cfg.epochs == 2
        assert cfg.model == "r2plus1d_18_tiny" and cfg.seed == 7  # from base
        assert cfg.output_dir == Path("/o/t") and cfg.base_checkpoint == Path("/o/b/ckpt")
    assert study.trial_config({}, Path("/o/t"), None).dynamic.search_space == 2  # defaults alone
    assert study.trial == TrialRecipe.model_validate(make_study()["trial"])  # nothing written back into the study


def test_base_config_is_the_base_recipe(tmp_path: Path, make_study, write_file) -> None:
    study = load_study(write_file(tmp_path, make_study()))
    cfg = study.base_config(Path("/o/base"))
    assert (cfg.stage, cfg.dynamic, cfg.epochs, cfg.optim.lr, cfg.seed) == ("base", None, 1, 0.02, 7)
    assert cfg.output_dir == Path("/o/base") and cfg.data == study.data
    with pytest.raises(ValueError, match="does not change the base model"):
        study.base_config(Path("/o/base"), {"lambda_e": 1.0})


def test_the_seeds_recipe_is_the_default_and_its_base_is_the_dynamic_model_from_scratch(tmp_path: Path, make_study, write_file) -> None:
    raw = make_study(search={"grid": {"dims": ["temporal", "both"], "lambda_e": [0.8, 2.0]}})
    del raw["recipe"]
    study = load_study(write_file(tmp_path, raw))
    assert study.recipe == "seed" and study.base_keys() == {"dims"}  # each dynamic model is its own base
    base = study.base_config(Path("/o/b"), {"dims": "temporal"})
    assert (base.stage, base.lambda_e, base.base_checkpoint, base.epochs) == ("dynamic", 0.0, None, 1)
    assert (base.dynamic.search_space, base.dynamic.temporal, base.dynamic.channel) == (2, True, False)
    trial = study.trial_config({"dims": "temporal", "lambda_e": 2.0}, Path("/o/t"), Path("/o/b/ckpt"))
    assert trial.dynamic == base.dynamic and (trial.lambda_e, trial.epochs) == (2.0, 2)
    with pytest.raises(ValueError, match="does not change the base model"):
        study.base_config(Path("/o/b"), {"lambda_e": 1.0})
    sampled = make_study(search={"sample": {"dynamic.search_space": {"choice": [2, 3]}}, "num_samples": 2})
    del sampled["recipe"]
    problems = validate_study(write_file(tmp_path, sampled, "sampled.yaml"))
    assert any("dynamic.search_space" in p and "changes the base model" in p for p in problems), problems
    static = make_study(recipe="static_base")
    assert load_study(write_file(tmp_path, static, "static.yaml")).base_config(Path("/o/b")).stage == "base"
    bad = validate_study(write_file(tmp_path, make_study(recipe="twostage"), "bad.yaml"))
    assert any("recipe" in p and "seed" in p for p in bad), bad


def test_data_and_model_axes_change_the_base(tmp_path: Path, make_study, write_file) -> None:
    search = {"grid": {"model": ["r2plus1d_18_tiny", "x3d_m_tiny"], "data.num_frames": [4, 8], "dims": ["both"],
                       "optim.lr": [0.1]}}  # fmt: skip
    study = load_study(write_file(tmp_path, make_study(search=search)))
    assert study.base_keys() == {"model", "data.num_frames"}
    base = study.base_config(Path("/o/b"), {"model": "x3d_m_tiny", "data.num_frames": 8})
    assert (base.model, base.data.num_frames, base.optim.lr) == ("x3d_m_tiny", 8, 0.02)
    cell = study.grid_cells()[-1]
    trial = study.trial_config(cell, Path("/o/t"), None)
    assert (trial.model, trial.data.num_frames, trial.optim.lr) == ("x3d_m_tiny", 8, 0.1)


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path, make_study, write_file) -> None:
    data = {"train_list": "lists/train.csv", "val_list": "/abs/val.csv", "root": "../videos"}
    search = {"grid": {"data.root": ["../other", "/abs/videos"]}, "sampler": "grid"}
    path = write_file(tmp_path / "studies", make_study(storage="../runs/x", data=data, search=search))
    study = load_study(path)
    assert study.storage == tmp_path / "runs" / "x"
    assert study.tracking_uri() == f"sqlite:///{tmp_path}/runs/x/mlflow.db" and study.tracking_uri().startswith("sqlite:////")
    assert study.data.train_list == tmp_path / "studies" / "lists" / "train.csv"
    assert study.data.val_list == Path("/abs/val.csv") and study.data.root == tmp_path / "videos"
    roots = [study.trial_config(c, Path("/o"), None).data.root for c in study.grid_cells()]
    assert roots == [tmp_path / "other", Path("/abs/videos")]
    synth = load_study(write_file(tmp_path / "s2", make_study()))
    assert synth.data.synthetic.root == tmp_path / "s2" / "synth"


def test_tracking_and_experiment_overrides(tmp_path: Path, make_study, write_file) -> None:
    study = load_study(write_file(tmp_path, make_study(tracking={"uri": "http://mlflow:5000", "experiment": "e"})))
    assert (study.tracking_uri(), study.experiment_name()) == ("http://mlflow:5000", "e")


def test_the_environment_moves_the_tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_study, write_file) -> None:
    study = load_study(write_file(tmp_path, make_study(tracking={"uri": "sqlite:///x.db"})))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert study.tracking_uri() == "http://mlflow:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert study.tracking_uri() == "sqlite:///x.db"


def test_set_overrides_any_field_and_axis_names_keep_their_dots(tmp_path: Path, make_study, write_file) -> None:
    path = write_file(tmp_path, make_study())
    sets = parse_overrides(["storage=/shared/runs/t", "trial.epochs=5", "search.grid.optim.lr=[0.1, 0.2]",
                            "tracking.uri=http://mlflow:5000"])  # fmt: skip
    assert sets["trial.epochs"] == 5 and sets["search.grid.optim.lr"] == [0.1, 0.2]
    study = load_study(path, sets)
    assert study.storage == Path("/shared/runs/t") and study.trial.epochs == 5
    assert study.search.grid["optim.lr"] == [0.1, 0.2] and study.tracking.uri == "http://mlflow:5000"
    assert load_study(path).trial.epochs == 2  # the file is untouched


def test_bad_overrides_are_named_as_such(tmp_path: Path, make_study, write_file) -> None:
    path = write_file(tmp_path, make_study())
    problems = validate_study(path, parse_overrides(["trial.epochs=many"]))
    assert len(problems) == 1 and "trial.epochs" in problems[0] and "(set by --set trial.epochs)" in problems[0]
    with pytest.raises(StudyError, match="KEY=VALUE"):
        parse_overrides(["trial.epochs"])


def test_study_round_trips_and_pickles(tmp_path: Path, make_study, write_file) -> None:
    study = load_study(write_file(tmp_path, make_study(scheduler={"asha": {}}, objectives={"loss": "min"}, reference=None)))
    dumped = study.model_dump(mode="json")
    assert "source" not in dumped and dumped["search"]["sample"] == {"lambda_e": {"loguniform": [0.1, 4.0]}}
    assert Study.model_validate({**dumped, "source": study.source}) == study
    assert pickle.loads(pickle.dumps(study)) == study  # Ray ships it to every trial
    assert study.scheduler.asha.grace_period == 1 and study.scheduler.asha.reduction_factor == 2


def test_distribution() -> None:
    d = Distribution.model_validate({"int": [1, 4]})
    assert (d.kind, d.args, d.extremes()) == ("int", (1, 4), [1, 4])
    assert Distribution.model_validate({"choice": ["a", 2, None]}).extremes() == ["a", 2, None]
    for bad in ({"uniform": [2, 1]}, {"loguniform": [0, 1]}, {"int": [1.5, 3]}, {"choice": []}, {"normal": [0, 1]},
                {"uniform": [0, 1], "int": [0, 1]}):  # fmt: skip
        with pytest.raises(ValueError):
            Distribution.model_validate(bad)


def test_loading_a_study_imports_no_ray_optuna_or_mlflow() -> None:
    code = "import sys, orchestrator.schema, orchestrator.validation; print(sorted({'ray', 'optuna', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_recipes_are_train_config_fields_less_the_ones_the_study_owns() -> None:
    for recipe, owned in ((BaseRecipe, BASE_OWNED), (TrialRecipe, TRIAL_OWNED)):
        assert set(recipe.model_fields) | set(owned) == set(TrainConfig.model_fields)
        assert not set(recipe.model_fields) & set(owned)
        for key in (*owned, "bogus"):  # refused by the type itself, before any study is built
            with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
                recipe.model_validate({key: 1})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        TrialRecipe.model_validate({"epochs": 0})  # TrainConfig's bounds come along
    given = TrialRecipe.model_validate({"epochs": 2, "optim": {"lr": 0.1}}).given()
    assert given == {"epochs": 2, "optim": {"lr": 0.1}}  # nothing filled in that the file did not say


def test_a_bad_recipe_value_is_reported_once(tmp_path: Path, make_study, write_file) -> None:
    study = make_study()
    study["trial"]["epochs"] = "two"
    problems = validate_study(write_file(tmp_path, study))
    assert [p for p in problems if "trial.epochs" in p] == [p for p in problems if "valid integer" in p], problems
    assert len([p for p in problems if "trial.epochs" in p]) == 1, problems
