"""DynamicSpec and its groups: defaults from the method doc, alternatives per dimension, validation, immutability,
round-trip, and the flat fields of before 2026-12."""
from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from vared_core.dynamic import CheapOpsSpec, DynamicSpec, GateSpec, SoftModulationGate, StabilitySpec
from vared_core.dynamic.spec import MOVED_FIELDS, regroup_flat_fields


def test_defaults_follow_the_method_doc() -> None:
    spec = DynamicSpec()
    assert spec.search_space == 2  # the seed's best search space (Table 4.1)
    assert spec.temporal and spec.channel  # both dimensions beat either alone (Tables 4.11, 4.12)
    assert (spec.gate.bias_full, spec.gate.bias_reduced) == (1.0, 0.5)
    assert spec.cheap_ops.kernel == 3  # Φ^c: depthwise 3×3
    assert not spec.stability.normalize_weights  # eq. 3.5 mixes with the gate weights as they are
    assert spec.stability.skip_layers  # all weights zero: the layer outputs zeros (method doc §4)
    assert not spec.cheap_ops.zero_init and not spec.stability.detach_gate_input and spec.layers is None


def test_gate_bias_defaults_agree_with_the_gate() -> None:
    gate = inspect.signature(SoftModulationGate).parameters
    spec = DynamicSpec()
    assert (spec.gate.bias_full, spec.gate.bias_reduced) == (gate["bias_full"].default, gate["bias_reduced"].default)


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
    ("build", "message"),
    [
        (lambda: DynamicSpec(search_space=0), r"search_space must be an integer >= 1 \(1 = static\), got 0"),
        (lambda: DynamicSpec(search_space=-2), "search_space must be an integer >= 1"),
        (lambda: DynamicSpec(search_space=2.0), r"search_space must be an integer >= 1 \(1 = static\), got 2\.0"),
        (lambda: DynamicSpec(search_space="2"), "search_space must be an integer >= 1 .*got '2'"),
        (lambda: DynamicSpec(search_space=True), "search_space must be"),  # would be 1: a silently static net
        (lambda: GateSpec(hidden=0), r"gate\.hidden must be an integer >= 1, got 0"),
        (lambda: GateSpec(hidden=2.5), r"gate\.hidden must be"),  # would fail later, building nn.Linear
        (lambda: GateSpec(hidden="32"), r"gate\.hidden must be"),  # not a TypeError from the comparison
        (lambda: CheapOpsSpec(kernel=4), r"cheap_ops\.kernel must be a positive odd integer, got 4"),
        (lambda: CheapOpsSpec(kernel=-1), r"cheap_ops\.kernel must be a positive odd integer, got -1"),
        (lambda: CheapOpsSpec(kernel=3.0), r"cheap_ops\.kernel must be"),
        (lambda: StabilitySpec(normalize_floor=0.0), r"stability\.normalize_floor must lie in \(0, 1\], got 0\.0"),
        (lambda: StabilitySpec(normalize_floor=float("nan")), r"stability\.normalize_floor must lie in"),
        (lambda: DynamicSpec(layers="layer1.*"), "layers must be a sequence of patterns, not one string; wrap it"),
        (lambda: DynamicSpec(gate={"hidden": 0}), r"gate\.hidden must be an integer >= 1, got 0"),  # a mapping too
        (lambda: DynamicSpec(gate=CheapOpsSpec()), "gate must be a GateSpec or a mapping of its fields, got Cheap"),
    ],
)
def test_a_bad_field_is_named_with_its_value(build, message: str) -> None:
    with pytest.raises(ValueError, match=f"DynamicSpec.{message}"):
        build()


def test_a_group_given_as_a_mapping_is_built_and_an_unknown_field_in_it_is_named() -> None:
    spec = DynamicSpec(gate={"hidden": 8}, stability={"skip_layers": False})
    assert spec.gate == GateSpec(hidden=8) and spec.stability == StabilitySpec(skip_layers=False)
    assert spec.cheap_ops == CheapOpsSpec()
    with pytest.raises(TypeError, match=r"DynamicSpec\.gate: unknown field\(s\) 'hiden'; known: bias_full"):
        DynamicSpec(gate={"hiden": 8})


def test_replace_validates_too() -> None:
    with pytest.raises(ValueError, match="cheap_ops.kernel must be a positive odd integer"):
        dataclasses.replace(DynamicSpec(), cheap_ops=dataclasses.replace(CheapOpsSpec(), kernel=2))


def test_a_spec_is_immutable_and_hashable() -> None:
    spec = DynamicSpec(layers=["layer1.*"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.search_space = 3  # type: ignore[misc]
    assert spec.layers == ("layer1.*",)  # a list is stored as a tuple, so nobody can append to it later
    assert {spec: "a"}[DynamicSpec(layers=("layer1.*",))] == "a"  # equal specs, equal hashes


@pytest.mark.parametrize(
    "spec",
    [DynamicSpec(), DynamicSpec(search_space=3, channel=False, gate=GateSpec(hidden=8), cheap_ops={"zero_init": True},
                                stability=StabilitySpec(normalize_weights=True, normalize_floor=0.25),
                                layers=["layer*.conv1", "stem"])],
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
    with pytest.raises(ValueError, match="gate.hidden must be an integer >= 1"):
        DynamicSpec.from_dict({"gate": {"hidden": 0}})


def test_from_dict_says_where_a_flat_field_of_before_went() -> None:
    with pytest.raises(TypeError, match="'gate_hidden' is now 'gate.hidden'; 'skip_layers' is now 'stability.skip_layers'"):
        DynamicSpec.from_dict({"gate_hidden": 8, "skip_layers": False})


def test_every_flat_field_of_before_regroups_to_a_field_of_today() -> None:
    old = {"search_space": 3, **{k: object() for k in MOVED_FIELDS}}
    today = regroup_flat_fields(old)
    assert set(today) == {"search_space", "gate", "cheap_ops", "stability"}
    for flat, dotted in MOVED_FIELDS.items():
        group, name = dotted.split(".")
        assert today[group][name] is old[flat]
        assert name in {f.name for f in dataclasses.fields(type(getattr(DynamicSpec(), group)))}
    assert regroup_flat_fields(DynamicSpec().to_dict()) == DynamicSpec().to_dict()  # a current one is kept
