"""The one training loop every strategy runs through.

Strategies change *what* trains (``requires_grad``, parameter groups, hooks); the
loop is the same for all of them, so their costs and results are comparable.
Built on Accelerate: the same code runs on one CPU or under ``accelerate launch``
on several GPUs (DDP/FSDP/DeepSpeed).

Hooks a strategy may define (see ``strategies.base.Strategy``): ``precompute``,
``param_groups``, ``collate``, ``batch_sampler``, ``loss``, ``step_stats``, ``on_epoch_start``, ``evaluate``,
and ``rollout`` (an online objective's batch sampled from the policy inside the step).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.batching import EXAMPLES, TOKENS, Batches, BucketBatchSampler, lengths_of, pad_multiple
from ..errors import AdaptlabError
from ..eval.metrics import indexed, lean
from ..settings import TrainConfig
from ..models.modeling import upcast
from ..strategies.base import batch_sampler, hook, param_groups
from .checkpoint import BestWeights, Checkpointer, LoopState, rng_state, set_rng_state
from .phases import span
from .recompute import checkpointing
from .distributed import adopt, gathered, plain_copy, plugins, shard_blocks
from .regularize import Regularizers
from .schedules import lr_multiplier
from .steplog import StepLog

log = logging.getLogger("adaptlab")
EPOCH_END: ContextVar[Callable[[int, dict[str, Any]], None] | None] = ContextVar("EPOCH_END", default=None)
"""Called with (epoch, validation scores) after each epoch (``adaptlab tune`` reports them to its pruner)."""


def default_task() -> Any:
    from ..tasks import get_task_type

    return get_task_type("classification")


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator

    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    from accelerate.utils import DataLoaderConfiguration

    engine = plugins(cfg.distributed)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision="no" if precision == "fp32" else precision,
                              dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()), **engine)
    adopt(accelerator, cfg.distributed, engine)
    destroy_process_group_at_exit()
    return accelerator


_exit_hook = False  # destroy_process_group_at_exit registered its handler


def destroy_process_group_at_exit() -> None:
    """Destroy the distributed process group (if one was set up) when the interpreter exits.

    Accelerate creates the group for a ``torchrun`` / ``accelerate launch`` process and leaves
    destroying it to the script (``Accelerator.end_training``). Left to the end of the process,
    the group is torn down during interpreter shutdown, with its gloo/NCCL threads still attached,
    and now and then the C++ runtime aborts a process that finished its work ("terminate called
    without an active exception", SIGABRT: torchrun then reports the run as failed). Registered
    once; a no-op outside distributed runs.
    """
    global _exit_hook
    if _exit_hook or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    import atexit

    def destroy() -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    atexit.register(destroy)
    _exit_hook = True



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


def fit(
    strategy: Any,
    module: nn.Module,
    train_rows: list[dict],
    eval_rows: list[dict],
    cfg: TrainConfig,
    *,
    pad_token_id: int = 0,
    run_dir: Path | None = None,
    resume: bool = False,
    task_type: Any = None,
    trackers: Any = None,
) -> tuple[nn.Module, LoopState]:
    """Train ``module`` as ``strategy`` prepared it; return it (best weights) and the loop state.

    ``task_type`` (``adaptlab.tasks``; classification if None) gives the collate, loss and evaluation
    a strategy does not define itself; ``trackers`` (``tracking.py``) receive the step lines and epoch scores."""
    from accelerate.utils import set_seed

    task_type = task_type or default_task()
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    module.to(accelerator.device)
    checkpointed = checkpointing(module, cfg, task_type, strategy)
    upcast(p for g in hook(strategy, "param_groups", param_groups)(module, 1.0, 0.0) for p in g["params"])  # fp32 master weights
    reg = Regularizers(cfg.regularize, module, strategy, task_type)  # its copies of the pretrained weights: beside them
    strategy = WithTask(strategy, task_type, param_groups=reg.groups(hook(strategy, "param_groups", param_groups)))
    started, phases = time.perf_counter(), {}
    precompute = hook(strategy, "precompute", None)
    if precompute:  # frozen computation done once, not every epoch
        with span(phases, "precompute"):
            train_rows = precompute(module, train_rows, cfg.eval_batch_size, accelerator.device)
            eval_rows = precompute(module, eval_rows, cfg.eval_batch_size, accelerator.device) if eval_rows else eval_rows
    eval_rows = indexed(eval_rows)  # per-example results in the split's order
    collate, multiple = strategy.collate(pad_token_id), pad_multiple(accelerator.device)
    sampler = hook(strategy, "batch_sampler", batch_sampler)(train_rows, cfg)
    eval_sampler = BucketBatchSampler(lengths_of(eval_rows), cfg.eval_batch_size, False, bucket=cfg.bucket)
    train_loader = loader(train_rows, sampler, Batches(collate, pad_token_id, multiple), accelerator)
    eval_loader = loader(eval_rows, eval_sampler, Batches(collate, pad_token_id, multiple, count=False), accelerator) if eval_rows else None
    state = LoopState(train_seconds=time.perf_counter() - started, phases=phases)
    if not any(p.requires_grad for p in module.parameters()):  # nothing trains (zero-shot): score once
        model = accelerator.prepare(module)
        scores = _evaluate(strategy, model, accelerator.prepare(eval_loader), accelerator) if eval_loader is not None else {}
        state.history.append({"epoch": 0, "train_loss": None, **scores})
        state.best_epoch = 1
        return _released(accelerator, model), state
    plain = plain_copy(module, accelerator)  # sharded engines: receives the gathered weights at the end
    if plain is not None and run_dir and resume:
        raise AdaptlabError(f"--resume is not supported with train.distributed={cfg.distributed} yet (its checkpoints would be shards)")
    ckpt = Checkpointer(run_dir / "checkpoint") if run_dir and plain is None else None
    saved = ckpt.peek() if resume and ckpt and ckpt.exists() else None
    cfg = plan(strategy, module, train_loader, cfg, accelerator, state, saved, has_validation=eval_loader is not None)
    optimizer = make_optimizer(hook(strategy, "param_groups", param_groups)(module, cfg.lr, cfg.weight_decay), cfg.lr,
                               accelerator.device)
    if plain is not None:
        shard_blocks(accelerator, module)
    model, optimizer, train_loader = accelerator.prepare(module, optimizer, train_loader)
    eval_loader = accelerator.prepare(eval_loader) if eval_loader is not None else None
    total = math.ceil(len(train_loader) / cfg.grad_accum) * cfg.epochs
    state.warmup_steps = round(cfg.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg.schedule, total, state.warmup_steps))
    run = Run(strategy, module, model, cfg, accelerator, train_loader, eval_loader, sampler, optimizer, scheduler, ckpt,
              StepLog(run_dir / "steps.jsonl" if run_dir and accelerator.is_main_process else None, cfg.log_every, trackers, total), reg)
    best = BestWeights(on_device=plain is not None)  # shards stay where they are
    on_epoch_start = hook(strategy, "on_epoch_start", lambda epoch, module: None)
    if saved is not None:
        for epoch in range(saved.epoch):
            on_epoch_start(epoch, module)  # replay what trains up to the saved epoch
        state = run.ckpt.load(module, optimizer, scheduler, best)
        reg.saved_ema = run.ckpt.load_extra()
        run.log.truncate(state.step)  # steps after the checkpoint are trained (and logged) again
        run.log.epoch_losses, run.log.window = list(state.epoch_losses), list(state.log_window)
        run.log.epoch_stats = {k: list(v) for k, v in state.epoch_stats.items()}
    show = None if cfg.progress and accelerator.is_local_main_process else True  # None: only in a terminal
    bar = tqdm(total=len(train_loader) * cfg.epochs, initial=len(train_loader) * state.epoch + state.batch, unit="batch",
               disable=show, mininterval=0.5, dynamic_ncols=True, leave=False)
    stopped = bool(saved is not None and state.patience and state.stale_epochs >= state.patience)  # killed after an early stop
    for epoch in range(state.epoch, state.epoch if stopped else cfg.epochs):
        trainable = _trainable_names(module)
        on_epoch_start(epoch, module)
        if accelerator.num_processes > 1 and _trainable_names(module) != trainable:
            # DDP only synchronises parameters that were trainable when it wrapped the model
            run.model = accelerator.prepare_model(module)
        state.ever_trainable = sorted(set(state.ever_trainable) | _trainable_names(module))
        best.cover(module, set(state.ever_trainable))
        reg.epoch_start(module)
        bar.set_description(f"{strategy.name} epoch {epoch + 1}/{cfg.epochs}")
        train_epoch(run, state, epoch, best, bar)
        if end_epoch(run, state, epoch, best):
            break
    bar.close()
    reg.close()
    if checkpointed:  # what follows (scoring, saving, a later stage) sees the model as it was given
        checkpointing(module, None, task_type, on=False)
    state.gradient_checkpointing = checkpointed
    if cfg.keep_best:
        best.restore(module)  # with an average of the weights: the averaged ones, as evaluated
    if not cfg.keep_best or not best.tensors:  # the last epoch is kept
        reg.finish()
    accelerator.wait_for_everyone()
    if plain is not None:
        return gathered(run.model, plain, accelerator.device), state
    return _released(accelerator, run.model), state


def loader(rows: list[dict], sampler: Any, collate: Any, accelerator: Any) -> DataLoader:
    """Batches of ``rows``; on CUDA in pinned memory, so the copy to the GPU can overlap the running step
    (Accelerate copies with ``non_blocking`` when the loader pins, see ``make_accelerator``)."""
    return DataLoader(rows, batch_sampler=sampler, collate_fn=collate, pin_memory=accelerator.device.type == "cuda")


def make_optimizer(groups: list[dict], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; on CUDA the fused implementation (one kernel for all parameters instead of several per
    tensor: what the Trainer's ``adamw_torch_fused`` uses)."""
    return torch.optim.AdamW(groups, lr=lr, fused=torch.device(device).type == "cuda" or None)


def _released(accelerator: Any, model: nn.Module) -> nn.Module:
    """The trained module as the caller gave it: no DDP wrapper, and no mixed-precision autocast left on its
    ``forward`` (Accelerate patches it in place under bf16/fp16), so what follows -- saving, scoring, a
    test comparing with fp32 weights -- sees the plain fp32 module. It stays on the training device."""
    return accelerator.unwrap_model(model, keep_fp32_wrapper=False)


def plan(strategy: Any, module: nn.Module, loader: Any, cfg: TrainConfig, accelerator: Any, state: LoopState,
         saved: LoopState | None, has_validation: bool) -> TrainConfig:
    """Settle ``lr: auto`` (the range test) and ``epochs: auto`` (from the data size); record both in ``state``.

    A resumed run takes what its first part chose, so it continues the same schedule.
    """
    auto_epochs = cfg.epochs in (None, "auto")
    if saved is not None and saved.lr is not None:
        state.lr, state.epochs, state.lr_find = saved.lr, saved.epochs, saved.lr_find
    elif saved is not None:  # a checkpoint from before lr/epochs "auto": continue with what that version used
        defaults = getattr(strategy, "train_defaults", {})
        state.lr = cfg.lr if isinstance(cfg.lr, float) else defaults.get("lr", 5e-5)
        state.epochs = cfg.epochs if isinstance(cfg.epochs, int) else defaults.get("epochs", 3)
        auto_epochs = False
    else:
        steps_per_epoch = max(1, math.ceil(math.ceil(len(loader) / accelerator.num_processes) / cfg.grad_accum))
        state.epochs = min(cfg.max_epochs, max(1, math.ceil(cfg.min_steps / steps_per_epoch))) if auto_epochs else cfg.epochs
        state.lr = cfg.lr if isinstance(cfg.lr, float) else None
        if state.lr is None:
            state.lr_find = _range_test(strategy, module, loader, cfg, accelerator, steps_per_epoch * state.epochs, state.phases)
            state.lr = state.lr_find["lr"]
            state.train_seconds += state.lr_find["seconds"]  # part of what the strategy costs
    state.patience = cfg.patience or (2 if auto_epochs and has_validation else None)
    return cfg.model_copy(update={"lr": state.lr, "epochs": state.epochs, "patience": state.patience})


def _range_test(strategy: Any, module: nn.Module, loader: Any, cfg: TrainConfig, accelerator: Any,
                planned_steps: int, phases: dict[str, float]) -> dict[str, Any]:
    from .lr_find import budget, range_test, skipped

    fallback = getattr(strategy, "train_defaults", {}).get("lr", 1e-3)
    steps = budget(cfg, planned_steps)
    if not steps:
        log.info("%s: no learning-rate range test (%d planned steps): the default rate %.2e", strategy.name, planned_steps, fallback)
        return skipped(planned_steps, cfg, fallback)
    make_groups = hook(strategy, "param_groups", param_groups)
    groups = make_groups(module, 1.0, cfg.weight_decay)  # rates as multipliers of the swept rate...
    for group, doubled in zip(groups, make_groups(module, 2.0, cfg.weight_decay)):
        group["fixed"] = doubled["lr"] != 2 * group["lr"]  # ...except a group at a rate of its own (a head's head_lr)
    with span(phases, "range_test"):
        result = range_test(module, loader, cfg, accelerator, groups, strategy.loss, fallback, steps)
    log.info("%s: learning-rate range test over %d steps chose %.2e (%s)", strategy.name, result["steps"], result["lr"], result["rule"])
    return result


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
        metrics = _evaluate(run.strategy, run.model, run.eval_loader, run.accelerator) if run.eval_loader is not None else {}
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


def score(strategy: Any, module: nn.Module, rows: list[dict], cfg: TrainConfig, *, pad_token_id: int = 0,
          task_type: Any = None) -> dict[str, float]:
    """Score a trained ``module`` on further evaluation rows, the way :func:`fit` scores its own."""
    strategy = WithTask(strategy, task_type or default_task())
    accelerator = make_accelerator(cfg)
    module.to(accelerator.device)
    precompute = hook(strategy, "precompute", None)
    if precompute:
        rows = precompute(module, rows, cfg.eval_batch_size, accelerator.device)
    rows = indexed(rows)
    collate = Batches(strategy.collate(pad_token_id), pad_token_id, pad_multiple(accelerator.device), count=False)
    sampler = BucketBatchSampler(lengths_of(rows), cfg.eval_batch_size, False, bucket=cfg.bucket)
    batches = accelerator.prepare(loader(rows, sampler, collate, accelerator))
    return _evaluate(strategy, module, batches, accelerator)


def _evaluate(strategy: Any, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
    return strategy.evaluate(model, loader, accelerator)


class WithTask:
    """A strategy whose missing ``collate``, ``loss`` and ``evaluate`` hooks are the task type's."""

    def __init__(self, strategy: Any, task_type: Any, **hooks: Any):
        self._strategy, self._task_type, self._hooks = strategy, task_type, hooks

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get("_hooks", {}):
            return self._hooks[name]
        own = getattr(self._strategy, name, None)
        if own is None and name in ("collate", "loss", "evaluate"):
            return getattr(self._task_type, name)
        return own if own is not None else getattr(self._strategy, name)


def _save(run: Run, best: BestWeights, state: LoopState, final: bool = False) -> None:
    run.log.flush()
    if final:  # no step follows: AdamW's two moments (twice the trained weights) need not outlive training
        run.optimizer.state.clear()
    state.epoch_losses, state.log_window = list(run.log.epoch_losses), list(run.log.window)
    state.epoch_stats = {k: list(v) for k, v in run.log.epoch_stats.items()}
    if run.accelerator.is_main_process:
        run.ckpt.save(run.module, None if final else run.optimizer, run.scheduler, best, state, extra=run.reg.ema)
    run.accelerator.wait_for_everyone()
