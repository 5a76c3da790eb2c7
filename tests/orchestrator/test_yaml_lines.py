"""yaml_lines: the line of a pydantic-style path in a YAML file, duplicate keys, paths written for people."""
from __future__ import annotations

import pytest
import yaml

from orchestrator.yaml_lines import compose, duplicate_keys, format_path, line_of

STUDY = """\
# a comment and a blank line count as lines

name: t
data:
  num_frames: 8
  synthetic:
    root: synth
    size: 32
search:
  grid:
    dims:
      - none
      - both
    dynamic.search_space: [2, 3]
  notes: |
    two lines
    of text
  sample: {lambda_e: {loguniform: [0.1, 4.0]}, optim.lr:
    {uniform: [0.01, 0.1]}}
trials:
  - epochs: 2
    lambda_e: 0.8
  - epochs: 3
"""


@pytest.fixture(scope="module")
def study():
    return compose(STUDY)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("name",), 3),
        (("data", "synthetic", "size"), 8),  # nested block mappings
        (("search", "grid", "dims"), 11),  # a mapping entry: its key's line
        (("search", "grid", "dims", 0), 12),  # a sequence item: its own line
        (("search", "grid", "dims", 1), 13),
        (("search", "sample"), 18),  # after a two-line block scalar
        (("search", "sample", "lambda_e", "loguniform", 1), 18),  # flow style, all on one line
        (("search", "sample", "optim.lr", "uniform"), 19),  # flow style carried onto the next line
        (("trials", 1, "epochs"), 23),  # a mapping inside a sequence
        (("trials", 0, "lambda_e"), 22),
    ],
)
def test_line_of_an_existing_path(study, path: tuple, line: int) -> None:
    assert line_of(study, path) == line


def test_a_dotted_key_is_one_step(study) -> None:
    assert line_of(study, ("search", "grid", "dynamic.search_space", 1)) == 14
    assert line_of(study, ("search", "grid", "dynamic", "search_space")) == 10  # no key "dynamic": stops at grid


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("data", "crop_size"), 4),  # a key left out: the mapping that should hold it
        (("search", "grid", "dims", 2), 11),  # an index past the end: the sequence
        (("search", "grid", "dims", -1), 11),  # pydantic never reports negative indices; no Python-style wrap
        (("data", 0), 4),  # an index into a mapping
        (("trials", "epochs"), 20),  # a key into a sequence
        (("name", "first"), 3),  # below a scalar
    ],
)
def test_a_missing_path_points_at_its_deepest_existing_part(study, path: tuple, line: int) -> None:
    assert line_of(study, path) == line


def test_no_line_without_even_the_first_step(study) -> None:
    assert line_of(study, ("objectives", "video_top1")) is None
    assert line_of(study, ()) is None
    assert line_of(compose(""), ("name",)) is None


def test_the_last_of_duplicate_keys_is_the_one_found_as_safe_load_keeps_it() -> None:
    text = "epochs: 1\nlambda_e: 0.8\nepochs: 3\n"
    assert yaml.safe_load(text)["epochs"] == 3
    assert line_of(compose(text), ("epochs",)) == 3


def test_an_integer_step_matches_a_key_written_as_a_number() -> None:
    assert line_of(compose("classes:\n  0: cat\n  1: dog\n"), ("classes", 1)) == 3


def test_windows_line_endings_count_one_line_each() -> None:
    assert line_of(compose("a: 1\r\nb:\r\n  c: 2\r\n"), ("b", "c")) == 3


def test_compose_an_empty_document_gives_none() -> None:
    assert compose("") is None and compose("# only a comment\n") is None


@pytest.mark.parametrize("text", ["a: [1, 2\n", "a: 1\n---\nb: 2\n", "a: 1\n b: 2\n"])
def test_compose_refuses_broken_yaml_and_several_documents(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        compose(text)


# ------------------------------------------------------------------ duplicate keys


def test_duplicate_keys_gives_path_and_line_of_each_repeat() -> None:
    text = """\
name: t
search:
  grid: {dims: [none]}
  num_samples: 2
  grid: {dims: [both]}
trials:
  - epochs: 1
    epochs: 2
    epochs: 3
name: u
"""
    assert duplicate_keys(compose(text)) == [
        (("search", "grid"), 5),
        (("trials", 0, "epochs"), 8),
        (("trials", 0, "epochs"), 9),
        (("name",), 10),
    ]


def test_the_same_key_in_different_mappings_is_no_duplicate() -> None:
    text = "base: {epochs: 1, optim: {lr: 0.1}}\ntrial: {epochs: 2, optim: {lr: 0.1}}\nlist: [{a: 1}, {a: 2}]\n"
    assert duplicate_keys(compose(text)) == []
    assert duplicate_keys(compose("")) == []


def test_a_repeat_inside_an_anchored_mapping_is_reported_once() -> None:
    text = "base: &b {lr: 0.1, lr: 0.2}\ntrial: *b\nother: *b\n"
    assert duplicate_keys(compose(text)) == [(("base", "lr"), 1)]


def test_a_recursive_alias_does_not_loop() -> None:
    assert duplicate_keys(compose("a: &x {k: 1, k: 2, self: *x}\n")) == [(("a", "k"), 1)]


def test_a_repeat_below_a_non_scalar_key_is_found() -> None:
    assert duplicate_keys(compose("? [a, b]\n: {x: 1, x: 2}\n")) == [(("?", "x"), 2)]


# ------------------------------------------------------------------ format_path


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("name",), "name"),
        (("search", "grid", "dims", 2), "search.grid.dims[2]"),
        (("trials", 0, 1), "trials[0][1]"),
        (("trials", 0, "epochs"), "trials[0].epochs"),
        ((0,), "[0]"),
        ((), "(top level)"),
    ],
)
def test_format_path(path: tuple, text: str) -> None:
    assert format_path(path) == text


def _leaf_paths(value, path=()):
    """Every key and item path of a loaded document, with the text its line must contain."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*path, k), str(k)
            yield from _leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if not isinstance(v, (dict, list)):
                yield (*path, i), str(v)
            yield from _leaf_paths(v, (*path, i))


def test_every_key_and_item_is_found_on_a_line_that_holds_it(study) -> None:
    lines = STUDY.splitlines()
    paths = list(_leaf_paths(yaml.safe_load(STUDY)))
    assert len(paths) > 25
    for path, text in paths:
        assert text in lines[line_of(study, path) - 1], format_path(path)
