"""One epoch of the loop: the optimiser steps, then the validation score, the best weights and the checkpoint.

Split from :mod:`.loop` (which sets a run up and drives its epochs) so that what happens on every batch reads
on its own: no host sync per step (the loss is read once per log interval), gradient accumulation and clipping
through Accelerate, and a checkpoint that a killed run resumes from bit-identically.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from ..data.batching import EXAMPLES, TOKENS
from ..eval.metrics import lean
from ..settings import TrainConfig
from ..strategies.base import hook
from .checkpoint import BestWeights, Checkpointer, LoopState, rng_state, set_rng_state
from .phases import span
from .regularize import Regularizers
from .scoring import evaluate
from .steplog import StepLog

EPOCH_END: ContextVar[Callable[[int, dict[str, Any]], None] | None] = ContextVar("EPOCH_END", default=None)
"""Called with (epoch, validation scores) after each epoch (``adaptlab tune`` reports them to its pruner)."""


@dataclass
class Run:
    """Everything one call of :func:`fit` works with."""

    strategy: Any
    module: nn.Module  # unwrapped: names and checkpoints refer to it
    model: nn.Module  # as prepared by Accelerate (DDP-wrapped on several processes)
    cfg: TrainConfig
    accelerator: Any
    train_loader: Any
    eval_loader: Any
    sampler: Any  # BucketBatchSampler unless the strategy's batch_sampler hook gives another
    optimizer: Any = None
    scheduler: Any = None
    ckpt: Checkpointer | None = None
    log: StepLog | None = None
    reg: Regularizers | None = None


def train_epoch(run: Run, state: LoopState, epoch: int, best: BestWeights, bar: tqdm) -> None:
    """One pass over the training batches (continuing mid-epoch after a resume)."""
    acc, cfg = run.accelerator, run.cfg
    loss_fn = run.strategy.loss
    step_stats = hook(run.strategy, "step_stats", dict)
    rollout = hook(run.strategy, "rollout", None)  # an online objective samples its batch from the policy first
    if hasattr(run.train_loader, "set_epoch"):
        # Accelerate's loader calls set_epoch(<its own pass count>) on every pass; after a resume that count
        # starts again at 0, so the order of every later epoch would repeat the first's (issue 12)
        run.train_loader.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    run.model.train()
    batches = _rng_neutral(acc.skip_first_batches(run.train_loader, state.batch)) if state.batch else run.train_loader
    tick = time.perf_counter()
    for batch in batches:
        if rollout is not None:
            batch = rollout(run.model, batch)
        tokens = batch.pop(TOKENS, 0)  # counted on the CPU by the collate: no host sync here
        examples = batch.pop(EXAMPLES, None) or len(batch["labels"])
        with acc.accumulate(run.model):
            loss = run.reg.loss(run.model, batch, loss_fn)
            stats = step_stats()
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm:
                acc.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        examples *= acc.num_processes
        state.batch += 1
        state.examples += examples
        state.tokens += tokens * acc.num_processes
        run.log.add(loss.detach(), examples, state.step + 1, epoch, run.scheduler.get_last_lr()[0], stats)
        bar.update()
        if acc.sync_gradients:
            run.scheduler.step()
            run.reg.after_step()
            state.step += 1
            if run.log.step(state, epoch, run.scheduler.get_last_lr()[0]):
                bar.set_postfix(loss=f"{run.log.running_loss():.4f}", ex_s=f"{run.log.epoch_rate():.1f}", refresh=False)
            if run.ckpt and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                _stepped(state, tick)
                with span(state.phases, "checkpoint"):
                    _save(run, best, state)
                tick = time.perf_counter()
    run.log.flush()
    _stepped(state, tick)


def _stepped(state: LoopState, since: float) -> None:
    """Count the optimiser steps' time since ``since`` (checkpoints and evaluation are counted apart)."""
    seconds = time.perf_counter() - since
    state.train_seconds += seconds
    state.phases["steps"] = state.phases.get("steps", 0.0) + seconds


def _rng_neutral(loader: Any) -> Any:
    """Iterate ``loader`` without its start-up drawing from the global RNG (a mid-epoch resume).

    A DataLoader draws a base seed from the global RNG when its iterator is built. The killed run
    drew it at the start of the epoch, before the checkpoint saved the RNG; the resumed run builds
    its iterator after restoring that state, so without this every later dropout mask would shift.
    """
    rng = rng_state()
    batches = iter(loader)
    first = next(batches, None)  # Accelerate builds the DataLoader iterator on the first batch
    set_rng_state(rng)
    if first is not None:
        yield first
        yield from batches


def end_epoch(run: Run, state: LoopState, epoch: int, best: BestWeights) -> bool:
    """Score the validation split, keep the best weights, checkpoint; return True to stop early.

    Without a validation split every epoch counts as the best so far: the run ends with its last weights.
    """
    with run.reg.averaged(), span(state.phases, "epoch_eval"):  # scored and kept: the averaged weights; checkpointed: the trained ones
        metrics = evaluate(run.strategy, run.model, run.eval_loader, run.accelerator) if run.eval_loader is not None else {}
        loss = _record(run, state, epoch, best, metrics)
    if run.log.trackers:
        run.log.trackers.log({**lean(metrics), "train_loss": state.history[-1].get("train_loss"), "epoch": epoch + 1}, state.step, "validation/")
    # patience runs out only when neither the metric nor the loss improves (an accuracy plateau at the
    # majority class often comes before the loss-driven climb out of it)
    for i, h in enumerate(state.history[:-1]):  # answers and right/wrong per example: only the kept and the last epoch
        if i != state.best_epoch - 1:
            state.history[i] = lean(h)
    improved = state.best_epoch == epoch + 1 or loss < state.best_loss
    state.best_loss = min(state.best_loss, loss)
    state.stale_epochs = 0 if improved else state.stale_epochs + 1
    state.epoch, state.batch = epoch + 1, 0
    stop = bool(run.cfg.patience and state.stale_epochs >= run.cfg.patience)
    if run.ckpt:  # after the last epoch only the weights are kept: no step follows that needs the optimiser's state
        with span(state.phases, "checkpoint"):
            _save(run, best, state, final=stop or state.epoch >= run.cfg.epochs)
    listener = EPOCH_END.get()
    if listener is not None:
        listener(epoch + 1, metrics)
    return stop


def _record(run: Run, state: LoopState, epoch: int, best: BestWeights, metrics: dict[str, Any]) -> float:
    """Add the epoch to the history and keep its weights when they are the best so far; its loss."""
    state.history.append({"epoch": epoch + 1, **run.log.epoch_summary(), **metrics})
    metric = run.cfg.metric
    score = metrics[metric] if metric in metrics and metric != "loss" else -metrics.get("loss", -(epoch + 1))  # loss: lower is better
    loss = metrics.get("loss", float("inf"))
    kept_loss = state.history[state.best_epoch - 1].get("loss", float("inf")) if state.best_epoch > 0 else float("inf")
    if score > state.best_score or (score == state.best_score and loss < kept_loss):  # ties: the lower loss
        state.best_score, state.best_epoch = score, epoch + 1
        best.update(run.module, set(state.ever_trainable), copy=epoch + 1 < run.cfg.epochs)  # the last: kept as it is
    return loss


def _trainable_names(module: nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def _save(run: Run, best: BestWeights, state: LoopState, final: bool = False) -> None:
    run.log.flush()
    if final:  # no step follows: AdamW's two moments (twice the trained weights) need not outlive training
        run.optimizer.state.clear()
    state.epoch_losses, state.log_window = list(run.log.epoch_losses), list(run.log.window)
    state.epoch_stats = {k: list(v) for k, v in run.log.epoch_stats.items()}
    if run.accelerator.is_main_process:
        run.ckpt.save(run.module, None if final else run.optimizer, run.scheduler, best, state, extra=run.reg.ema)
    run.accelerator.wait_for_everyone()
