"""DynamicSpec: defaults from the method doc, alternatives per dimension, validation, immutability, round-trip."""
from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from vared_core.dynamic import DynamicSpec, SoftModulationGate


def test_defaults_follow_the_method_doc() -> None:
    spec = DynamicSpec()
    assert spec.search_space == 2  # the seed's best search space (Table 4.1)
    assert spec.temporal and spec.channel  # both dimensions beat either alone (Tables 4.11, 4.12)
    assert (spec.gate_bias_full, spec.gate_bias_reduced) == (1.0, 0.5)
    assert spec.cheap_kernel == 3  # Φ^c: depthwise 3×3
    assert not spec.normalize_weights  # eq. 3.5 mixes with the gate weights as they are
    assert spec.skip_layers  # all weights zero: the layer outputs zeros (method doc §4)
    assert not spec.cheap_zero_init and not spec.detach_gate_input and spec.layers is None


def test_gate_bias_defaults_agree_with_the_gate() -> None:
    gate = inspect.signature(SoftModulationGate).parameters
    spec = DynamicSpec()
    assert (spec.gate_bias_full, spec.gate_bias_reduced) == (gate["bias_full"].default, gate["bias_reduced"].default)


@pytest.mark.parametrize(
    ("changes", "temporal", "channel", "static"),
    [
        ({}, 2, 2, False),
        ({"search_space": 3, "channel": False}, 3, 1, False),
        ({"temporal": False}, 1, 2, False),
        ({"search_space": 1}, 1, 1, True),  # S = 1 is the static network
        ({"search_space": 3, "temporal": False, "channel": False}, 1, 1, True),
    ],
)
def test_alternatives_per_dimension(changes: dict, temporal: int, channel: int, static: bool) -> None:
    spec = DynamicSpec(**changes)
    assert (spec.num_temporal, spec.num_channel, spec.is_static) == (temporal, channel, static)


@pytest.mark.parametrize(
    ("out_channels", "index", "computed"),
    [(12, 0, 12), (12, 1, 6), (12, 2, 3), (7, 1, 4), (10, 2, 3), (3, 2, 1), (1, 3, 1)],
)
def test_channel_count_is_ceil_of_a_halving(out_channels: int, index: int, computed: int) -> None:
    assert DynamicSpec.channel_count(out_channels, index) == computed


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("search_space", 0, r"search_space must be an integer >= 1 \(1 = static\), got 0"),
        ("search_space", -2, "search_space must be an integer >= 1"),
        ("search_space", 2.0, r"search_space must be an integer >= 1 \(1 = static\), got 2\.0"),
        ("search_space", "2", "search_space must be an integer >= 1 .*got '2'"),
        ("gate_hidden", 0, "gate_hidden must be an integer >= 1, got 0"),
        ("cheap_kernel", 4, "cheap_kernel must be a positive odd integer, got 4"),
        ("cheap_kernel", -1, "cheap_kernel must be a positive odd integer, got -1"),
        ("normalize_floor", 0.0, r"normalize_floor must lie in \(0, 1\], got 0\.0"),
        ("normalize_floor", float("nan"), "normalize_floor must lie in"),
        ("layers", "layer1.*", "layers must be a sequence of patterns, not one string; wrap it in a list"),
    ],
)
def test_a_bad_field_is_named_with_its_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"DynamicSpec.{message}"):
        DynamicSpec(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("search_space", True),  # would be taken as 1: a silently static network
        ("gate_hidden", 2.5),  # would fail later, building the gate's nn.Linear
        ("cheap_kernel", 3.0),  # would fail building Φ^c
        ("gate_hidden", "32"),  # would be a TypeError from the comparison, not naming the field
    ],
)
def test_a_value_of_the_wrong_type_is_refused_with_a_value_error(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"DynamicSpec.{field} must"):
        DynamicSpec(**{field: value})


def test_replace_validates_too() -> None:
    with pytest.raises(ValueError, match="cheap_kernel must be a positive odd integer"):
        dataclasses.replace(DynamicSpec(), cheap_kernel=2)


def test_a_spec_is_immutable_and_hashable() -> None:
    spec = DynamicSpec(layers=["layer1.*"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.search_space = 3  # type: ignore[misc]
    assert spec.layers == ("layer1.*",)  # a list is stored as a tuple, so nobody can append to it later
    assert {spec: "a"}[DynamicSpec(layers=("layer1.*",))] == "a"  # equal specs, equal hashes


@pytest.mark.parametrize(
    "spec",
    [DynamicSpec(), DynamicSpec(search_space=3, channel=False, gate_hidden=8, cheap_zero_init=True,
                                normalize_weights=True, normalize_floor=0.25, layers=["layer*.conv1", "stem"])],
)  # fmt: skip
def test_to_dict_is_json_and_from_dict_inverts_it(spec: DynamicSpec) -> None:
    d = json.loads(json.dumps(spec.to_dict()))  # what a checkpoint or an MLflow run keeps
    assert set(d) == {f.name for f in dataclasses.fields(DynamicSpec)}
    back = DynamicSpec.from_dict(d)
    assert back == spec and isinstance(back.layers, (tuple, type(None)))


def test_to_dict_writes_layers_as_a_list() -> None:
    assert DynamicSpec(layers=("a", "b")).to_dict()["layers"] == ["a", "b"]
    assert DynamicSpec().to_dict()["layers"] is None


def test_from_dict_fills_missing_fields_with_defaults() -> None:
    assert DynamicSpec.from_dict({"search_space": 3}) == DynamicSpec(search_space=3)


def test_from_dict_names_an_unknown_key() -> None:
    with pytest.raises(TypeError, match="search_spcae"):
        DynamicSpec.from_dict({"search_spcae": 3})


def test_from_dict_validates() -> None:
    with pytest.raises(ValueError, match="gate_hidden must be an integer >= 1"):
        DynamicSpec.from_dict({"gate_hidden": 0})
