"""`orchestrator.bases`: one identity per base recipe, shared across cells, studies and storage."""
from __future__ import annotations

import json
from pathlib import Path

from orchestrator.bases import base_folder, base_id, base_overrides, is_trained
from orchestrator.validation import load_study


def test_cells_that_leave_the_base_recipe_alone_share_one_base(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "s", grid={"dims": ["temporal", "both"], "lambda_e": [0.4, 2.0]}))
    ids = {base_id(study, base_overrides(study, cell)) for cell in study.grid_cells()}
    assert len(study.grid_cells()) == 4 and len(ids) == 1


def test_a_base_key_on_the_grid_gives_each_value_its_own_base(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "s", grid={"data.num_frames": [4, 8], "dims": ["both"]}))
    overrides = [base_overrides(study, cell) for cell in study.grid_cells()]
    assert overrides == [{"data.num_frames": 4}, {"data.num_frames": 8}]
    assert base_id(study, overrides[0]) != base_id(study, overrides[1])


def test_under_the_seeds_recipe_the_dynamic_layers_are_part_of_the_base(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "s", recipe="seed", grid={"dims": ["temporal", "both"]}))
    a, b = (base_id(study, base_overrides(study, cell)) for cell in study.grid_cells())
    assert a != b


def test_the_id_is_the_recipe_not_the_study_or_where_it_is_stored(tmp_path: Path, write_study) -> None:
    for sub in "abc":
        (tmp_path / sub).mkdir()
    one = load_study(write_study(tmp_path / "a", "one"))
    other = load_study(write_study(tmp_path / "b", "other", storage=str(tmp_path / "elsewhere")))
    assert base_id(one, {}) == base_id(other, {})
    assert base_folder(other, {}) == (tmp_path / "elsewhere").absolute() / "bases" / base_id(one, {})
    longer = load_study(write_study(tmp_path / "c", "longer", base={"model": "r2plus1d_18_tiny", "epochs": 2}))
    assert base_id(longer, {}) != base_id(one, {})


def test_a_base_counts_as_trained_once_its_done_file_is_written(tmp_path: Path, write_study) -> None:
    study = load_study(write_study(tmp_path, "s"))
    folder = base_folder(study, {})
    assert not is_trained(folder)
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"checkpoint": "x"}))
    assert is_trained(folder)
