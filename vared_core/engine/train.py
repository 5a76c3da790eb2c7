"""`fit`: train a base model or a dynamic one, from scratch or from the checkpoint of an earlier stage.

The seed's recipe (§4.3, Table 4.10) is two dynamic stages: a dynamic model trained from scratch (stage
``"dynamic"``, no ``base_checkpoint``, λ_e 0), then a fine-tune with the efficiency loss that starts from that
run's checkpoint with its own λ_e, epochs and lr. The alternative this project started with trains a static
base (stage ``"base"``), then dynamizes it and fine-tunes with λ_e. Either second stage is one `TrainConfig`
with ``base_checkpoint`` set.

One epoch = one pass over the training set in soft mode (cross-entropy + λ_e · efficiency loss for a
dynamic run), then, every ``eval_every`` epochs and after the last, `evaluate` in hard mode, a
checkpoint, one line in ``metrics.jsonl`` and the ``on_epoch`` callback. Every epoch's metrics count the
listed videos skipped so far as missing or corrupt (``skipped_videos_train``, ``skipped_videos_val``), so a
list that goes bad shows as a number, never as a silent accuracy drop. On CPU a run is
bit-reproducible from its seed, and a run resumed from a checkpoint ends with the same weights as
one that was never interrupted.

Data-parallel: started inside a torch process group of several ranks (Ray Train's `TorchTrainer`,
``torchrun``; see `vared_core.engine.distributed`), `fit` trains with `DistributedDataParallel` (NCCL on
GPU, gloo on CPU). Each rank takes its shard of one shared per-epoch shuffle, so a step's global batch is
the one a single process would take; BatchNorm statistics are synchronized over the ranks by default
(``sync_batchnorm``, as the seed), so a 2-rank run follows the 1-process run on the same global batch.
``data.batch_size`` is per rank; ``optim.total_batch`` fixes the global batch (gradient accumulation
makes up what the ranks do not), and the lr scales from it (`resolve_optim`). Evaluation is sharded and
gathered (every rank gets the whole set's metrics); rank 0 alone writes checkpoints and ``metrics.jsonl``,
and every rank calls ``on_epoch`` (Ray Train's report is a barrier). Random draws that differ per clip
(the policy warm-up, dropout) come per rank from ``(seed, epoch, rank)``.

Stopping from outside: ``should_stop`` (e.g. a scheduler that ends poor runs early) is asked at every
micro-batch, after its forward pass (its answer rides on the all-reduce that checks the loss is finite: no
collective of its own), and before every evaluation; once it says yes on any rank, every rank raises
`FitStopped` at the same point, before that step's update, the epoch's checkpoint and ``on_epoch``, so a
stopped run reports nothing more.
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vared_core.data import make_loader
from vared_core.dynamic import ChannelCheapOp, TemporalCheapOp, clip_gflops, dynamic_layers, efficiency_loss, random_policy
from vared_core.models import get_model_cfg

from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint, set_aside_later
from .config import ResolvedOptim, TrainConfig, resolve_optim
from .data import build_datasets
from .distributed import World, all_ranks_max, all_ranks_sum, device_for, rank_seed, world
from .evaluate import EvalResult, evaluate
from .optimizer import build_optimizer, gate_parameters
from .run_model import build_run_model
from .sync_batchnorm import sync_batchnorm

__all__ = ["FitResult", "FitStopped", "TrainingDiverged", "fit"]

#: on_epoch(epoch, metrics, checkpoint_dir): epoch counts from 1; checkpoint_dir holds that epoch's checkpoint
EpochCallback = Callable[[int, dict[str, float], Path], None]

#: config fields a resumed run may change (where it runs, how it logs); everything else must match
_RESUME_FREE = {"output_dir", "resume_from", "device", "threads", "keep_checkpoints", "eval_every", "amp"}
#: fields inside a section a resumed run may change: the batch per worker goes with the worker count, and the
#: clips per optimizer step are checked as resolved (``optim.total_batch`` None on 2 workers × 2 clips is 4)
_RESUME_FREE_NESTED = {
    "data": {"num_workers", "eval_batch_size", "root", "train_list", "val_list", "synthetic", "batch_size"},
    "optim": {"total_batch"},
}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class FitStopped(Exception):
    """`fit`'s ``should_stop`` said yes (on any rank): the run left at ``epoch`` (counted from 1), in optimizer
    step ``step`` (from 1, its update not made; 0 = before the epoch's evaluation); ``checkpoint`` is the newest
    one written (``None`` if none)."""

    def __init__(self, epoch: int, step: int, checkpoint: Path | None) -> None:
        where = f"in step {step}, its update not made" if step else "before its evaluation"
        super().__init__(f"fit stopped from outside at epoch {epoch}, {where}; newest checkpoint {checkpoint}")
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


@dataclass
class FitResult:
    """What `fit` produced: the last epoch's metrics, every epoch's metrics, the final evaluation, where the
    newest checkpoint is, and the optimiser settings and batch split it trained with."""

    config: TrainConfig
    metrics: dict[str, float]
    history: list[dict[str, float]]
    evaluation: EvalResult | None
    checkpoint: Path
    model: nn.Module = field(repr=False)
    recipe: ResolvedOptim | None = None


def _check_resume(config: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    now = config.to_dict()
    try:  # fields added to TrainConfig since the checkpoint was written compare as their defaults
        saved = TrainConfig.model_validate(saved).to_dict()
    except ValueError:  # a field since renamed or removed: compare what was written
        pass
    diffs = []
    for key in sorted(set(now) | set(saved)):
        if key in _RESUME_FREE:
            continue
        if key in _RESUME_FREE_NESTED:
            free = _RESUME_FREE_NESTED[key]
            a = {k: v for k, v in now[key].items() if k not in free}
            b = {k: v for k, v in saved.get(key, {}).items() if k not in free}
            diffs += [f"{key}.{k}: {b.get(k)!r} → {a.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif now.get(key) != saved.get(key):
            diffs.append(f"{key}: {saved.get(key)!r} → {now.get(key)!r}")
    if diffs:
        raise CheckpointError(f"resume_from {path}: the checkpoint belongs to another run; differs in " + "; ".join(diffs))


def skipped_videos(dataset: Any, w: World) -> int:
    """The videos of ``dataset`` skipped so far as missing or corrupt, on any rank (0 for datasets that do not
    count them)."""
    if not hasattr(dataset, "skipped_mask"):
        return 0
    mask = all_ranks_max(dataset.skipped_mask().to(torch.int32), w)  # a video counts once however many ranks met it
    return dataset.missing_at_build + int(mask.sum())


def fit(config: TrainConfig, on_epoch: EpochCallback | None = None,
        should_stop: Callable[[], bool] | None = None) -> FitResult:  # fmt: skip
    """Train as ``config`` says; see the module doc. Returns a `FitResult`.

    Args:
        on_epoch: called after each epoch's checkpoint, on every rank.
        should_stop: asked at each micro-batch and before each evaluation (on every rank; one rank saying yes
            is enough): keep it cheap, it runs once per micro-batch.

    Raises:
        FitStopped: ``should_stop`` said yes.
        TrainingDiverged: when the loss becomes NaN or infinite (the last good checkpoint stays).
        CheckpointError: a base or resume checkpoint that is missing or does not fit this run.
    """
    w = world()
    device = device_for(config.device, w)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    mcfg = get_model_cfg(config.model)

    resume_path: Path | None = None
    if config.resume_from == "last":
        resume_path = latest_checkpoint(out)
    elif config.resume_from is not None:
        resume_path = Path(config.resume_from)
    state = load_checkpoint(resume_path) if resume_path is not None else None
    if state is not None:
        _check_resume(config, state["config"], resume_path)  # type: ignore[arg-type]
    recipe = resolve_optim(config, mcfg, workers=w.size)
    if state is not None:  # a checkpoint from before data parallelism trained one process on data.batch_size
        saved_total = state.get("recipe", {}).get("total_batch", state["config"]["data"]["batch_size"])
        if saved_total != recipe.total_batch:
            raise CheckpointError(
                f"resume_from {resume_path}: trained with {saved_total} clips per step, this run has "
                f"{recipe.total_batch} ({recipe.workers} workers × data.batch_size {config.data.batch_size}); "
                f"set optim.total_batch: {saved_total} to resume on another worker count"
            )

    train_set, val_set = build_datasets(config.data, mcfg, seed=config.seed)
    num_classes = config.num_classes or train_set.num_classes
    torch.manual_seed(config.seed)
    model = build_run_model(config, num_classes, load_base=state is None).to(device)
    synced = w.size > 1 and config.sync_batchnorm
    if synced:  # the cheap ops run only for the alternatives a rank's clips use: their BatchNorms stay local
        sync_batchnorm(model, keep_local=(ChannelCheapOp, TemporalCheapOp))
    channels_last = config.channels_last and device.type == "cuda"
    if channels_last:
        for p in model.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)

    loader = make_loader(
        train_set, batch_size=config.data.batch_size, train=True, num_workers=config.data.num_workers, seed=config.seed,
        rank=w.rank, replicas=w.size,
    )  # fmt: skip
    accumulation = recipe.accumulation
    steps_per_epoch = len(loader) // accumulation
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(
            f"data: {len(train_set)} training videos make no full step of {recipe.total_batch} clips "
            f"(data.batch_size {config.data.batch_size} × {w.size} workers × {accumulation} accumulation steps); "
            "lower data.batch_size or optim.total_batch"
        )
    # random policies need dynamic layers; S = 1 (static) has none: nothing to warm up
    warmup_policy_steps = round(config.policy_warmup_epochs * steps_per_epoch) if dynamic_layers(model) else 0
    gate_params = gate_parameters(model)
    optimizer, scheduler = build_optimizer(model, config, recipe, steps_per_epoch)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
    if w.is_main:
        replaced = set_aside_later(out, start_epoch)
        if replaced is not None:
            warnings.warn(f"fit: {out} held checkpoints past epoch {start_epoch} of another run or attempt; "
                          f"moved to {replaced}", stacklevel=2)
    net: nn.Module = model  # what the training step calls: the model, or DDP around it
    if w.size > 1:
        dist.barrier()
        # DDP reduces gradient buckets on a group of its own: a dynamic model's graph differs between ranks
        # (each computes the alternatives its clips use), so buckets fill at different points of the backward
        # pass, which must not interleave with the synchronized BatchNorms' collectives on the default group.
        # A dynamic layer runs the cheap ops of the alternatives its rank's clips use, and its gate gets no
        # gradient while the warm-up pins it: parameters a rank did not use this step count as zero gradient
        # (the average is then the one-process gradient of the global batch). BatchNorm buffers are the same
        # on every rank when synchronized, else rank 0's are broadcast.
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      process_group=dist.new_group(), forward_sync_buffers=not synced,
                                      find_unused_parameters=bool(dynamic_layers(model)))

    def run_eval() -> EvalResult:
        if w.size > 1:  # every rank scores its shard with rank 0's model
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)
        return evaluate(model, val_set, batch_size=config.data.eval_batch_size or config.data.batch_size,
                        num_workers=config.data.num_workers, device=device, channels_last=channels_last)

    evaluation: EvalResult | None = None
    ckpt = resume_path

    def asked_to_stop() -> float:
        return 1.0 if should_stop is not None and should_stop() else 0.0

    for epoch in range(start_epoch, config.epochs):
        train_set.set_epoch(epoch)
        if w.size > 1:
            torch.manual_seed(rank_seed(config.seed, epoch, w.rank))
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "train_ce": 0.0, "train_efficiency": 0.0, "train_top1": 0.0, "train_gflops": 0.0}
        seen = 0
        for micro_step, batch in enumerate(loader):
            step, micro = divmod(micro_step, accumulation)
            if step >= steps_per_epoch:
                break
            stepping = micro == accumulation - 1  # the last micro-batch of an optimizer step
            x = batch["video"].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            y = batch["label"].to(device, non_blocking=True)
            warming = epoch * steps_per_epoch + step < warmup_policy_steps
            if micro == 0:
                optimizer.zero_grad(set_to_none=True)
            # gradients are all-reduced on the last micro-batch of a step only
            syncing = net.no_sync() if isinstance(net, DistributedDataParallel) and not stepping else nullcontext()
            with syncing:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp), \
                        (random_policy(model, x.shape[0]) if warming else nullcontext()):
                    logits = net(x).float()
                    ce = F.cross_entropy(logits, y)
                    eff = efficiency_loss(model, logits, y) if config.stage == "dynamic" else ce.new_zeros(())
                    loss = ce + config.lambda_e * eff
                # on any rank: the loss is not finite, a stop is asked (one all-reduce for both)
                diverged, stop = all_ranks_sum(torch.stack([(~torch.isfinite(loss.detach())).float(),
                                                            loss.new_full((), asked_to_stop())]), w).tolist()  # fmt: skip
                if diverged > 0:
                    raise TrainingDiverged(
                        f"{config.output_dir}: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                        f"(cross-entropy {ce.item():.4g}, efficiency {eff.item():.4g}"
                        + (f", on rank {w.rank} of {w.size}" if w.size > 1 else "") + "); lower optim.lr"
                    )
                if stop > 0:
                    raise FitStopped(epoch + 1, step + 1, ckpt)
                scaler.scale(loss / accumulation if accumulation > 1 else loss).backward()
            n = y.shape[0]
            seen += n
            sums["loss"] += loss.item() * n
            sums["train_ce"] += ce.item() * n
            sums["train_efficiency"] += eff.item() * n
            sums["train_top1"] += 100.0 * (logits.argmax(-1) == y).float().sum().item()
            sums["train_gflops"] += clip_gflops(model).sum().item()
            if not stepping:
                continue
            if config.optim.grad_clip is not None or config.optim.gate_grad_clip is not None:
                scaler.unscale_(optimizer)
            if config.optim.gate_grad_clip is not None and gate_params:
                nn.utils.clip_grad_norm_(gate_params, config.optim.gate_grad_clip)
            if config.optim.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
        totals = all_ranks_sum(torch.tensor([*sums.values(), seen], dtype=torch.float64), w).tolist()
        metrics: dict[str, float] = {k: v / totals[-1] for k, v in zip(sums, totals)}
        # the epoch lasted as long as its slowest rank
        epoch_time = all_ranks_max(torch.tensor([time.perf_counter() - t0], dtype=torch.float64), w)
        metrics.update(epoch=float(epoch + 1), lr=optimizer.param_groups[0]["lr"], epoch_time_s=epoch_time.item())
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            if should_stop is not None and all_ranks_sum(torch.tensor([asked_to_stop()]), w).item() > 0:
                raise FitStopped(epoch + 1, 0, ckpt)
            evaluation = run_eval()
            metrics.update({f"val_{k}" if k == "loss" else k: v for k, v in evaluation.metrics().items()})
        # listed videos that could not be read (missing or corrupt) so far: never a silent accuracy drop
        metrics.update(skipped_videos_train=float(skipped_videos(train_set, w)),
                       skipped_videos_val=float(skipped_videos(val_set, w)))  # fmt: skip
        history.append(metrics)
        if w.is_main:
            ckpt = save_checkpoint(out, {
                "config": config.to_dict(), "num_classes": num_classes, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                "metrics": metrics, "history": history, "recipe": recipe.to_dict(),
            }, epoch=epoch + 1, keep=config.keep_checkpoints)  # fmt: skip
            # the whole history each time: a resumed run continues it, a fresh run in an old folder replaces it
            (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
        if w.size > 1:  # the other ranks learn where rank 0 wrote, once it has
            sent = [ckpt]
            dist.broadcast_object_list(sent, src=0)
            ckpt = sent[0]
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics, ckpt)
    if ckpt is None:
        raise ValueError(f"fit: nothing to do, epochs={config.epochs}")
    if evaluation is None:  # resumed from the final checkpoint: evaluate what it holds
        evaluation = run_eval()
    return FitResult(
        config=config, metrics=history[-1] if history else evaluation.metrics(), history=history,
        evaluation=evaluation, checkpoint=ckpt, model=model, recipe=recipe,
    )
