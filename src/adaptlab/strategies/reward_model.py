"""A reward model: the backbone with a scalar head, trained so that chosen answers score above rejected ones.

Ouyang et al. 2022, §3.5 and eq. 1: ``loss = -log sigma(r(x, yw) - r(x, yl))`` over preference pairs
(the Bradley-Terry model of which answer a person prefers). The head reads the last real token of the
rendered conversation (transformers' ``*ForSequenceClassification`` for causal LMs). ``method`` decides
what trains with the head (``lora`` by default: peft keeps the new head trainable and saves it with the
adapter). A finished run scores answers: ``adaptlab.load(run).score(prompts, responses)`` and
``adaptlab score RUN --input FILE``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import AdaptlabError
from ..eval.metrics import model_inputs
from ..settings import StrategyConfig
from ..tasks import get_task_type
from ..tasks.preference import PairCollate, win_share
from ._policy import method_of
from .base import Task, hook, register, save_pretrained


class RewardModelConfig(StrategyConfig):
    name: Literal["reward_model"] = "reward_model"
    method: str | dict[str, Any] = "lora"
    """What trains with the scalar head: a strategy name or ``{name: lora, r: 16}``."""


def rewards(outputs: Any) -> torch.Tensor:
    return outputs.logits.squeeze(-1).float()


@register
class RewardModel:
    """A Bradley-Terry scorer of answers (Ouyang et al. 2022 §3.5); ``method`` decides what trains."""

    Config = RewardModelConfig
    train_defaults = {"lr": 1e-4, "epochs": 1, "schedule": "linear", "dropout": 0.0}
    tasks = ("preference",)
    serves = "score"
    """What a finished run is for: scoring answers, not generating them."""

    def build(self, task: Task) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        pad = task.backbone.tokenizer.pad_token_id
        return AutoModelForSequenceClassification.from_pretrained(task.backbone.source, num_labels=1, pad_token_id=pad,
                                                                  dtype=torch.float32)

    def __init__(self, config: RewardModelConfig):
        self.config = config
        self.inner: Any = method_of(config.method)
        self.stats: dict[str, torch.Tensor] = {}

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        scalar = Task(["reward"], task.backbone, task.train_config, task.root, get_task_type("classification"), task.run_config)
        return self.inner.prepare(model, scalar)  # a sequence-scoring model: peft adds and saves the head

    def collate(self, pad_token_id: int) -> Any:
        """The task's pair batches without ``answer_labels``: the scalar head reads one state per sequence."""
        return PairCollate(pad_token_id, answers=False)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        r = rewards(outputs)
        half = r.shape[0] // 2
        margin = r[:half] - r[half:]
        self.stats = {"reward_accuracy": win_share(margin.detach()), "margin": margin.detach().mean()}
        return -F.logsigmoid(margin).mean()

    def step_stats(self) -> dict[str, torch.Tensor]:
        """The training pairs' reward accuracy and margin."""
        return self.stats

    def save(self, module: nn.Module, folder: Any, task: Task) -> None:
        hook(self.inner, "save", save_pretrained)(module, folder, task)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        """Held-out pairs: the share ranked right (ties half), the mean margin r(chosen) - r(rejected), the loss."""
        was_training = model.training
        model.eval()
        device = None if accelerator is not None else next(model.parameters()).device
        margins = []
        for batch in batches:
            if device is not None:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            r = rewards(model(**model_inputs(batch)))
            half = r.shape[0] // 2
            margin = r[:half] - r[half:]
            margins.append(accelerator.gather_for_metrics(margin) if accelerator is not None else margin)
        model.train(was_training)
        if not margins:
            return {"reward_accuracy": None, "loss": None, "examples": 0}
        m = torch.cat(margins).cpu()
        return {"reward_accuracy": float(win_share(m)), "margin": float(m.mean()), "loss": float(-F.logsigmoid(m).mean()),
                "examples": len(m)}

    def load(self, folder: Any, task: Task) -> nn.Module:
        if (folder / "adapter_config.json").is_file():
            from peft import PeftModel

            return PeftModel.from_pretrained(self.build(task), folder)
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)

    @torch.inference_mode()
    def score(self, module: nn.Module, task_type: Any, prompts: list[str], responses: list[str], batch_size: int = 16,
              progress: bool = False) -> list[float]:
        """The reward of each (prompt, response), rendered as the run's conversations were."""
        if len(prompts) != len(responses):
            raise AdaptlabError(f"score needs one response per prompt: {len(prompts)} prompts, {len(responses)} responses")
        renderer, system = task_type.sft.renderer, task_type.sft.system
        head = [{"role": "system", "content": system}] if system else []
        ids = [renderer.render(head + [{"role": "user", "content": p}, {"role": "assistant", "content": r}]).input_ids
               for p, r in zip(prompts, responses)]
        device = next(module.parameters()).device
        pad = renderer.tokenizer.pad_token_id or 0
        out: list[float] = []
        for start in tqdm(range(0, len(ids), batch_size), desc="scoring", unit="batch", leave=False, disable=None if progress else True):
            chunk = ids[start : start + batch_size]
            width = max(len(x) for x in chunk)
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device)
            out += rewards(module(input_ids=input_ids, attention_mask=mask)).tolist()
        return out
