"""Scoring a model the way the loop does, and the Accelerator every loop and scoring pass runs under.

``score`` is how a run scores its held-out rows before and after training and on further evaluation sets;
``WithTask`` fills in the hooks a strategy leaves to its task type (``collate``, ``loss``, ``evaluate``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.batching import Batches, BucketBatchSampler, lengths_of, pad_multiple
from ..eval.metrics import indexed
from ..settings import TrainConfig
from ..strategies.base import hook
from .distributed import adopt, plugins


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



def loader(rows: list[dict], sampler: Any, collate: Any, accelerator: Any) -> DataLoader:
    """Batches of ``rows``; on CUDA in pinned memory, so the copy to the GPU can overlap the running step
    (Accelerate copies with ``non_blocking`` when the loader pins, see ``make_accelerator``)."""
    return DataLoader(rows, batch_sampler=sampler,  # type: ignore[arg-type]  # a list is a map-style dataset
                      collate_fn=collate, pin_memory=accelerator.device.type == "cuda")


def score(strategy: Any, module: nn.Module, rows: list[dict], cfg: TrainConfig, *, pad_token_id: int = 0,
          task_type: Any = None) -> dict[str, float]:
    """Score a trained ``module`` on further evaluation rows, the way :func:`fit` scores its own."""
    strategy = WithTask(strategy, task_type or default_task())
    accelerator = make_accelerator(cfg)
    module.to(accelerator.device)
    precompute = hook(strategy, "precompute", None)
    if precompute:
        rows = precompute(module, rows, cfg.eval_batch_size, accelerator.device)
    batches = accelerator.prepare(eval_loader(rows, strategy.collate(pad_token_id), pad_token_id, cfg, accelerator))
    return evaluate(strategy, module, batches, accelerator)


def eval_loader(rows: list[dict], collate: Any, pad_token_id: int, cfg: TrainConfig, accelerator: Any) -> DataLoader:
    """Evaluation batches: ``rows`` indexed (per-example results in the split's order), bucketed by length, in order."""
    rows = indexed(rows)
    sampler = BucketBatchSampler(lengths_of(rows), cfg.eval_batch_size, False, bucket=cfg.bucket)
    return loader(rows, sampler, Batches(collate, pad_token_id, pad_multiple(accelerator.device), count=False), accelerator)


def evaluate(strategy: Any, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
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
