"""Wall-clock speed-up of hard-mode dynamic inference vs the ideal speed-up from `clip_gflops`.

A network of R(2+1)D-18-like (2+1)D blocks, one per stage (spatial 1×3×3 conv → BN → ReLU → temporal
3×1×1 conv → BN → ReLU; stage shapes of R(2+1)D-18 on 8×112² clips, entered at stage 1), its spatial
convs made dynamic (S = 2, both dimensions). For each pinned policy the hard-mode forward is timed
against the fastest static layout of the same network (NCDHW or channels_last_3d).

    python benchmarks/dynamic_speed.py [--batch 8] [--frames 8] [--size 56] [--repeats 7] [--threads 2] [--no-fuse]
    python benchmarks/dynamic_speed.py --model r2plus1d_18 --batch 4 [--frames 8] [--crop 112]   # a full backbone
    python benchmarks/dynamic_speed.py --model x3d_m --batch 4                                  # 16×256² test view

Prints one JSON line per policy and stage, then a last line with one JSON object keyed by policy
(`full`, `half_channel`, `half_temporal`, `half_both`, `mixed`), each
{"measured_speedup", "ideal_speedup", "fraction_of_ideal", ...}; on the stage network the uniform policies also
carry ``bound_speedup`` and ``bound_fraction_of_ideal``: the same network with each dynamic conv replaced by the
least work that yields its full output (`ReducedOnly`), i.e. what any implementation could reach here.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vared_core import DynamicSpec, clip_gflops, dynamic_layers, dynamize, force_policy, fuse_batchnorm
from vared_core.runtime import retain_freed_memory

# (C_in, C_mid, C_out, temporal stride, spatial stride) of R(2+1)D-18's first block per stage
STAGES = [(64, 144, 64, 1, 1), (64, 230, 128, 2, 2), (128, 460, 256, 2, 2), (256, 921, 512, 2, 2)]


def r2plus1d_like(stages=STAGES) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_mid, c_out, ts, ss in stages:
        layers += [
            nn.Conv3d(c_in, c_mid, (1, 3, 3), stride=(1, ss, ss), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(c_mid), nn.ReLU(inplace=True),
            nn.Conv3d(c_mid, c_out, (3, 1, 1), stride=(ts, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(c_out), nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def interleaved_medians(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median wall time of each function, timed round-robin (one call of each per round) so that load
    from other processes drifts over all of them alike. Two warm-up rounds are excluded."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for r in range(repeats + 2):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                if r >= 2:
                    times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _pinned(model: nn.Module, temporal, channel, x: torch.Tensor):
    def run() -> None:
        with force_policy(model, temporal=temporal, channel=channel):
            model(x)
    return run


class ReducedOnly(nn.Module):
    """A bound on what any implementation of a pinned uniform policy can reach for one conv: the conv computes
    only the ``channels`` outputs at every ``factor``-th frame (its own kernel, no gate), and the rest of the
    full-size output is filled by plain copies of that block, where the dynamic conv runs its cheap ops.
    The next layer needs the full output, so this is the least work that produces it: the gap between the
    dynamic net and this bound is the mechanism's own overhead, the gap between this bound and the MAC-based
    ideal the memory traffic the ideal does not count."""

    def __init__(self, conv: nn.Conv3d, factor: int, channels: int) -> None:
        super().__init__()
        assert 2 * channels >= conv.out_channels, "copies fill at most as many maps as were computed"
        self.weight = nn.Parameter(conv.weight[:channels].detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias[:channels].detach().clone())
        self.out_channels, self.factor, self.channels = conv.out_channels, factor, channels
        self.frame_stride, self.kernel_frames = conv.stride[0], conv.kernel_size[0]
        self.stride = (conv.stride[0] * factor, *conv.stride[1:])
        self.padding, self.dilation = conv.padding, conv.dilation
        # a grouped (depthwise) conv computing fewer outputs also reads fewer input maps
        self.groups = channels // (conv.out_channels // conv.groups) if conv.groups > 1 else 1
        self.in_maps = self.groups * (conv.in_channels // conv.groups) if conv.groups > 1 else conv.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv3d(x[:, : self.in_maps], self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.factor == 1 and self.channels == self.out_channels:
            return y
        b, k, _, h, w = y.shape
        span = x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel_frames - 1) - 1
        frames = span // self.frame_stride + 1  # the full conv's output frames
        fmt = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format
        out = torch.empty(b, self.out_channels, frames, h, w, dtype=y.dtype, memory_format=fmt)
        computed = out[:, :, :: self.factor]
        computed[:, :k] = y
        if k < self.out_channels:
            computed[:, k:] = y[:, : self.out_channels - k]
        for j in range(1, self.factor):
            out[:, :, j :: self.factor] = computed
        return out


def bound_network(static: nn.Module, dyn: nn.Module, temporal: int, channel: int) -> nn.Module:
    """``static`` with each conv that ``dyn`` (its dynamized twin) made dynamic replaced by the `ReducedOnly`
    bound of the pinned alternatives ``temporal`` / ``channel``."""
    bound = copy.deepcopy(static)
    for name, layer in dynamic_layers(dyn):
        parent, _, attr = name.rpartition(".")
        factor, channels = layer.temporal_factors[temporal], layer.channel_counts[channel]
        setattr(bound.get_submodule(parent), attr, ReducedOnly(bound.get_submodule(name), factor, channels))
    return bound


def policies(batch: int) -> dict[str, tuple]:
    half = batch // 2
    return {
        "full": (0, 0),
        "half_channel": (0, 1),
        "half_temporal": (1, 0),
        "half_both": (1, 1),
        # a mixed batch: a quarter of the clips on each of the four policies
        "mixed": ([0, 1] * half, ([0] * 2 + [1] * 2) * (batch // 4) + [0] * (batch % 4)),
    }


def bench(stages, batch: int, frames: int, size: int, repeats: int, fuse: bool = True) -> dict[str, dict]:
    """The R(2+1)D-like stage network (its spatial convs dynamic) on (batch, C, frames, size, size) features."""
    torch.manual_seed(0)
    static = r2plus1d_like(stages).eval()
    x = torch.randn(batch, stages[0][0], frames, size, size)
    spatial = [str(i) for i in range(0, 6 * len(stages), 6)]
    return bench_network(static, x, spatial, repeats, fuse, bounds=True)


def bench_backbone(name: str, batch: int, frames: int | None, crop: int | None, repeats: int,
                   fuse: bool = True) -> dict[str, dict]:
    """A registered backbone at full size, dynamized on its default layers (`ModelCfg.dynamic_include`)."""
    from vared_core.models import build_model, get_model_cfg

    cfg = get_model_cfg(name)
    frames, crop = frames or cfg.num_frames, crop or cfg.test_crop_size
    torch.manual_seed(0)
    static = build_model(name, num_classes=400, num_frames=frames, crop_size=crop).eval()
    x = torch.randn(batch, 3, frames, crop, crop)
    return {"model": name, "clip": f"{frames}x{crop}^2", **bench_network(static, x, cfg.dynamic_include, repeats, fuse,
                                                                             bounds=True)}


def bench_network(
    static: nn.Module, x: torch.Tensor, include, repeats: int, fuse: bool = True, bounds: bool = False
) -> dict[str, dict]:
    """Time ``static`` (in its faster layout) against its dynamized twin under every pinned policy.

    With ``fuse`` both run in inference form, every BatchNorm after a conv folded into it (`fuse_batchnorm`).
    With ``bounds`` (and every dynamized conv a Conv3d) each uniform policy is also timed as its `ReducedOnly`
    bound."""
    batch = x.shape[0]
    clip = tuple(x.shape[1:])
    dyn = dynamize(copy.deepcopy(static), DynamicSpec(search_space=2), clip_shape=clip, include=include).eval()
    if fuse:
        static, dyn = fuse_batchnorm(static, clip), fuse_batchnorm(dyn, clip)
    bounds = bounds and all(isinstance(static.get_submodule(n), nn.Conv3d) for n, _ in dynamic_layers(dyn))
    layouts = {"ncdhw": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
    statics = {name: (copy.deepcopy(static).to(memory_format=fmt), x.contiguous(memory_format=fmt))
               for name, fmt in layouts.items()}
    pols = policies(batch)
    # the dynamic net runs in the layout its static twin is fastest in; both layouts are timed in the same rounds
    fns = {f"static/{name}": (lambda n=n, xx=xx: n(xx)) for name, (n, xx) in statics.items()}
    dyns = {}
    for name, fmt in layouts.items():
        d = copy.deepcopy(dyn).to(memory_format=fmt)
        dyns[name] = (d, x.contiguous(memory_format=fmt))
        for pol, (t, c) in pols.items():
            fns[f"{pol}/{name}"] = _pinned(d, t, c, dyns[name][1])
            if bounds and isinstance(t, int) and isinstance(c, int):
                n = bound_network(static, dyn, t, c).to(memory_format=fmt).eval()
                fns[f"bound:{pol}/{name}"] = lambda n=n, xx=dyns[name][1]: n(xx)
    medians = interleaved_medians(fns, repeats)
    layout = min(layouts, key=lambda name: medians[f"static/{name}"])
    base_time = medians[f"static/{layout}"]
    d, xx = dyns[layout]
    with torch.no_grad(), force_policy(d, temporal=0, channel=0):
        d(xx)
        full_gflops = clip_gflops(d).mean().item()
    results = {}
    for name, (t, c) in pols.items():
        with torch.no_grad(), force_policy(d, temporal=t, channel=c):
            d(xx)
            gflops = clip_gflops(d).mean().item()
        elapsed = medians[f"{name}/{layout}"]
        measured, ideal = base_time / elapsed, full_gflops / gflops
        results[name] = {
            "measured_speedup": round(measured, 3),
            "ideal_speedup": round(ideal, 3),
            "fraction_of_ideal": round(measured / ideal, 3),
            "time_ms": round(elapsed * 1e3, 2),
            "gflops_per_clip": round(gflops, 4),
        }
        if f"bound:{name}/{layout}" in medians:
            bound = base_time / medians[f"bound:{name}/{layout}"]
            results[name] |= {"bound_speedup": round(bound, 3), "bound_fraction_of_ideal": round(bound / ideal, 3)}
    return {"layout": layout, "batchnorm_fused": fuse, "static_time_ms": round(base_time * 1e3, 2), "policies": results}


def summary(results: dict[str, dict]) -> dict[str, dict]:
    """The last output line: per policy its speed-ups and fractions of ideal."""
    keys = ("measured_speedup", "ideal_speedup", "fraction_of_ideal", "bound_speedup", "bound_fraction_of_ideal")
    return {name: {k: v[k] for k in keys if k in v} for name, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=None, help="clip frames (default 8; with --model its own)")
    parser.add_argument("--size", type=int, default=56, help="stage-1 feature size (56 = 112² clips)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="a registered backbone at full size (r2plus1d_18, x3d_m, ...) instead of "
                                        "the stage network; --frames / --crop default to its test view")
    parser.add_argument("--crop", type=int, help="with --model: clip side (default: the backbone's test crop)")
    parser.add_argument("--no-fuse", dest="fuse", action="store_false",
                        help="time the training form (BatchNorm as its own pass) instead of the inference form")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's default (unmap freed activations) instead of retain_freed_memory()")
    args = parser.parse_args()
    args.frames_given = args.frames is not None
    args.frames = args.frames or 8
    torch.set_num_threads(args.threads)
    if not args.system_malloc:
        retain_freed_memory()
    if args.model:
        r = bench_backbone(args.model, args.batch, args.frames if args.frames_given else None, args.crop, args.repeats, args.fuse)
        print(json.dumps({"batch": args.batch, "threads": args.threads, **r}))
        print(json.dumps(summary(r["policies"])))
        return
    common = dict(batch=args.batch, frames=args.frames, repeats=args.repeats, fuse=args.fuse)
    for i, stage in enumerate(STAGES):  # each stage alone, at the feature size it sees inside the network
        r = bench([stage], batch=args.batch, frames=max(1, args.frames // 2 ** max(0, i - 1)) if i else args.frames,
                  size=args.size // 2 ** max(0, i - 1) if i else args.size, repeats=args.repeats, fuse=args.fuse)
        print(json.dumps({"stage": i + 1, **r}))
    whole = bench(STAGES, size=args.size, **common)
    print(json.dumps({"network": "all stages", "batch": args.batch, "frames": args.frames,
                      "clip": f"{args.frames}x{2 * args.size}^2", "threads": args.threads, **whole}))
    print(json.dumps(summary(whole["policies"])))


if __name__ == "__main__":
    main()
