"""benchmarks/layer_overhead.py: a run times every policy, the gated forward and the parts, on a real gate."""
from __future__ import annotations

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "layer_overhead.py"


def test_a_run_times_every_policy_and_part_of_one_layer() -> None:
    spec = importlib.util.spec_from_file_location("layer_overhead", PATH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(calls=2, rounds=1)
    timed = result["us_per_call"]
    assert set(timed) == {"static", "full", "half_channel", "half_temporal", "half_both", "gated", "gate",
                          "reduced_conv", "channel_op"}
    assert all(t > 0 for t in timed.values())
    assert abs(result["over_static_us"]["full"] - (timed["full"] - timed["static"])) <= 0.15  # from the unrounded times
    # the gated forward ran on the gate's own output: four weights in [0, 1), not a pinned one-hot
    assert len(result["gate_output"]) == 4 and all(0 <= w < 1 for w in result["gate_output"])
