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
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.batching import Batches, pad_multiple
from ..errors import AdaptlabError
from ..models.modeling import upcast
from ..settings import TrainConfig
from ..strategies.base import batch_sampler, hook, param_groups
from .checkpoint import BestWeights, Checkpointer, LoopState
from .distributed import gathered, plain_copy, shard_blocks
from .epoch import EPOCH_END, Run, _trainable_names, end_epoch, train_epoch
from .phases import span
from .recompute import checkpointing
from .regularize import Regularizers
from .schedules import lr_multiplier
from .scoring import WithTask, default_task, eval_loader, evaluate, loader, make_accelerator, score
from .steplog import StepLog

__all__ = ["EPOCH_END", "StepLog", "WithTask", "default_task", "fit", "make_accelerator", "make_optimizer", "plan", "score"]
log = logging.getLogger("adaptlab")


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
    sampler, train_loader, eval_loader = _loaders(strategy, module, train_rows, eval_rows, cfg, accelerator, pad_token_id, phases)
    state = LoopState(train_seconds=time.perf_counter() - started, phases=phases)
    if not any(p.requires_grad for p in module.parameters()):  # nothing trains (zero-shot): score once
        model = accelerator.prepare(module)
        scores = evaluate(strategy, model, accelerator.prepare(eval_loader), accelerator) if eval_loader is not None else {}
        state.history.append({"epoch": 0, "train_loss": None, **scores})
        state.best_epoch = 1
        return _released(accelerator, model), state
    plain = plain_copy(module, accelerator)  # sharded engines: receives the gathered weights at the end
    if plain is not None and run_dir and resume:
        raise AdaptlabError(f"--resume is not supported with train.distributed={cfg.distributed} yet (its checkpoints would be shards)")
    ckpt = Checkpointer(run_dir / "checkpoint") if run_dir and plain is None else None
    saved = ckpt.peek() if resume and ckpt and ckpt.exists() else None
    cfg = plan(strategy, module, train_loader, cfg, accelerator, state, saved, has_validation=eval_loader is not None)
    log_file = run_dir / "steps.jsonl" if run_dir and accelerator.is_main_process else None
    run = _prepared(Run(strategy, module, module, cfg, accelerator, train_loader, eval_loader, sampler, ckpt=ckpt, reg=reg),
                    state, sharded=plain is not None, log_file=log_file, trackers=trackers)
    best = BestWeights(on_device=plain is not None)  # shards stay where they are
    on_epoch_start = hook(strategy, "on_epoch_start", lambda epoch, module: None)
    if saved is not None:
        state = _restored(run, best, saved.epoch, on_epoch_start)
    _epochs(run, state, best, on_epoch_start, stopped=bool(saved is not None and state.patience and state.stale_epochs >= state.patience))
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


def _loaders(strategy: Any, module: nn.Module, train_rows: list[dict], eval_rows: list[dict], cfg: TrainConfig,
             accelerator: Any, pad_token_id: int, phases: dict[str, float]) -> tuple[Any, DataLoader, DataLoader | None]:
    """The batch sampler and the training and evaluation loaders, after the strategy's frozen computation
    (``precompute``: done once, not every epoch)."""
    precompute = hook(strategy, "precompute", None)
    if precompute:
        with span(phases, "precompute"):
            train_rows = precompute(module, train_rows, cfg.eval_batch_size, accelerator.device)
            eval_rows = precompute(module, eval_rows, cfg.eval_batch_size, accelerator.device) if eval_rows else eval_rows
    collate = strategy.collate(pad_token_id)
    sampler = hook(strategy, "batch_sampler", batch_sampler)(train_rows, cfg)
    train_loader = loader(train_rows, sampler, Batches(collate, pad_token_id, pad_multiple(accelerator.device)), accelerator)
    return sampler, train_loader, eval_loader(eval_rows, collate, pad_token_id, cfg, accelerator) if eval_rows else None


def _prepared(run: Run, state: LoopState, *, sharded: bool, log_file: Path | None, trackers: Any) -> Run:
    """``run`` with its optimizer, schedule and step log, and the model and loaders as Accelerate prepares them."""
    cfg, accelerator, module = run.cfg, run.accelerator, run.module
    optimizer = make_optimizer(hook(run.strategy, "param_groups", param_groups)(module, cfg.lr, cfg.weight_decay), cfg.lr,
                               accelerator.device)
    if sharded:
        shard_blocks(accelerator, module)
    run.model, run.optimizer, run.train_loader = accelerator.prepare(module, optimizer, run.train_loader)
    run.eval_loader = accelerator.prepare(run.eval_loader) if run.eval_loader is not None else None
    total = math.ceil(len(run.train_loader) / cfg.grad_accum) * cfg.epochs
    state.warmup_steps = round(cfg.warmup_ratio * total)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lr_multiplier(cfg.schedule, total, state.warmup_steps))
    run.log = StepLog(log_file, cfg.log_every, trackers, total)
    return run


def _restored(run: Run, best: BestWeights, epochs: int, on_epoch_start: Callable[[int, nn.Module], None]) -> LoopState:
    """The loop state of the checkpoint, its weights, optimizer, schedule and step log restored."""
    for epoch in range(epochs):
        on_epoch_start(epoch, run.module)  # replay what trains up to the saved epoch
    state = run.ckpt.load(run.module, run.optimizer, run.scheduler, best)
    run.reg.saved_ema = run.ckpt.load_extra()
    run.log.truncate(state.step)  # steps after the checkpoint are trained (and logged) again
    run.log.epoch_losses, run.log.window = list(state.epoch_losses), list(state.log_window)
    run.log.epoch_stats = {k: list(v) for k, v in state.epoch_stats.items()}
    return state


def _epochs(run: Run, state: LoopState, best: BestWeights, on_epoch_start: Callable[[int, nn.Module], None], *,
            stopped: bool) -> None:
    """The epochs left (none when a resumed run had already stopped early), each scored and checkpointed."""
    cfg, accelerator, module = run.cfg, run.accelerator, run.module
    show = None if cfg.progress and accelerator.is_local_main_process else True  # None: only in a terminal
    bar = tqdm(total=len(run.train_loader) * cfg.epochs, initial=len(run.train_loader) * state.epoch + state.batch,
               unit="batch", disable=show, mininterval=0.5, dynamic_ncols=True, leave=False)
    for epoch in range(state.epoch, state.epoch if stopped else cfg.epochs):
        trainable = _trainable_names(module)
        on_epoch_start(epoch, module)
        if accelerator.num_processes > 1 and _trainable_names(module) != trainable:
            # DDP only synchronises parameters that were trainable when it wrapped the model
            run.model = accelerator.prepare_model(module)
        state.ever_trainable = sorted(set(state.ever_trainable) | _trainable_names(module))
        best.cover(module, set(state.ever_trainable))
        run.reg.epoch_start(module)
        bar.set_description(f"{run.strategy.name} epoch {epoch + 1}/{cfg.epochs}")
        train_epoch(run, state, epoch, best, bar)
        if end_epoch(run, state, epoch, best):
            break
    bar.close()


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
