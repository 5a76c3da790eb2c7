"""`vared_core.engine.dotted`: dotted keys into nested mappings and back."""
from __future__ import annotations

from vared_core.engine.config import load_config
from vared_core.engine.dotted import flatten_dotted, set_dotted


def test_set_dotted_makes_parents_replaces_scalars_and_copies_the_value() -> None:
    tree = {"optim": 0.1, "keep": 1}
    value = {"inner": [1, 2]}
    set_dotted(tree, "optim.lr", value)
    set_dotted(tree, ["search", "grid", "optim.lr"], [0.1, 0.2])  # a part may hold dots: one step
    value["inner"].append(3)
    assert tree == {"optim": {"lr": {"inner": [1, 2]}}, "keep": 1, "search": {"grid": {"optim.lr": [0.1, 0.2]}}}


def test_flatten_dotted_undoes_set_dotted() -> None:
    tree: dict = {}
    for key, value in {"a.b": 1, "a.c.d": [2], "e": {}, "f": None}.items():
        set_dotted(tree, key, value)
    assert flatten_dotted(tree) == {"a.b": 1, "a.c.d": [2], "e": {}, "f": None}


def test_load_config_overrides_leave_the_callers_dict_unchanged() -> None:
    source = {"model": "r2plus1d_18_tiny", "epochs": 1, "output_dir": "out", "optim": {"lr": 0.1},
              "data": {"synthetic": {"root": "synth"}, "num_frames": 8}}
    cfg = load_config(source, {"optim.lr": 0.5, "data.num_frames": 4})
    assert cfg.optim.lr == 0.5 and cfg.data.num_frames == 4
    assert source["optim"] == {"lr": 0.1} and source["data"]["num_frames"] == 8
