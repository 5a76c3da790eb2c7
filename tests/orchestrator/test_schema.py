"""The study schema: shipped studies load, trials are the right TrainConfigs, bad files name every problem."""
from __future__ import annotations

import copy
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.schema import DIMS, Distribution, Study, StudyError, load_study, parse_overrides, validate_study
from orchestrator.yaml_lines import compose, format_path, line_of
from vared_core.engine import TrainConfig

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def _study(**changes: Any) -> dict[str, Any]:
    """A small valid study as a dict; top-level ``changes`` replace whole sections."""
    study = {
        "name": "t",
        "storage": "runs",
        "recipe": "static_base",
        "data": {"synthetic": {"root": "synth", "classes": 2, "videos_per_class": 4, "frames": 8, "size": 32},
                 "flip": False, "num_frames": 4, "crop_size": 32, "batch_size": 2, "num_workers": 0},
        "base": {"model": "r2plus1d_18_tiny", "epochs": 1, "seed": 7, "optim": {"lr": 0.02}},
        "trial": {"epochs": 2, "lambda_e": 0.8, "optim": {"momentum": 0.8}, "dynamic": {"search_space": 2}},
        "search": {"grid": {"dims": ["temporal", "both"]}, "sample": {"lambda_e": {"loguniform": [0.1, 4.0]}},
                   "num_samples": 2},
        "objectives": {"video_top1": "max", "gflops_avg": "min"},
        "reference": {"video_top1": 0.0, "gflops_avg": 1.0},
    }  # fmt: skip
    study.update(copy.deepcopy(changes))
    return study


def _write(folder: Path, study: dict[str, Any] | str, name: str = "study.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(study if isinstance(study, str) else yaml.safe_dump(study, sort_keys=False))
    return path


# -- the shipped studies ---------------------------------------------------------------------------


def test_the_shipped_studies_are_there() -> None:
    assert {p.stem for p in STUDIES} >= {"smoke", "ablation", "lambda", "search_space", "backbones", "finetune"}
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
    assert study.base["model"] == "r2plus1d_18_tiny" and study.resources.cpu == 1 and study.max_concurrent == 2
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
    assert lam.search.sampler == "nsga2" and lam.grid_cells() == [{}] and lam.trial["lambda_e"] == 0.8


# -- what a study builds ----------------------------------------------------------------------------


def test_grid_cells_are_the_cross_product_in_yaml_order(tmp_path: Path) -> None:
    search = {"grid": {"dims": ["none", "temporal", "channel", "both"], "dynamic.search_space": [2, 3]}}
    study = load_study(_write(tmp_path, _study(search=search)))
    cells = study.grid_cells()
    assert len(cells) == 8 and list(cells[0]) == ["dims", "dynamic.search_space"]
    assert cells[:3] == [{"dims": "none", "dynamic.search_space": 2}, {"dims": "none", "dynamic.search_space": 3},
                         {"dims": "temporal", "dynamic.search_space": 2}]  # fmt: skip
    assert load_study(_write(tmp_path, _study(search={}))).grid_cells() == [{}]


def test_trial_config_expands_dims_and_dotted_keys(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, _study()))
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
    assert study.trial == _study()["trial"]  # nothing written back into the study


def test_base_config_is_the_base_recipe(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, _study()))
    cfg = study.base_config(Path("/o/base"))
    assert (cfg.stage, cfg.dynamic, cfg.epochs, cfg.optim.lr, cfg.seed) == ("base", None, 1, 0.02, 7)
    assert cfg.output_dir == Path("/o/base") and cfg.data == study.data
    with pytest.raises(ValueError, match="does not change the base model"):
        study.base_config(Path("/o/base"), {"lambda_e": 1.0})


def test_the_seeds_recipe_is_the_default_and_its_base_is_the_dynamic_model_from_scratch(tmp_path: Path) -> None:
    raw = _study(search={"grid": {"dims": ["temporal", "both"], "lambda_e": [0.8, 2.0]}})
    del raw["recipe"]
    study = load_study(_write(tmp_path, raw))
    assert study.recipe == "seed" and study.base_keys() == {"dims"}  # each dynamic model is its own base
    base = study.base_config(Path("/o/b"), {"dims": "temporal"})
    assert (base.stage, base.lambda_e, base.base_checkpoint, base.epochs) == ("dynamic", 0.0, None, 1)
    assert (base.dynamic.search_space, base.dynamic.temporal, base.dynamic.channel) == (2, True, False)
    trial = study.trial_config({"dims": "temporal", "lambda_e": 2.0}, Path("/o/t"), Path("/o/b/ckpt"))
    assert trial.dynamic == base.dynamic and (trial.lambda_e, trial.epochs) == (2.0, 2)
    with pytest.raises(ValueError, match="does not change the base model"):
        study.base_config(Path("/o/b"), {"lambda_e": 1.0})
    sampled = _study(search={"sample": {"dynamic.search_space": {"choice": [2, 3]}}, "num_samples": 2})
    del sampled["recipe"]
    problems = validate_study(_write(tmp_path, sampled, "sampled.yaml"))
    assert any("dynamic.search_space" in p and "changes the base model" in p for p in problems), problems
    static = _study(recipe="static_base")
    assert load_study(_write(tmp_path, static, "static.yaml")).base_config(Path("/o/b")).stage == "base"
    bad = validate_study(_write(tmp_path, _study(recipe="twostage"), "bad.yaml"))
    assert any("recipe" in p and "seed" in p for p in bad), bad


def test_data_and_model_axes_change_the_base(tmp_path: Path) -> None:
    search = {"grid": {"model": ["r2plus1d_18_tiny", "x3d_m_tiny"], "data.num_frames": [4, 8], "dims": ["both"],
                       "optim.lr": [0.1]}}  # fmt: skip
    study = load_study(_write(tmp_path, _study(search=search)))
    assert study.base_keys() == {"model", "data.num_frames"}
    base = study.base_config(Path("/o/b"), {"model": "x3d_m_tiny", "data.num_frames": 8})
    assert (base.model, base.data.num_frames, base.optim.lr) == ("x3d_m_tiny", 8, 0.02)
    cell = study.grid_cells()[-1]
    trial = study.trial_config(cell, Path("/o/t"), None)
    assert (trial.model, trial.data.num_frames, trial.optim.lr) == ("x3d_m_tiny", 8, 0.1)


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path) -> None:
    data = {"train_list": "lists/train.csv", "val_list": "/abs/val.csv", "root": "../videos"}
    search = {"grid": {"data.root": ["../other", "/abs/videos"]}, "sampler": "grid"}
    path = _write(tmp_path / "studies", _study(storage="../runs/x", data=data, search=search))
    study = load_study(path)
    assert study.storage == tmp_path / "runs" / "x"
    assert study.tracking_uri() == f"sqlite:///{tmp_path}/runs/x/mlflow.db" and study.tracking_uri().startswith("sqlite:////")
    assert study.data.train_list == tmp_path / "studies" / "lists" / "train.csv"
    assert study.data.val_list == Path("/abs/val.csv") and study.data.root == tmp_path / "videos"
    roots = [study.trial_config(c, Path("/o"), None).data.root for c in study.grid_cells()]
    assert roots == [tmp_path / "other", Path("/abs/videos")]
    synth = load_study(_write(tmp_path / "s2", _study()))
    assert synth.data.synthetic.root == tmp_path / "s2" / "synth"


def test_tracking_and_experiment_overrides(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, _study(tracking={"uri": "http://mlflow:5000", "experiment": "e"})))
    assert (study.tracking_uri(), study.experiment_name()) == ("http://mlflow:5000", "e")


def test_the_environment_moves_the_tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = load_study(_write(tmp_path, _study(tracking={"uri": "sqlite:///x.db"})))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert study.tracking_uri() == "http://mlflow:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert study.tracking_uri() == "sqlite:///x.db"


def test_set_overrides_any_field_and_axis_names_keep_their_dots(tmp_path: Path) -> None:
    path = _write(tmp_path, _study())
    sets = parse_overrides(["storage=/shared/runs/t", "trial.epochs=5", "search.grid.optim.lr=[0.1, 0.2]",
                            "tracking.uri=http://mlflow:5000"])  # fmt: skip
    assert sets["trial.epochs"] == 5 and sets["search.grid.optim.lr"] == [0.1, 0.2]
    study = load_study(path, sets)
    assert study.storage == Path("/shared/runs/t") and study.trial["epochs"] == 5
    assert study.search.grid["optim.lr"] == [0.1, 0.2] and study.tracking.uri == "http://mlflow:5000"
    assert load_study(path).trial["epochs"] == 2  # the file is untouched


def test_bad_overrides_are_named_as_such(tmp_path: Path) -> None:
    path = _write(tmp_path, _study())
    problems = validate_study(path, parse_overrides(["trial.epochs=many"]))
    assert len(problems) == 1 and "trial.epochs" in problems[0] and "(set by --set trial.epochs)" in problems[0]
    with pytest.raises(StudyError, match="KEY=VALUE"):
        parse_overrides(["trial.epochs"])


def test_study_round_trips_and_pickles(tmp_path: Path) -> None:
    study = load_study(_write(tmp_path, _study(scheduler={"asha": {}}, objectives={"loss": "min"}, reference=None)))
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


def test_schema_imports_no_ray_optuna_or_mlflow() -> None:
    code = "import sys, orchestrator.schema; print(sorted({'ray', 'optuna', 'mlflow'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- bad studies ------------------------------------------------------------------------------------


def _grid(**axes: list[Any]) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["search"]["grid"].update(axes)


def _put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(s: dict[str, Any]) -> None:
        *parents, leaf = path.split("/")
        for p in parents:
            s = s.setdefault(p, {})
        s[leaf] = value

    return change


BAD: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "wrong type": (_put("max_concurrent", "two"), "max_concurrent: Input should be a valid integer"),
    "wrong type in a recipe": (_put("base/epochs", "four"), "base.epochs: Input should be a valid integer"),
    "wrong nested type": (_put("resources/gpu", "one"), "resources.gpu: Input should be a valid number"),
    "unknown top-level key": (_put("colour", "red"), "colour: unknown key 'colour'; allowed: name,"),
    "unknown nested key": (_put("resources/gpus", 1), "resources.gpus: unknown key 'gpus'; allowed: cpu, gpu"),
    "unknown data key": (_put("data/flipp", True), "data.flipp: unknown key 'flipp'"),
    "unknown key in base": (_put("base/bogus", 1), "base.bogus: unknown key 'bogus'; allowed: model,"),
    "unknown key in trial": (_put("trial/optim", {"lrr": 1}), "trial.optim.lrr: unknown key 'lrr'; allowed: lr,"),
    "unknown DynamicSpec key": (_put("trial/dynamic", {"spaces": 2}), "trial.dynamic.spaces: unknown key 'spaces'"),
    "source is no key": (_put("source", "x.yaml"), "source: unknown key 'source'"),
    "missing section": (lambda s: s.pop("data"), "data: required field is missing"),
    "missing trial field": (lambda s: s["trial"].pop("epochs"), "trial.epochs: required field is missing"),
    "bad name": (_put("name", "a b"), "name: String should match pattern"),
    "bad metric": (_put("objectives", {"acc": "max"}), "objectives.acc: unknown metric 'acc'; known: clip_top1,"),
    "bad reference metric": (_put("reference", {"video_top1": 0, "gflops_avg": 1, "acc": 1}),
                             "reference.acc: unknown metric 'acc'"),
    "bad sense": (_put("objectives/gflops_avg", "minimize"), "objectives.gflops_avg: Input should be 'max' or 'min'"),
    "three objectives": (_put("objectives/loss", "min"), "objectives: Dictionary should have at most 2 items"),
    "reference misses an objective": (_put("reference", {"video_top1": 0.0}),
                                      "reference: the reference point needs a value for every objective; missing: gflops_avg"),
    "empty grid list": (_grid(lambda_e=[]), "search.grid.lambda_e: empty list: give at least one value"),
    "unknown axis": (_grid(**{"optim.lrr": [0.1]}), "search.grid.optim.lrr: 'optim.lrr' is not a TrainConfig field path"),
    "axis into a value": (_grid(**{"lambda_e.x": [1]}), "search.grid.lambda_e.x: 'lambda_e.x' is not a TrainConfig"),
    "axis set by the orchestrator": (_grid(output_dir=["a"]), "search.grid.output_dir: 'output_dir' is set by the orch"),
    "bad dims value": (_grid(dims=["temporal", "spatial"]), "search.grid.dims[1]: dims value 'spatial' is not one of"),
    "bad DynamicSpec value via a grid axis": (_grid(**{"dynamic.search_space": [2, 0]}),
                                              "search.grid.dynamic.search_space[1]: DynamicSpec.search_space must be"),
    "bad data value via a grid axis": (_grid(**{"data.num_frames": [0]}),
                                       "search.grid.data.num_frames[0]: Input should be greater than or equal to 1"),
    "unknown backbone via a grid axis": (_grid(model=["r2plus1d_18_tiny", "resnet9000"]),
                                         "search.grid.model[1]: unknown backbone 'resnet9000'; known: i3d_inception_v2,"),
    "bad sampled end": (_put("search/sample", {"optim.momentum": {"uniform": [0.5, 1.5]}}),
                        "search.sample.optim.momentum.uniform[1]: Input should be less than 1"),
    "uniform on an integer field": (_put("search/sample", {"epochs": {"uniform": [1, 3]}}),
                                    "search.sample.epochs: 'epochs' is an integer field: sample it with int or choice"),
    "bad distribution": (_put("search/sample/lambda_e", {"loguniform": [0, 4]}), "search.sample.lambda_e: loguniform needs 0 < low"),
    "unknown distribution": (_put("search/sample/lambda_e", {"normal": [0, 4]}),
                             "search.sample.lambda_e: give exactly one of uniform, loguniform, int, choice"),
    "axis in grid and sample": (_grid(lambda_e=[1.0]), "search.sample.lambda_e: 'lambda_e' is both a grid axis and a sampled"),
    "sampled base axis": (_put("search/sample", {"data.num_frames": {"int": [4, 8]}}),
                          "search.sample.data.num_frames: 'data.num_frames' changes the base model"),
    "dims beside dynamic.channel": (_grid(**{"dynamic.channel": [True]}),
                                    "search.grid.dynamic.channel: 'dynamic.channel' conflicts with the dims axis"),
    "grid sampler with sampled axes": (_put("search/sampler", "grid"), "search.sampler: sampler 'grid' runs the grid axes only"),
    "num_samples without sampled axes": (lambda s: s["search"].pop("sample"), "search.num_samples: num_samples is 2, but"),
    "ASHA with two objectives": (_put("scheduler", {"asha": {"grace_period": 1}}), "scheduler.asha: ASHA needs a single objective"),
    "bad ASHA factor": (_put("scheduler", {"asha": {"reduction_factor": 1}}),
                        "scheduler.asha.reduction_factor: Input should be greater than 1"),
    "too few cpus": (_put("resources", {"cpu": 0.25}), "resources.cpu: Input should be greater than or equal to 0.5"),
    "model in trial": (_put("trial/model", "x3d_m_tiny"), "trial.model: 'model' does not belong in 'trial'"),
    "dynamic in base": (_put("base/dynamic", {"search_space": 2}), "base.dynamic: 'dynamic' does not belong in 'base'"),
    "data in base": (_put("base/data", {}), "base.data: 'data' does not belong in 'base'"),
    "bad DynamicSpec in trial": (_put("trial/dynamic", {"search_space": 0}), "trial.dynamic: DynamicSpec.search_space must"),
    "bad device in trial": (_put("trial/device", "gpu"), "trial.device: device must be 'auto'"),
    "unknown backbone in base": (_put("base/model", "resnet9000"), "base.model: unknown backbone 'resnet9000'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_study_is_rejected_naming_the_field(case: str, tmp_path: Path) -> None:
    change, expected = BAD[case]
    study = _study()
    change(study)
    path = _write(tmp_path, study)
    problems = validate_study(path)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{path}") for p in problems)
    with pytest.raises(StudyError, match=re.escape(expected)) as info:
        load_study(path)
    assert info.value.problems == problems and isinstance(info.value, ValueError)


def test_asha_with_one_objective_is_fine(tmp_path: Path) -> None:
    study = _study(scheduler={"asha": {"grace_period": 1}}, objectives={"video_top1": "max"}, reference=None)
    assert validate_study(_write(tmp_path, study)) == []


MANY = """\
name: many
storage: runs
colour: red
data:
  synthetic: {root: synth, classes: 2}
  flipp: false
base:
  model: r2plus1d_18_tiny
  epochs: four
trial:
  epochs: 2
search:
  grid:
    dims: [temporal,
           spatial]
    dynamic.search_space: [2, 0]
    optim.lrr: [0.1]
objectives:
  video_top1: max
  gflops_avg: minimize
scheduler: {asha: {grace_period: 1}}
max_concurrent: two
"""


def test_validate_study_lists_every_problem_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, MANY)
    problems = validate_study(path)
    found = []
    for p in problems:
        m = re.match(rf"{re.escape(str(path))}:(\d+): (\S+): ", p)
        assert m, p
        found.append((int(m.group(1)), m.group(2)))
    assert found == [
        (3, "colour"),  # unknown key, top level
        (6, "data.flipp"),  # unknown key, nested
        (9, "base.epochs"),  # wrong type in the base recipe
        (15, "search.grid.dims[1]"),  # a list item on a line of its own
        (16, "search.grid.dynamic.search_space[1]"),
        (17, "search.grid.optim.lrr"),
        (20, "objectives.gflops_avg"),
        (21, "scheduler.asha"),
        (22, "max_concurrent"),  # wrong type, top level
    ], problems


def test_yaml_syntax_error_has_the_parsers_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nstorage: runs\ndata:\n  flip: false\n bad: 1\n")
    [problem] = validate_study(path)
    assert problem.startswith(f"{path}:5: (yaml syntax):"), problem
    with pytest.raises(StudyError, match=":5: "):
        load_study(path)


@pytest.mark.parametrize(("text", "expected"), [("- a\n- b\n", "got a list"), ("", "got an empty file"),
                                                ("just text\n", "got a str")])  # fmt: skip
def test_a_file_that_is_not_a_mapping(text: str, expected: str, tmp_path: Path) -> None:
    [problem] = validate_study(_write(tmp_path, text))
    assert "a study is a mapping of fields" in problem and expected in problem


def test_a_missing_file(tmp_path: Path) -> None:
    assert validate_study(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such study file"]


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    text = yaml.safe_dump(_study(), sort_keys=False) + "name: again\n"
    [problem] = validate_study(_write(tmp_path, text))
    assert ": name: key 'name' is given twice" in problem


def test_yaml_lines() -> None:
    root = compose("a:\n  b.c: [1,\n    2]\n  d: {e: 3}\n")
    assert [line_of(root, p) for p in [("a",), ("a", "b.c", 1), ("a", "d", "e"), ("a", "zz"), ("zz",)]] == [1, 3, 4, 1, None]
    assert format_path(("a", "b.c", 1)) == "a.b.c[1]" and format_path(()) == "(top level)"
