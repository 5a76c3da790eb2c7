"""Pinning gates to chosen alternatives, and choosing soft or hard execution."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn

from .conv import DynamicConv, Mode

__all__ = ["force_layer_policies", "force_policy", "random_policy", "dynamic_mode", "dynamic_layers"]

Choice = int | Sequence[int] | torch.Tensor | None
Pinned = torch.Tensor | int | None  # a checked choice, as a layer holds it


def dynamic_layers(model: nn.Module) -> list[tuple[str, DynamicConv]]:
    """``(name, module)`` of every `DynamicConv` in ``model``, in forward-registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DynamicConv)]


def _check(choice: Choice, n: int, dim: str, name: str, caller: str = "force_policy") -> Pinned:
    if choice is None:
        return None
    if isinstance(choice, int) and 0 <= choice < n:
        return choice
    idx = torch.as_tensor(choice).long()
    if idx.dim() > 1:
        raise ValueError(f"{caller}: {dim} must be an int or one int per clip, got shape {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(
            f"{caller}: {dim} alternative {idx.tolist()} is outside 0..{n - 1} at module '{name}' "
            f"(its search space along {dim} has {n} alternative{'s' if n > 1 else ''})"
        )
    return int(idx) if idx.dim() == 0 else idx


class _Pins:
    """Pinned ``(layer, temporal, channel)`` triples, set while entered and restored after, to what each layer
    had (re-enterable, nested too). Entering sets two attributes per layer and walks no modules, so a timed
    forward inside it pays next to nothing for the pinning."""

    def __init__(self, model: nn.Module, pins: list[tuple[DynamicConv, Pinned, Pinned]]) -> None:
        self.model = model
        self._pins = pins
        self._saved: list[list[tuple[DynamicConv, Pinned, Pinned]]] = []  # a stack, one entry per open block

    def __enter__(self) -> nn.Module:
        self._saved.append([(m, m.forced_temporal, m.forced_channel) for m, _, _ in self._pins])
        for m, t, c in self._pins:
            m._pin(t, c)
        return self.model

    def __exit__(self, *exc: object) -> None:
        for m, t, c in self._saved.pop():
            m._pin(t, c)


def _layers(model: nn.Module, caller: str) -> list[tuple[str, DynamicConv]]:
    layers = dynamic_layers(model)
    if not layers:
        raise ValueError(f"{caller}: the model has no dynamic layers; dynamize it first")
    return layers


def _pinned(model: nn.Module, caller: str, choose: Callable[[str, DynamicConv], tuple[Pinned, Pinned]]) -> _Pins:
    """Every dynamic layer pinned to ``choose(name, layer)`` while entered (all chosen before any is set)."""
    return _Pins(model, [(m, *choose(name, m)) for name, m in _layers(model, caller)])


@contextmanager
def force_policy(model: nn.Module, temporal: Choice = None, channel: Choice = None) -> Iterator[nn.Module]:
    """Pin every gate of ``model`` to one alternative per dimension while the block runs.

    Indices follow `DynamicSpec`: 0 computes everything, ``i`` computes ceil(C/2**i) channels or every
    2**i-th frame. ``None`` leaves that dimension to the gates. A sequence (or 1-D tensor) gives one
    index per clip of the batch, for mixed batches. The gates still run (their cost is counted); their
    weights are replaced by the one-hot choice, so pinned outputs equal the original network's at 0.

    Example:
        >>> with force_policy(model, temporal=1, channel=0):   # doctest: +SKIP
        ...     logits = model(clips)            # every dynamic layer computes every other frame
        ...     cost = clip_gflops(model)
    """
    def choose(name: str, m: DynamicConv) -> tuple[Pinned, Pinned]:
        return _check(temporal, m.num_temporal, "temporal", name), _check(channel, m.num_channel, "channel", name)

    with _pinned(model, "force_policy", choose):
        yield model


def force_layer_policies(
    model: nn.Module, choices: Mapping[str, tuple[Choice, Choice]]
) -> AbstractContextManager[nn.Module]:
    """Pin each named dynamic layer to its own ``(temporal, channel)`` choice while a ``with`` block runs.

    ``choices`` maps a layer's module name (as `dynamic_layers` lists it) to a pair of choices as
    `force_policy` takes them (an int, one int per clip, or ``None`` to leave that dimension to the gate).
    Layers not named keep their gates. For replaying a recorded policy, or timing one per layer and clip
    (``benchmarks/dynamic_speed.py``). The names and alternatives are checked here, once (an unknown name or
    an alternative outside a layer's search space is refused, naming it); the returned context can then be
    entered any number of times, each entry setting two attributes per named layer.

    Example:
        >>> names = [n for n, _ in dynamic_layers(model)]     # doctest: +SKIP
        >>> with force_layer_policies(model, {names[0]: (1, 0), names[-1]: (0, [0, 1])}):  # doctest: +SKIP
        ...     logits = model(clips)            # the first layer halves frames, the last halves clip 1's channels
    """
    caller = "force_layer_policies"
    layers = dict(_layers(model, caller))
    unknown = sorted(set(choices) - set(layers))
    if unknown:
        raise ValueError(f"{caller}: {unknown} are not dynamic layers of the model "
                         f"(it has {len(layers)}, e.g. {list(layers)[:3]})")  # fmt: skip
    pins = []
    for name, (temporal, channel) in choices.items():
        m = layers[name]
        pins.append((m, _check(temporal, m.num_temporal, "temporal", name, caller),
                     _check(channel, m.num_channel, "channel", name, caller)))  # fmt: skip
    return _Pins(model, pins)


@contextmanager
def random_policy(model: nn.Module, batch_size: int, generator: torch.Generator | None = None) -> Iterator[nn.Module]:
    """Pin every dynamic layer, independently, to a uniformly drawn alternative per clip and dimension.

    For training every alternative before the gates choose among them (`TrainConfig.policy_warmup_epochs`):
    a freshly dynamized model's cheap ops rebuild nothing useful yet, so gates that switch a layer to a
    reduced alternative early lose accuracy and, layer after layer, collapse the network. Drawing each
    layer's alternative per clip trains the cheap ops, and the backbone around them, for every
    combination (the idea of slimmable networks' and once-for-all's training of sub-networks). The gates
    get no gradient while pinned. Draws come from ``generator`` (default: torch's global generator, which
    `vared_core.engine.fit` checkpoints, so a resumed run draws the same).

    Example:
        >>> with random_policy(model, clips.shape[0]):   # doctest: +SKIP
        ...     loss = F.cross_entropy(model(clips), labels)
    """
    def choose(name: str, m: DynamicConv) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randint(0, m.num_temporal, (batch_size,), generator=generator),
                torch.randint(0, m.num_channel, (batch_size,), generator=generator))  # fmt: skip

    with _pinned(model, "random_policy", choose):
        yield model


@contextmanager
def dynamic_mode(model: nn.Module, mode: Mode) -> Iterator[nn.Module]:
    """Run every dynamic layer in ``"soft"`` (weighted sum over a full conv), ``"hard"`` (really reduced)
    or ``"auto"`` mode (soft in training, hard in eval, the default) while the block runs."""
    if mode not in ("auto", "soft", "hard"):
        raise ValueError(f"dynamic_mode: mode must be 'auto', 'soft' or 'hard', got {mode!r}")
    layers = [m for _, m in dynamic_layers(model)]
    saved = [m.mode for m in layers]
    try:
        for m in layers:
            m.mode = mode
        yield model
    finally:
        for m, s in zip(layers, saved):
            m.mode = s
