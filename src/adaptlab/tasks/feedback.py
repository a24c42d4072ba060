"""Unpaired feedback for a causal LM: prompts with one answer each, marked desirable or not (KTO's data).

Rows are read by :mod:`adaptlab.data.feedback` and rendered with the chat template and masking by token
position of ``sft``; a batch is one forward pass over its answers, with a ``_desirable`` flag per row that the
KTO objective reads (``objectives/kto.py``; preference pairs carry the same flag: chosen desirable, rejected
not, so KTO runs on either).

Judged on held-out rows by what feedback training is for, measurable for every strategy: the *gap* -- the
mean per-token log-probability of the desirable answers minus that of the undesirable ones (the prompts differ
between rows, so it is a population measure, not a per-pair one; per token so that answer length does not
decide it); with a reference model (KTO) the *reward gap* -- the same difference of the implied rewards
``log pi(y|x) - log ref(y|x)`` (Ethayarajh et al. 2024, eq. 8); and, from answers generated for the prompts,
chrF against the desirable answers and against the undesirable ones. Without an objective of its own a strategy
would train on the desirable answers with the ``sft`` loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import AdaptlabError
from ..models.lm_head import answer_logps
from .base import register_task
from .preference import DESIRABLE, REFERENCE
from .sft import SFT, SFTCollate, SFTData, load_splits, require_causal_lm


@register_task
class Feedback:
    """Prompts with one answer each, marked desirable or not -> a causal LM that favours the desirable (the gap)."""

    summary = "prompt, answer and a true/false label (thumbs up/down) -> a causal LM favouring the desirable answers (KTO)"
    metrics = ("gap", "reward_gap", "chrf")
    default_metric = "gap"
    """Per-token log-probability of held-out desirable answers minus undesirable ones: the same for every strategy."""
    peft_task_type = "CAUSAL_LM"
    generative = True
    columns = (("gap", "log-prob gap", "{:.3f}"), ("reward_gap", "reward gap", "{:.2f}"), ("chrf", "chrF", "{:.1f}"),
               ("chrf_undesirable", "chrF vs undesirable", "{:.1f}"))
    tolerance = 0.02
    serves = True
    auto_class = "AutoModelForCausalLM"
    train_defaults: dict[str, Any] = {"batch_size": 8, "eval_batch_size": 16}

    def __init__(self, sft: SFT | None = None):
        self.sft = sft or SFT()

    @property
    def renderer(self) -> Any:
        """The chat template of its answers (``tasks.base.Generative``)."""
        return self.sft.renderer

    @property
    def generation(self) -> Any:
        return self.sft.generation

    @generation.setter
    def generation(self, value: Any) -> None:
        self.sft.generation = value

    def detect(self, columns: list[str], data: Any) -> bool:
        from ..data.feedback import is_feedback

        return is_feedback(columns, data)

    def configure(self, run_config: Any, backbone: Any) -> Feedback:
        require_causal_lm(backbone, "feedback")
        return Feedback(SFT().configure(run_config, backbone))

    # -- data ---------------------------------------------------------------------------------

    def load(self, cfg: Any, seed: int, table: Any = None) -> SFTData:
        """The splits of ``sft``; a held-out split with answers of one kind only (its gap undefined) is refused."""
        from ..data.feedback import read_feedback

        data = load_splits(cfg, seed, table, read_feedback, "feedback", "answers")
        held_out: dict[str, Any] = {data.eval_name: data.eval, **data.extra_evals, **({"validation": data.validation} if data.validation else {})}
        for name, split in held_out.items():
            if all(split.desirable) or not any(split.desirable):
                kind = "desirable" if all(split.desirable) else "undesirable"
                raise AdaptlabError(f"feedback: the {name} split's {len(split)} answers are all {kind}, so the gap between the "
                                    "kinds cannot be measured; give --eval-data with both kinds, or more rows (--max-eval)")
        return data

    def encode(self, split: Any, backbone: Any, cfg: Any, max_length: int) -> list[dict[str, Any]]:
        """The rows of ``sft`` (one answer each, cuts reported), each with its flag."""
        rows = self.sft.encode(split.conversations, backbone, cfg, max_length)
        return [{**r, "desirable": d} for r, d in zip(rows, split.desirable)]

    def training_rows(self, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        return rows

    # -- model -----------------------------------------------------------------------------------

    def build(self, task: Any, **load: Any) -> nn.Module:
        return self.sft.build(task, **load)

    def load_model(self, folder: Any, task: Any) -> nn.Module:
        return self.sft.load_model(folder, task)

    def collate(self, pad_token_id: int) -> Any:
        return FeedbackCollate(pad_token_id, self.sft.answers)

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Without an objective of the strategy's own: the sft loss on the desirable answers."""
        tokens, mask = answer_logps(outputs, batch["labels"])
        keep = batch[DESIRABLE].to(tokens.device)
        return -tokens[keep].sum() / mask[keep].sum().clamp(min=1)

    # -- judging -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        """Per held-out answer its per-token log-probability (and implied reward with a reference); an answer
        generated for every prompt, scored against the desirable and the undesirable answers."""
        from ..eval.generation import GENERATIONS, Timer, text_metrics

        was_training = model.training
        model.eval()
        device = None if accelerator is not None else next(model.parameters()).device
        outputs: list[tuple] = []
        timer = Timer()
        for batch in tqdm(batches, desc="scoring answers", unit="batch", leave=False, disable=None):
            if device is not None:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            rows = self._rows(model, batch, timer)
            if accelerator is not None:
                rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
            outputs += rows
        model.train(was_training)
        outputs.sort()
        good = [o for o in outputs if o[3]]
        bad = [o for o in outputs if not o[3]]
        generations = [{"prompt": p, "reference": ref, "desirable": d, "output": out} for _, p, ref, d, out, *_ in outputs]
        nll = -sum(o[5] * o[7] for o in good) / max(sum(o[7] for o in good), 1)
        return {"gap": _mean(o[5] for o in good) - _mean(o[5] for o in bad),
                "reward_gap": _mean(o[6] for o in good) - _mean(o[6] for o in bad) if not math.isnan(outputs[0][6]) else None,
                "desirable_logp": _mean(o[5] for o in good), "undesirable_logp": _mean(o[5] for o in bad),
                **text_metrics([o[4] for o in good], [o[2] for o in good]),
                "chrf_undesirable": text_metrics([o[4] for o in bad], [o[2] for o in bad])["chrf"] if bad else None,
                "loss": nll, "perplexity": math.exp(min(nll, 50)), "examples": len(outputs),
                "generated_tokens_per_second": round(timer.rate, 1), "samples": generations[: self.sft.generation.samples],
                GENERATIONS: generations}

    def _rows(self, model: nn.Module, batch: dict[str, Any], timer: Any) -> list[tuple]:
        """(index, prompt, answer, desirable, generated, per-token log-prob, implied reward, answer tokens) per row."""
        from ..eval.generation import generate_ids
        from ..eval.metrics import model_inputs

        tokens, mask = answer_logps(model(**model_inputs(batch)), batch["labels"])
        counts = mask.sum(-1)
        per_token = (tokens.sum(-1) / counts.clamp(min=1)).tolist()
        rewards = (tokens.sum(-1).double() - batch[REFERENCE]).tolist() if REFERENCE in batch else [math.nan] * len(per_token)
        renderer = self.sft.renderer
        if renderer is None:
            raise RuntimeError("feedback: evaluate() before configure()")
        tokenizer = renderer.tokenizer
        with timer:
            new = generate_ids(model, batch["gen_input_ids"], batch["gen_attention_mask"], self.sft.generation,
                               renderer.stop_ids, tokenizer.pad_token_id)
        timer.tokens += sum(len(x) + 1 for x in new)
        texts = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        return list(zip(batch["gen_index"].tolist(), batch["gen_prompt"], batch["gen_reference"], batch[DESIRABLE].tolist(),
                        texts, per_token, rewards, counts.tolist()))

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        keys = ("gap", "reward_gap", "desirable_logp", "undesirable_logp", "chrf", "chrf_undesirable", "bleu", "loss")
        return {k: scores.get(k) for k in keys}

    def outcome(self, final: dict[str, Any], data: Any, history: list[dict], lr: float | None, trained: bool) -> dict[str, Any]:
        return {"samples": final.get("samples", []), "generated_tokens_per_second": final.get("generated_tokens_per_second")}

    def describe(self, scores: dict[str, Any]) -> str:
        parts = [f"log-prob gap {scores.get('gap') or 0:.3f} (desirable minus undesirable, per token)"]
        if scores.get("reward_gap") is not None:
            parts.append(f"reward gap {scores['reward_gap']:.2f}")
        parts.append(f"chrF {scores.get('chrf') or 0:.1f} (vs undesirable {scores.get('chrf_undesirable') or 0:.1f})")
        return ", ".join(parts)

    def files(self, data: Any, scores: dict[str, Any]) -> dict[str, str]:
        return self.sft.files(data, scores)

    def generate(self, model: nn.Module, prompts: list[str], batch_size: int | None = None, progress: bool = True) -> list[str]:
        return self.sft.generate(model, prompts, batch_size, progress)

    def with_shots(self, split: Any, pool: Any, k: int, seed: int) -> Any:
        from ..data.feedback import Feedback as Rows

        good = pool.conversations.subset([i for i, d in enumerate(pool.desirable) if d])  # shots: desirable answers only
        if len(good) < k:
            raise AdaptlabError(f"strategy.shots={k}: the training data has {len(good)} desirable answers to show; use fewer shots")
        return Rows(self.sft.with_shots(split.conversations, good, k, seed), split.desirable)


class FeedbackCollate:
    """``sft``'s batch (right-padded answers, left-padded prompts) with each row's flag and cached reference."""

    def __init__(self, pad_token_id: int, answers: bool = True):
        self.sft = SFTCollate(pad_token_id, answers)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.sft(rows)
        batch[DESIRABLE] = torch.tensor([r["desirable"] for r in rows], dtype=torch.bool)
        if REFERENCE in rows[0]:
            batch[REFERENCE] = torch.tensor([r[REFERENCE][0] for r in rows], dtype=torch.float64)
        return batch


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan
