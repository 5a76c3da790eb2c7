"""What the gates of a model would read: eq. 3.4's input at each dynamic layer, split by what varies it.

For a trained checkpoint (a base or a dynamic fine-tune) and its validation set, a hook on every conv the
backbone makes dynamic by default records the gate's input G(X): channel means over H and W, per frame. Per
layer it reports which annotation those pooled features follow, as the variance-weighted mean over features of
η² (`vared_core.analysis.compare.variance_explained`) by class and by motion level, and how much they change from
one frame to the next, per motion level (the motion signal a gate's first linear layer can read).

    python benchmarks/gate_inputs.py benchmarks/out/fidelity/full/seed0/runs/base/checkpoints/epoch_0030

Prints one JSON line per layer, then a table. Needs a validation set annotated with ``motion`` (the synthetic sets).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import statistics

import torch

from vared_core.analysis.compare import variance_explained
from vared_core.engine import load_model
from vared_core.engine.data import build_datasets
from vared_core.models import get_model_cfg


def pooled_inputs(checkpoint: str) -> tuple[dict[str, torch.Tensor], list[int], list[int]]:
    """Per default-dynamic conv: (N, C_in, T) channel means of its input over the validation videos (one clip
    each); with the videos' labels and motion levels."""
    model, cfg = load_model(checkpoint)
    model.eval()
    mcfg = get_model_cfg(cfg.model)
    _, val = build_datasets(cfg.data, mcfg, seed=cfg.seed)
    names = [
        n for n, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) and any(fnmatch.fnmatch(n, p) for p in mcfg.dynamic_include)
    ]  # fmt: skip
    if not names:
        raise SystemExit(f"{checkpoint}: {cfg.model} has no convs matching its dynamic_include {mcfg.dynamic_include}")
    pooled: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for n in names:
        model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: pooled[n].append(a[0].mean(dim=(3, 4))))
    labels, motion = [], []
    with torch.no_grad():
        for i in range(len(val)):
            item = val[i]
            if "motion" not in item:
                raise SystemExit(f"{checkpoint}: validation video {i} has no 'motion' annotation (use a synthetic set)")
            video = item["video"]
            model((video if video.dim() == 5 else video[None])[:1])
            labels.append(int(item["label"]))
            motion.append(int(item["motion"]))
    return {n: torch.cat(x) for n, x in pooled.items()}, labels, motion


def weighted_eta(features: torch.Tensor, groups: list[int]) -> float:
    """Variance-weighted mean over the columns of ``features`` (N, F) of each column's η² by ``groups``."""
    var = features.var(0)
    weights = var / var.sum()
    return sum(float(w) * variance_explained(features[:, j].tolist(), groups) for j, w in enumerate(weights) if w > 1e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint folder or checkpoint.pt written by fit")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pooled, labels, motion = pooled_inputs(args.checkpoint)
    rows = []
    for name, x in pooled.items():
        change = (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2)) if x.shape[2] > 1 else torch.zeros(len(x))
        rows.append({
            "layer": name, "frames": x.shape[2],
            "eta_class": weighted_eta(x.flatten(1), labels), "eta_motion": weighted_eta(x.flatten(1), motion),
            "frame_change_by_motion": {
                str(m): statistics.fmean(float(c) for c, mm in zip(change, motion) if mm == m) for m in sorted(set(motion))
            },
        })  # fmt: skip
        print(json.dumps(rows[-1]))
    levels = list(rows[0]["frame_change_by_motion"])
    print(f"\n| layer | T | η² class | η² motion | frame-to-frame change, motion {' / '.join(levels)} |\n|---|---|---|---|---|")
    for r in rows:
        change = " / ".join(f"{v:.3f}" for v in r["frame_change_by_motion"].values())
        print(f"| {r['layer']} | {r['frames']} | {r['eta_class']:.2f} | {r['eta_motion']:.2f} | {change} |")


if __name__ == "__main__":
    main()
