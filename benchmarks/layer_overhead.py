"""Per-call cost of one dynamic layer at inference when its arithmetic is next to nothing: what Python, the gate's
small ops and the cheap ops' dispatch add to every forward of every dynamic layer, whatever the clip size.

One 1×1×1 conv (96 → 216, BatchNorm folded, channels_last_3d, the shape of an X3D-M ``res4`` layer) on 16 frames of
2×2 maps, batch 1, under ``no_grad``. It times, in microseconds (best of ``--rounds`` rounds of ``--calls`` calls):

* ``static``: the plain conv (``nn.Conv3d``), the floor every form pays;
* each pinned policy (``full``, ``half_channel``, ``half_temporal``, ``half_both``) and ``gated`` (the gate's own
  output decides, as in deployed inference);
* the parts: ``gate`` (eq. 3.4 alone), ``reduced_conv`` (the conv at half channels), ``channel_op`` (Φ^c's
  depthwise conv alone).

X3D-M has 52 such layers, so each 100 µs a layer pays costs 5.2 ms per forward at any batch size and clip size:
about 2.5% of its 16×256² test-view forward at batch 1 on 2 cores.

    python benchmarks/layer_overhead.py            # prints one JSON line
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vared_core import DynamicSpec, dynamic_layers, dynamize, force_layer_policies, fuse_batchnorm
from vared_core.runtime import retain_freed_memory

POLICIES = {"full": (0, 0), "half_channel": (0, 1), "half_temporal": (1, 0), "half_both": (1, 1)}


def best_us(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Fastest mean time per call over ``rounds`` rounds of ``calls`` calls, in µs (after a warm-up round)."""
    for _ in range(calls):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def measure(calls: int, rounds: int, size: int = 2) -> dict:
    """µs per call of the static conv, of the dynamic layer under each policy, and of its parts (see above)."""
    torch.manual_seed(0)
    clip = (96, 16, size, size)
    static = nn.Sequential(nn.Conv3d(96, 216, 1, bias=False), nn.BatchNorm3d(216)).eval()
    dyn = dynamize(copy.deepcopy(static), DynamicSpec(search_space=2), clip_shape=clip, include=["0"]).eval()
    fmt = torch.channels_last_3d
    static, dyn = fuse_batchnorm(static, clip).to(memory_format=fmt), fuse_batchnorm(dyn, clip).to(memory_format=fmt)
    layer = dynamic_layers(dyn)[0][1]
    x = torch.randn(1, *clip).contiguous(memory_format=fmt)
    timings: dict[str, float] = {}
    with torch.no_grad():
        timings["static"] = best_us(lambda: static(x), calls, rounds)
        for name, pin in POLICIES.items():
            with force_layer_policies(dyn, {n: pin for n, _ in dynamic_layers(dyn)}):
                timings[name] = best_us(lambda: dyn(x), calls, rounds)
        timings["gated"] = best_us(lambda: dyn(x), calls, rounds)
        gate_output = layer.last.gate[0].tolist()
        timings["gate"] = best_us(lambda: layer.gate(x), calls, rounds)
        k = layer.channel_counts[1]
        timings["reduced_conv"] = best_us(lambda: layer._reduced_conv(x, k, 1), calls, rounds)
        y = F.conv3d(x, layer.weight[:k]).transpose(1, 2).flatten(0, 1)  # Φ^c's input: frames as a batch
        op = layer.channel_ops[0]
        timings["channel_op"] = best_us(lambda: op.conv(y), calls, rounds)
    return {"layer": "Conv3d 96→216, 1×1×1, BN folded", "maps": f"16×{size}²", "batch": 1,
            "gate_output": [round(v, 3) for v in gate_output],
            "us_per_call": {k: round(v, 1) for k, v in timings.items()},
            "over_static_us": {k: round(timings[k] - timings["static"], 1) for k in (*POLICIES, "gated")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, default=2, help="map side (2: the arithmetic is negligible)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as dynamic_speed.py: freed activations are reused, not faulted in again
    print(json.dumps({**measure(args.calls, args.rounds, args.size), "threads": args.threads}))


if __name__ == "__main__":
    main()
