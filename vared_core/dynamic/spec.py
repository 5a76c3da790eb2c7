"""`DynamicSpec`: what is dynamic in a dynamized network, the alternatives it may choose from, and how its
gates, cheap operations and training-stability measures are set (`GateSpec`, `CheapOpsSpec`,
`StabilitySpec`)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from pydantic import Strict

__all__ = ["CheapOpsSpec", "DynamicSpec", "GateSpec", "StabilitySpec", "regroup_flat_fields"]

#: an integer field: a config's ``true`` or ``2.5`` is refused, never read as 1 or 2 (pydantic reads a
#: bool as an int otherwise); a `DynamicSpec` built in Python checks the same in ``__post_init__``
Int = Annotated[int, Strict()]


@dataclass(frozen=True)
class GateSpec:
    """The soft modulation gate of every dynamic conv (method doc §2).

    Args:
        hidden: D_h, the hidden width of each gate's MLP.
        bias_full: initial gate bias β of alternative 0; weight max(tanh(β), 0) ≈ 0.76 at 1.0.
        bias_reduced: initial β of every reduced alternative; positive so that reduced alternatives start
            in use and receive gradient (a weight clipped to 0 by max(tanh, 0) gets none).
    """

    hidden: Int = 32
    bias_full: float = 1.0
    bias_reduced: float = 0.5

    def __post_init__(self) -> None:
        if not _is_int(self.hidden) or self.hidden < 1:
            raise ValueError(f"DynamicSpec.gate.hidden must be an integer >= 1, got {self.hidden!r}")


@dataclass(frozen=True)
class CheapOpsSpec:
    """The cheap operations that rebuild what a reduced alternative does not compute (method doc §1).

    Args:
        kernel: spatial kernel of the depthwise channel cheap operation Φ^c.
        zero_init: start Φ^c's BN scale at 0, so rebuilt channels begin as zeros instead of random features:
            a dynamized *trained* model then starts close to it, which matters when a small base is
            fine-tuned.
    """

    kernel: Int = 3
    zero_init: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.kernel) or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"DynamicSpec.cheap_ops.kernel must be a positive odd integer, got {self.kernel!r}")


@dataclass(frozen=True)
class StabilitySpec:
    """How training reads the gate weights: the method's way by default, each field an opt-in measure that
    keeps a fine-tune stable (why each exists: ``docs/design.md``).

    Args:
        normalize_weights: divide each clip's gate weights by their sum, per dimension, before they mix the
            alternatives (eq. 3.5 uses them as they are). Unnormalised, a clip's output scale follows its
            gate weights, and clips of one batch with different weights reach BatchNorm at different scales;
            over many dynamic layers that can collapse training. Which alternatives are in use, and so the
            cost, do not change; pinned policies are unaffected.
        normalize_floor: with ``normalize_weights``, the smallest sum a clip's weights are divided by. The
            gradient reaching a gate through the division grows as 1/sum, so tiny live weights (a gate
            closing every alternative at once) get huge steps; below the floor the output shrinks with the
            weights instead. The default (1e-6) only guards the division; it must lie in (0, 1], so a
            pinned one-hot policy is left as it is.
        detach_gate_input: the gates read their input without passing gradient back into the network
            before them: cross-entropy and λ_e still train the gates, but only the conv path shapes the
            backbone. Through a gate the gradient passes its normalisation (≈ 1/sum) and tanh slopes, then
            lands on every layer before it, which can destabilise a fine-tune.
        skip_layers: a clip whose gate weights along a dimension are all zero skips the layer: it outputs
            zeros and costs nothing (the seed, method doc §3). ``False``: such a clip computes that
            dimension's cheapest alternative instead. The efficiency loss rewards a skip with a cost of 0,
            and max(tanh, 0) passes no gradient back out of it, so a skip learned while the network still
            needs the layer stays.
    """

    normalize_weights: bool = False
    normalize_floor: float = 1e-6
    detach_gate_input: bool = False
    skip_layers: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.normalize_floor <= 1:
            raise ValueError(f"DynamicSpec.stability.normalize_floor must lie in (0, 1], got {self.normalize_floor!r}")


_GROUPS: dict[str, type] = {"gate": GateSpec, "cheap_ops": CheapOpsSpec, "stability": StabilitySpec}

#: the flat fields `DynamicSpec` had until 2026-12, and where each lives now
MOVED_FIELDS: dict[str, str] = {
    "gate_hidden": "gate.hidden", "gate_bias_full": "gate.bias_full", "gate_bias_reduced": "gate.bias_reduced",
    "cheap_kernel": "cheap_ops.kernel", "cheap_zero_init": "cheap_ops.zero_init",
    "normalize_weights": "stability.normalize_weights", "normalize_floor": "stability.normalize_floor",
    "detach_gate_input": "stability.detach_gate_input", "skip_layers": "stability.skip_layers",
}  # fmt: skip


@dataclass(frozen=True)
class DynamicSpec:
    """Describes the dynamic convolutions `dynamize` builds (method doc §1–3).

    Alternatives are indexed from 0: channel alternative ``i`` computes ``ceil(C_out / 2**i)`` output
    channels (index 0 = all), temporal alternative ``j`` computes every ``2**j``-th output frame
    (index 0 = every frame). A dimension is *gated* when it is switched on and ``search_space > 1``;
    ``search_space == 1`` is the static network.

    Args:
        search_space: S, the number of alternatives per dynamic dimension (the seed uses 2 or 3).
        temporal: reduce output frames (temporal stride ×2**j, rebuilt by Φ^t).
        channel: reduce output channels (first ceil(C/2**i) computed, rest rebuilt by Φ^c).
        layers: fnmatch patterns over module names selecting the convs to make dynamic: the one way a run
            chooses them. ``None``: the network's default, which a registered backbone declares in
            `ModelCfg.dynamic_include` and `dynamize` receives as ``include``.
        gate: the soft modulation gates (`GateSpec`); a mapping of its fields is accepted.
        cheap_ops: the cheap operations Φ^c and Φ^t (`CheapOpsSpec`); a mapping is accepted.
        stability: opt-in training-stability measures (`StabilitySpec`); a mapping is accepted.

    Example:
        >>> spec = DynamicSpec(search_space=2, temporal=True, channel=False, stability={"normalize_weights": True})
        >>> spec.num_temporal, spec.num_channel, spec.stability.normalize_weights
        (2, 1, True)
    """

    search_space: Int = 2
    temporal: bool = True
    channel: bool = True
    layers: tuple[str, ...] | None = None
    gate: GateSpec = field(default_factory=GateSpec)
    cheap_ops: CheapOpsSpec = field(default_factory=CheapOpsSpec)
    stability: StabilitySpec = field(default_factory=StabilitySpec)

    def __post_init__(self) -> None:
        if not _is_int(self.search_space) or self.search_space < 1:
            raise ValueError(f"DynamicSpec.search_space must be an integer >= 1 (1 = static), got {self.search_space!r}")
        if self.layers is not None:
            if isinstance(self.layers, str):
                raise ValueError("DynamicSpec.layers must be a sequence of patterns, not one string; wrap it in a list")
            object.__setattr__(self, "layers", tuple(self.layers))
        for name, group in _GROUPS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _group_from_dict(name, group, value))
            elif not isinstance(value, group):
                raise ValueError(f"DynamicSpec.{name} must be a {group.__name__} or a mapping of its fields, "
                                 f"got {type(value).__name__}")  # fmt: skip

    @property
    def num_temporal(self) -> int:
        """Number of temporal alternatives (1 when the temporal dimension is not gated)."""
        return self.search_space if self.temporal else 1

    @property
    def num_channel(self) -> int:
        """Number of channel alternatives (1 when the channel dimension is not gated)."""
        return self.search_space if self.channel else 1

    @property
    def is_static(self) -> bool:
        """True when nothing is gated (S = 1 or both dimensions off)."""
        return self.num_temporal == 1 and self.num_channel == 1

    @staticmethod
    def channel_count(out_channels: int, index: int) -> int:
        """Output channels computed by channel alternative ``index``: ceil(C_out / 2**index)."""
        return max(1, math.ceil(out_channels / 2**index))

    def to_dict(self) -> dict[str, Any]:
        """Plain-value form for configs, checkpoints and run tracking (the groups as nested mappings)."""
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DynamicSpec":
        """Inverse of `to_dict`; unknown keys raise ``TypeError`` naming them, a field of the flat spec
        before 2026-12 says where it lives now."""
        moved = [f"'{k}' is now '{MOVED_FIELDS[k]}'" for k in d if k in MOVED_FIELDS]
        if moved:
            raise TypeError("DynamicSpec: " + "; ".join(moved))
        return cls(**d)


def regroup_flat_fields(d: dict[str, Any]) -> dict[str, Any]:
    """A spec mapping written before 2026-12 (every field flat) in today's groups; a current one unchanged.

    Example:
        >>> regroup_flat_fields({"search_space": 2, "gate_hidden": 8, "skip_layers": False})
        {'search_space': 2, 'gate': {'hidden': 8}, 'stability': {'skip_layers': False}}
    """
    out = {k: v for k, v in d.items() if k not in MOVED_FIELDS}
    for old, new in MOVED_FIELDS.items():
        if old in d:
            group, name = new.split(".")
            out[group] = {**(out.get(group) or {}), name: d[old]}
    return out


def _group_from_dict(name: str, group: type, d: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(group)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise TypeError(f"DynamicSpec.{name}: unknown field(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(sorted(known))}")  # fmt: skip
    return group(**d)


def _is_int(value: Any) -> bool:
    """An integer and not a bool (``True`` would pass ``isinstance(value, int)`` as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
