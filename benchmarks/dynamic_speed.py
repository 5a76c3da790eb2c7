"""Wall-clock speed-up of hard-mode dynamic inference against the ideal and against the bound.

For a network and its dynamized twin (S = 2, both dimensions, inference form) this times, at each batch size:

* the static network in its fastest form (NCDHW or channels_last_3d; with ``--compile`` also compiled);
* the dynamic network under each policy: ``full``, ``half_channel``, ``half_temporal``, ``half_both`` (every
  layer and clip pinned alike), ``mixed`` (every clip its own policy at every layer, drawn uniformly with a
  fixed seed: what inference meets) and ``gated`` (nothing pinned: the network's own gates decide, and with an
  untrained gate every alternative stays open, so each layer runs its full conv and mixes them all);
* each policy's **bound**: the static network with every dynamic conv replaced by the least work that yields
  its full output under the same per-clip, per-layer policies (`ReducedOnly`: the conv at the kept channels
  and frames of each group of clips, plain copies for the rest, no gate and no cheap-op arithmetic).

The ideal speed-up is `clip_gflops`' (MACs); the bound is what an implementation built from PyTorch ops can
reach on this machine; ``measured_over_bound`` is the mechanism's own efficiency (target ≥ 0.9). Every function is
timed round-robin ``--repeats`` times; ratios come from each one's fastest call (the slower calls of a shared
machine time its neighbours too), and the medians are printed beside the times.

    python benchmarks/dynamic_speed.py                               # R(2+1)D-like stage network, batches 1 and 8
    python benchmarks/dynamic_speed.py --model r2plus1d_18 --frames 8 --crop 112   # batches 1 and 4
    python benchmarks/dynamic_speed.py --model x3d_m                 # its 16×256² test view
    python benchmarks/dynamic_speed.py --device cuda                 # CUDA events; needs a GPU
    python benchmarks/dynamic_speed.py --compile                     # torch.compile the static and dynamic nets too

Prints one JSON line per batch size, then a last line ``{"summary": {batch: {policy: {...}}}}`` with, per
policy, ``measured_speedup``, ``ideal_speedup``, ``bound_speedup`` and ``measured_over_bound``.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vared_core import DynamicSpec, clip_gflops, dynamic_layers, dynamize, force_layer_policies, fuse_batchnorm
from vared_core.dynamic.writes import take
from vared_core.runtime import retain_freed_memory

# (C_in, C_mid, C_out, temporal stride, spatial stride) of R(2+1)D-18's first block per stage
STAGES = [(64, 144, 64, 1, 1), (64, 230, 128, 2, 2), (128, 460, 256, 2, 2), (256, 921, 512, 2, 2)]
UNIFORM = {"full": (0, 0), "half_channel": (0, 1), "half_temporal": (1, 0), "half_both": (1, 1)}
LAYOUTS = {"ncdhw": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}

# a policy per dynamic layer: layer name → (temporal, channel), each an int or one index per clip
Choices = dict[str, tuple[int | torch.Tensor, int | torch.Tensor]]


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


# ------------------------------------------------------------------------------------------- policies
def uniform_choices(dyn: nn.Module, temporal: int, channel: int) -> Choices:
    return {name: (temporal, channel) for name, _ in dynamic_layers(dyn)}


def gate_choices(dyn: nn.Module, x: torch.Tensor) -> Choices:
    """What the network's own gates choose for ``x``: per clip and layer, the largest alternative in use (the one
    the conv computes; the hard path then mixes every alternative whose weight is above zero)."""
    with torch.no_grad():
        dyn(x)
    return {name: (m.last.temporal_choice.clone(), m.last.channel_choice.clone()) for name, m in dynamic_layers(dyn)}


def mixed_choices(dyn: nn.Module, batch: int, seed: int = 0) -> Choices:
    """Every clip its own alternative per dimension at every layer, drawn uniformly (fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    return {name: (torch.randint(0, m.num_temporal, (batch,), generator=gen),
                   torch.randint(0, m.num_channel, (batch,), generator=gen)) for name, m in dynamic_layers(dyn)}


# ------------------------------------------------------------------------------------------- the bound
class ReducedOnly(nn.Module):
    """The least work that yields a dynamic conv's full output under per-clip policies (a bound).

    Clips with the same (frame factor, channels) run together: the conv computes only those channels at every
    factor-th frame (its own kernel, no gate), and plain copies of that block fill the rest of the clips'
    output, where the dynamic conv runs its cheap ops. The next layer needs the full output, so an
    implementation built from PyTorch ops can hardly do less: the gap between the dynamic net and this bound is
    the mechanism's own overhead (gate, rebuild arithmetic, grouping), the gap between the bound and the
    MAC-based ideal the memory traffic the ideal does not count.
    """

    def __init__(self, conv: nn.Conv3d, factors: int | torch.Tensor, channels: int | torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.uniform = isinstance(factors, int) and isinstance(channels, int)
        if self.uniform:
            self.groups_of = None
            self.policy = (factors, channels)
        else:
            f, k = torch.broadcast_tensors(torch.as_tensor(factors), torch.as_tensor(channels))
            pairs = sorted(set(zip(f.tolist(), k.tolist())))
            self.groups_of = [(fk, [i for i in range(len(f)) if (int(f[i]), int(k[i])) == fk]) for fk in pairs]
        counts = [self.policy[1]] if self.uniform else [k for (_, k), _ in self.groups_of]
        assert all(2 * k >= conv.out_channels for k in counts), "copies fill at most as many maps as were computed"

    def _reduced(self, x: torch.Tensor, factor: int, channels: int) -> torch.Tensor:
        conv = self.conv
        groups = channels // (conv.out_channels // conv.groups) if conv.groups > 1 else 1
        in_maps = groups * (conv.in_channels // conv.groups) if conv.groups > 1 else conv.in_channels
        bias = None if conv.bias is None else conv.bias[:channels]
        stride = (conv.stride[0] * factor, *conv.stride[1:])
        return F.conv3d(x[:, :in_maps], conv.weight[:channels], bias, stride, conv.padding, conv.dilation, groups)

    def _fill(self, y: torch.Tensor, out: torch.Tensor, factor: int) -> None:
        """Write ``y`` (computed channels at every factor-th frame) and its copies into ``out``."""
        k = y.shape[1]
        computed = out[:, :, ::factor]
        computed[:, :k] = y
        if k < out.shape[1]:
            computed[:, k:] = y[:, : out.shape[1] - k]
        for j in range(1, factor):
            n = out[:, :, j::factor].shape[2]
            out[:, :, j::factor] = computed[:, :, :n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if self.uniform and self.policy == (1, conv.out_channels):
            return self._reduced(x, 1, conv.out_channels)
        b = x.shape[0]
        t_out = (x.shape[2] + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
        h, w = (
            (s + 2 * p - d * (kk - 1) - 1) // st + 1
            for s, p, d, kk, st in zip(x.shape[3:], conv.padding[1:], conv.dilation[1:], conv.kernel_size[1:],
                                       conv.stride[1:])
        )
        fmt = torch.channels_last_3d if x.is_contiguous(memory_format=torch.channels_last_3d) and not \
            x.is_contiguous() else torch.contiguous_format
        out = torch.empty(b, conv.out_channels, t_out, h, w, dtype=x.dtype, device=x.device, memory_format=fmt)
        if self.uniform:
            self._fill(self._reduced(x, *self.policy), out, self.policy[0])
            return out
        for (factor, channels), rows in self.groups_of:
            y = self._reduced(take(x, rows), factor, channels)  # a view when the rows are consecutive
            for i, r in enumerate(rows):
                self._fill(y[i : i + 1], out[r : r + 1], factor)
        return out


def bound_network(static: nn.Module, dyn: nn.Module, choices: Choices) -> nn.Module:
    """``static`` with each conv that ``dyn`` (its dynamized twin) made dynamic replaced by the `ReducedOnly`
    bound of ``choices``."""
    bound = copy.copy(static)  # shares the static net's (read-only) parameters
    bound._modules = dict(static._modules)
    for name, layer in dynamic_layers(dyn):
        t, c = choices[name]
        factors = layer.temporal_factors[t] if isinstance(t, int) else torch.tensor(layer.temporal_factors)[t]
        counts = layer.channel_counts[c] if isinstance(c, int) else torch.tensor(layer.channel_counts)[c]
        _replace(bound, name, ReducedOnly(static.get_submodule(name), factors, counts))
    return bound.eval()


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    """Set ``root.<name>`` to ``new``, copying (shallowly) each parent on the way so ``root``'s source is left as
    it was."""
    *path, attr = name.split(".")
    parent = root
    for part in path:
        child = copy.copy(parent._modules[part])
        child._modules = dict(child._modules)
        parent._modules[part] = child
        parent = child
    parent._modules[attr] = new


# ------------------------------------------------------------------------------------------- timing
def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each call of each function, timed round-robin (one call of each per round) so that load from
    other processes drifts over all of them alike; two warm-up rounds excluded. CUDA: timed by CUDA events."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    cuda = device.type == "cuda"
    with torch.no_grad():
        for r in range(repeats + 2):
            for name, fn in fns.items():
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    end.synchronize()
                    elapsed = start.elapsed_time(end) / 1e3
                else:
                    t0 = time.perf_counter()
                    fn()
                    elapsed = time.perf_counter() - t0
                if r >= 2:
                    times[name].append(elapsed)
    return times


def _run_pinned(net: nn.Module, dyn: nn.Module, choices: Choices, x: torch.Tensor) -> Callable[[], object]:
    pins = force_layer_policies(dyn, choices)  # checked once; entering it walks no modules

    def run() -> object:
        with pins:
            return net(x)
    return run


def _compiled(net: nn.Module) -> nn.Module:
    """``torch.compile`` (inductor) with fixed shapes. Each dynamic layer has its own shapes and each policy its own
    branch, so the hard path compiles one graph per layer, policy and batch size: the recompile limit is raised
    to let it (the default, 8, would leave most layers eager)."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 1024)
    return torch.compile(net, dynamic=False)


def bench_network(static: nn.Module, x: torch.Tensor, include, batches: list[int], repeats: int, *,
                  compile_: bool = False, fuse: bool = True) -> list[dict]:  # fmt: skip
    """Time ``static`` (its fastest form) against its dynamized twin and the bounds, at each batch size.

    ``x`` is one batch of the largest size; smaller batches take its first clips."""
    device = x.device
    clip = tuple(x.shape[1:])
    dyn = dynamize(copy.deepcopy(static), DynamicSpec(search_space=2), clip_shape=clip, include=include).eval()
    if fuse:
        static, dyn = fuse_batchnorm(static, clip), fuse_batchnorm(dyn, clip)
    bounds = all(isinstance(static.get_submodule(n), nn.Conv3d) for n, _ in dynamic_layers(dyn))
    # the layout the static net is fastest in (a short timing); everything else runs in it
    xs = {name: x.contiguous(memory_format=fmt) for name, fmt in LAYOUTS.items()}
    statics = {name: copy.deepcopy(static).to(memory_format=fmt) for name, fmt in LAYOUTS.items()}
    quick = interleaved_times({n: (lambda n=n: statics[n](xs[n])) for n in LAYOUTS}, 3, device)
    layout = min(quick, key=lambda n: min(quick[n]))
    static, x = statics[layout], xs[layout]
    dyn = dyn.to(memory_format=LAYOUTS[layout])
    results = []
    for batch in batches:
        xb = x[:batch]
        pols = {name: uniform_choices(dyn, t, c) for name, (t, c) in UNIFORM.items()}
        pols["mixed"] = mixed_choices(dyn, batch)
        pols["gated"] = gate_choices(dyn, xb)  # the bound's choices; the dynamic net runs unpinned
        fns: dict[str, Callable[[], object]] = {"static": lambda: static(xb)}
        if compile_:
            compiled_static = _compiled(static)
            fns["static/compiled"] = lambda: compiled_static(xb)
            compiled_dyn = _compiled(dyn)
        for pol, choices in pols.items():
            fns[pol] = (lambda: dyn(xb)) if pol == "gated" else _run_pinned(dyn, dyn, choices, xb)
            if compile_:
                fns[f"{pol}/compiled"] = (lambda: compiled_dyn(xb)) if pol == "gated" else \
                    _run_pinned(compiled_dyn, dyn, choices, xb)
            if bounds:
                bound = bound_network(static, dyn, choices)
                fns[f"bound:{pol}"] = lambda n=bound: n(xb)
        times = interleaved_times(fns, repeats, device)
        # ratios from each function's fastest call: on a shared machine the slower ones time the neighbours too
        # (timeit's advice); the medians are reported beside them
        best = {k: min(v) for k, v in times.items()}
        median = {k: statistics.median(v) for k, v in times.items()}
        static_form = min((k for k in best if k.startswith("static")), key=best.get)
        base_time = best[static_form]
        with torch.no_grad(), force_layer_policies(dyn, pols["full"]):
            dyn(xb)
            full_gflops = clip_gflops(dyn).mean().item()
        per_policy = {}
        for pol, choices in pols.items():
            with torch.no_grad(), force_layer_policies(dyn, {} if pol == "gated" else choices):
                dyn(xb)
                gflops = clip_gflops(dyn).mean().item()
            form = pol if not compile_ or best[pol] <= best[f"{pol}/compiled"] else f"{pol}/compiled"
            measured, ideal = base_time / best[form], full_gflops / gflops
            row = {"measured_speedup": round(measured, 3), "ideal_speedup": round(ideal, 3),
                   "fraction_of_ideal": round(measured / ideal, 3), "time_ms": round(best[form] * 1e3, 2),
                   "median_ms": round(median[form] * 1e3, 2), "form": "compiled" if form != pol else "eager",
                   "gflops_per_clip": round(gflops, 4)}  # fmt: skip
            if compile_:
                row["eager_time_ms"] = round(best[pol] * 1e3, 2)
                row["compiled_time_ms"] = round(best[f"{pol}/compiled"] * 1e3, 2)
            if bounds:
                bound = base_time / best[f"bound:{pol}"]
                row |= {"bound_speedup": round(bound, 3), "bound_fraction_of_ideal": round(bound / ideal, 3),
                        "measured_over_bound": round(measured / bound, 3),
                        "bound_time_ms": round(best[f"bound:{pol}"] * 1e3, 2),
                        "bound_median_ms": round(median[f"bound:{pol}"] * 1e3, 2)}
            per_policy[pol] = row
        results.append({"batch": batch, "layout": layout, "static_form": static_form, "batchnorm_fused": fuse,
                        "static_time_ms": round(base_time * 1e3, 2),
                        "static_median_ms": round(median[static_form] * 1e3, 2),
                        "static_forms_ms": {k: round(v * 1e3, 2) for k, v in best.items() if k.startswith("static")},
                        "policies": per_policy})
    return results


def summary(results: list[dict]) -> dict[str, dict]:
    """The last output line: per batch size and policy, its speed-ups and the measured / bound ratio."""
    keys = ("measured_speedup", "ideal_speedup", "bound_speedup", "measured_over_bound")
    return {str(r["batch"]): {pol: {k: v[k] for k in keys if k in v} for pol, v in r["policies"].items()}
            for r in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 8 on the stage network, "
                                                             "1 4 with --model)")
    parser.add_argument("--frames", type=int, help="clip frames (default 8; with --model its test view's)")
    parser.add_argument("--size", type=int, default=56, help="stage-1 feature size (56 = 112² clips)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timed by CUDA events)")
    parser.add_argument("--model", help="a registered backbone at full size (r2plus1d_18, x3d_m, ...) dynamized "
                                        "on its default layers, instead of the stage network")
    parser.add_argument("--crop", type=int, help="with --model: clip side (default: the backbone's test crop)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd static and dynamic nets")
    parser.add_argument("--no-fuse", dest="fuse", action="store_false",
                        help="time the training form (BatchNorm as its own pass) instead of the inference form")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's default (unmap freed activations) instead of retain_freed_memory()")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.system_malloc:
        retain_freed_memory()
    device = torch.device(args.device)
    batches = sorted(args.batch or ([1, 4] if args.model else [1, 8]))
    torch.manual_seed(0)
    if args.model:
        from vared_core.models import build_model, get_model_cfg

        cfg = get_model_cfg(args.model)
        frames, crop = args.frames or cfg.num_frames, args.crop or cfg.test_crop_size
        static = build_model(args.model, num_classes=400, num_frames=frames, crop_size=crop).eval().to(device)
        x = torch.randn(max(batches), 3, frames, crop, crop, device=device)
        include, what = cfg.dynamic_include, {"model": args.model, "clip": f"{frames}x{crop}^2"}
    else:
        frames = args.frames or 8
        static = r2plus1d_like().eval().to(device)
        x = torch.randn(max(batches), STAGES[0][0], frames, args.size, args.size, device=device)
        include = [str(i) for i in range(0, 6 * len(STAGES), 6)]  # the spatial convs
        what = {"model": "stage network", "clip": f"{frames}x{2 * args.size}^2"}
    setting = {**what, "threads": args.threads, "device": args.device, "compile": args.compile}
    results = bench_network(static, x, include, batches, args.repeats, compile_=args.compile, fuse=args.fuse)
    for r in results:
        print(json.dumps({**setting, **r}))
    print(json.dumps({"summary": summary(results), **setting}))


if __name__ == "__main__":
    main()
