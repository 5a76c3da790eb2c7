"""Loading study files: bad files are refused naming every problem with its file, line and field."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.schema import BASE_OWNED, TRIAL_OWNED
from orchestrator.validation import StudyError, load_study, validate_study


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
    "wrong nested type": (_put("resources/gpu_per_worker", "one"), "resources.gpu_per_worker: Input should be a valid number"),
    "unknown top-level key": (_put("colour", "red"), "colour: unknown key 'colour'; allowed: name,"),
    "unknown nested key": (_put("resources/gpus", 1), "resources.gpus: unknown key 'gpus'; allowed: workers, cpu_per_worker, gpu_per_worker, base"),
    "renamed resource": (_put("resources/cpu", 2), "resources: 'cpu' is now 'cpu_per_worker'"),
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
    "too few cpus": (_put("resources", {"cpu_per_worker": 0.25}), "resources.cpu_per_worker: Input should be greater than or equal to 0.5"),
    "no workers": (_put("resources/base", {"workers": 0}), "resources.base.workers: Input should be greater than or equal to 1"),
    "model in trial": (_put("trial/model", "x3d_m_tiny"), "trial.model: 'model' does not belong in 'trial'"),
    "dynamic in base": (_put("base/dynamic", {"search_space": 2}), "base.dynamic: 'dynamic' does not belong in 'base'"),
    "data in base": (_put("base/data", {}), "base.data: 'data' does not belong in 'base'"),
    "bad DynamicSpec in trial": (_put("trial/dynamic", {"search_space": 0}), "trial.dynamic: DynamicSpec.search_space must"),
    "flat DynamicSpec key of before": (_put("trial/dynamic", {"gate_hidden": 8}),
                                       "trial.dynamic.gate_hidden: 'gate_hidden' is now 'gate.hidden'"),
    "flat DynamicSpec axis of before": (_grid(**{"dynamic.skip_layers": [False]}),
                                        "search.grid.dynamic.skip_layers: 'dynamic.skip_layers' is now 'dynamic.stability.skip"),
    "bad grouped DynamicSpec value": (_grid(**{"dynamic.gate.hidden": [8, 0]}),
                                      "search.grid.dynamic.gate.hidden[1]: DynamicSpec.gate.hidden must be an integer"),
    "bool for a DynamicSpec integer": (_put("trial/dynamic", {"search_space": True}), "trial.dynamic.search_space: Input"),
    "bad device in trial": (_put("trial/device", "gpu"), "trial.device: device must be 'auto'"),
    "unknown backbone in base": (_put("base/model", "resnet9000"), "base.model: unknown backbone 'resnet9000'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_study_is_rejected_naming_the_field(case: str, tmp_path: Path, make_study, write_file) -> None:
    change, expected = BAD[case]
    study = make_study()
    change(study)
    path = write_file(tmp_path, study)
    problems = validate_study(path)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{path}") for p in problems)
    with pytest.raises(StudyError, match=re.escape(expected)) as info:
        load_study(path)
    assert info.value.problems == problems and isinstance(info.value, ValueError)


def test_asha_with_one_objective_is_fine(tmp_path: Path, make_study, write_file) -> None:
    study = make_study(scheduler={"asha": {"grace_period": 1}}, objectives={"video_top1": "max"}, reference=None)
    assert validate_study(write_file(tmp_path, study)) == []


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


def test_validate_study_lists_every_problem_with_its_line(tmp_path: Path, write_file) -> None:
    path = write_file(tmp_path, MANY)
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


def test_yaml_syntax_error_has_the_parsers_line(tmp_path: Path, write_file) -> None:
    path = write_file(tmp_path, "name: x\nstorage: runs\ndata:\n  flip: false\n bad: 1\n")
    [problem] = validate_study(path)
    assert problem.startswith(f"{path}:5: (yaml syntax):"), problem
    with pytest.raises(StudyError, match=":5: "):
        load_study(path)


@pytest.mark.parametrize(("text", "expected"), [("- a\n- b\n", "got a list"), ("", "got an empty file"),
                                                ("just text\n", "got a str")])  # fmt: skip
def test_a_file_that_is_not_a_mapping(text: str, expected: str, tmp_path: Path, write_file) -> None:
    [problem] = validate_study(write_file(tmp_path, text))
    assert "a study is a mapping of fields" in problem and expected in problem


def test_a_missing_file(tmp_path: Path) -> None:
    assert validate_study(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such study file"]


def test_duplicate_keys_are_reported(tmp_path: Path, make_study, write_file) -> None:
    text = yaml.safe_dump(make_study(), sort_keys=False) + "name: again\n"
    [problem] = validate_study(write_file(tmp_path, text))
    assert ": name: key 'name' is given twice" in problem


@pytest.mark.parametrize("section, key", [("base", k) for k in BASE_OWNED] + [("trial", k) for k in TRIAL_OWNED])
def test_every_key_a_recipe_may_not_give_is_refused_with_its_reason(section: str, key: str, tmp_path: Path,
                                                                    make_study, write_file) -> None:
    study = make_study()
    study[section][key] = "x"
    problems = validate_study(write_file(tmp_path, study))
    assert any(f"{section}.{key}: {key!r} does not belong in '{section}': " in p for p in problems), problems
