"""`DynamicSpec`: what is dynamic in a dynamized network, and the alternatives it may choose from."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DynamicSpec"]


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
        gate_hidden: D_h, the hidden width of each soft modulation gate.
        gate_bias_full: initial gate bias β of alternative 0; weight max(tanh(β), 0) ≈ 0.76 at 1.0.
        gate_bias_reduced: initial β of every reduced alternative; positive so that reduced alternatives
            start in use and receive gradient (a weight clipped to 0 by max(tanh, 0) gets none).
        cheap_kernel: spatial kernel of the depthwise channel cheap operation Φ^c.
        cheap_zero_init: start Φ^c's BN scale at 0, so rebuilt channels begin as zeros instead of random
            features: a dynamized *trained* model then starts close to it, which matters when a small base
            is fine-tuned.
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
        layers: fnmatch patterns over module names selecting the convs to make dynamic: the one way a run
            chooses them. ``None``: the network's default, which a registered backbone declares in
            `ModelCfg.dynamic_include` and `dynamize` receives as ``include``.

    Why each opt-in field exists: ``docs/design.md``; the runs that found them: ``docs/lab-notes.md``.

    Example:
        >>> spec = DynamicSpec(search_space=2, temporal=True, channel=False)
        >>> spec.num_temporal, spec.num_channel
        (2, 1)
    """

    search_space: int = 2
    temporal: bool = True
    channel: bool = True
    gate_hidden: int = 32
    gate_bias_full: float = 1.0
    gate_bias_reduced: float = 0.5
    cheap_kernel: int = 3
    cheap_zero_init: bool = False
    normalize_weights: bool = False
    normalize_floor: float = 1e-6
    detach_gate_input: bool = False
    skip_layers: bool = True
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.search_space) or self.search_space < 1:
            raise ValueError(f"DynamicSpec.search_space must be an integer >= 1 (1 = static), got {self.search_space!r}")
        if not _is_int(self.gate_hidden) or self.gate_hidden < 1:
            raise ValueError(f"DynamicSpec.gate_hidden must be an integer >= 1, got {self.gate_hidden!r}")
        if not _is_int(self.cheap_kernel) or self.cheap_kernel < 1 or self.cheap_kernel % 2 == 0:
            raise ValueError(f"DynamicSpec.cheap_kernel must be a positive odd integer, got {self.cheap_kernel!r}")
        if not 0 < self.normalize_floor <= 1:
            raise ValueError(f"DynamicSpec.normalize_floor must lie in (0, 1], got {self.normalize_floor!r}")
        if self.layers is not None:
            if isinstance(self.layers, str):
                raise ValueError("DynamicSpec.layers must be a sequence of patterns, not one string; wrap it in a list")
            object.__setattr__(self, "layers", tuple(self.layers))

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
        """Plain-value form for configs, checkpoints and run tracking."""
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DynamicSpec":
        """Inverse of `to_dict`; unknown keys raise ``TypeError`` naming them."""
        return cls(**d)


def _is_int(value: Any) -> bool:
    """An integer and not a bool (``True`` would pass ``isinstance(value, int)`` as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
