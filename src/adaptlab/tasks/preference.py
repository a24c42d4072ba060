"""Preference data for a causal LM: a prompt, a chosen and a rejected answer (DPO, ORPO, reward models).

Rows are read by :mod:`adaptlab.data.preferences`; each pair is rendered with the same chat template
and masking by token position as ``sft``, and a batch of ``B`` pairs is one forward pass over ``2B``
sequences (chosen first, then rejected), as TRL's concatenated forward does. A sequence's
log-probability is the sum over its answer tokens only (Rafailov et al. 2023, eq. 7 uses
``log pi(y|x)``; the prompt is given, not scored).

Judged on held-out pairs by what a preference stage is for: the share of pairs whose chosen answer
the model finds likelier (the primary metric: the same for every strategy), and with a reference
model (DPO) the *reward accuracy* -- the share whose chosen answer gains more log-probability over the
reference than the rejected one (DPO's implicit reward, Rafailov et al. 2023 §5) -- and the mean
margin of that log-ratio; the chosen and rejected log-probabilities, and, from answers
generated for the prompts, chrF against the chosen answers, chrF against the rejected ones and the
share of archaic English words (:mod:`adaptlab.eval.style`). A strategy without an objective of its
own (``full``, ``lora``) trains on the chosen answers with the ``sft`` loss.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.batching import EXAMPLES
from ..data.conversations import IGNORE
from ..errors import AdaptlabError
from ..models.lm_head import KEY as ANSWERS
from ..models.lm_head import answer_logps
from .base import register_task
from .sft import SFT, SFTData, load_splits, require_causal_lm

log = logging.getLogger("adaptlab")

REFERENCE = "ref_logps"
"""Batch key of the reference model's log-probabilities, (2B,) chosen then rejected (a strategy's cache)."""
DESIRABLE = "_desirable"
"""Batch key: which rows hold a desirable answer, (2B,) here (chosen: yes, rejected: no), (B,) in ``feedback``."""
PAIRED = "_paired"
"""Batch key: True when the batch's rows are pairs, chosen half then rejected half (what pair statistics need)."""


@register_task
class Preference:
    """Prompts with a chosen and a rejected answer -> a causal LM that prefers the chosen (reward accuracy)."""

    summary = "prompt, chosen and rejected answers -> a causal LM that prefers the chosen (reward accuracy, chrF)"
    metrics = ("likelihood_accuracy", "reward_accuracy", "margin", "chrf")
    default_metric = "likelihood_accuracy"
    """The share of held-out pairs whose chosen answer the model finds likelier: measured the same way for
    every strategy, with a reference model or without one (ORPO, the model as it is)."""
    peft_task_type = "CAUSAL_LM"
    generative = True
    columns = (("likelihood_accuracy", "chosen likelier", "{:.3f}"), ("reward_accuracy", "reward accuracy", "{:.3f}"),
               ("margin", "reward margin", "{:.2f}"), ("chrf", "chrF", "{:.1f}"),
               ("chrf_rejected", "chrF vs rejected", "{:.1f}"), ("archaic_rate", "archaic words", "{:.3f}"))
    tolerance = 0.02
    serves = True
    auto_class = "AutoModelForCausalLM"
    train_defaults: dict[str, Any] = {"batch_size": 8, "eval_batch_size": 16}
    """TRL's SFTTrainer/DPOTrainer batch; evaluation generates for a whole batch at once (``generation.batch_size``)."""

    def __init__(self, sft: SFT | None = None):
        self.sft = sft or SFT()

    @property
    def renderer(self) -> Any:
        """The chat template of its answers (``tasks.base.Generative``)."""
        return self.sft.renderer

    @property
    def generation(self) -> Any:
        """The generation settings (``adaptlab generate --max-new-tokens`` replaces them)."""
        return self.sft.generation

    @generation.setter
    def generation(self, value: Any) -> None:
        self.sft.generation = value

    def detect(self, columns: list[str], data: Any) -> bool:
        from ..data.preferences import is_preference

        return is_preference(columns, data)

    def configure(self, run_config: Any, backbone: Any) -> Preference:
        require_causal_lm(backbone, "preference")
        return Preference(SFT().configure(run_config, backbone))

    # -- data ---------------------------------------------------------------------------------

    def load(self, cfg: Any, seed: int, table: Any = None) -> SFTData:
        from ..data.preferences import read_preferences

        return load_splits(cfg, seed, table, read_preferences, "preference", "pairs")

    def encode(self, split: Any, backbone: Any, cfg: Any, max_length: int) -> list[dict[str, Any]]:
        """One row per pair: both answers rendered (only the last answer trained), cut to ``max_length``."""
        rows, cut = [], 0
        renderer = self.sft.renderer
        prompts = split.prompts
        for i, (c_turns, r_turns) in enumerate(zip(split.chosen.turns, split.rejected.turns)):
            c, r = renderer.render(c_turns, trained=1), renderer.render(r_turns, trained=1)
            if max(c.prompt_length, r.prompt_length) >= max_length:
                raise AdaptlabError(f"a preference prompt ({prompts[i][:40]!r}...) takes {c.prompt_length} tokens and leaves no "
                                    f"room for its answers at data.max_length={max_length}; raise --max-length")
            cut += len(c.input_ids) > max_length or len(r.input_ids) > max_length
            longer = c.input_ids if len(c.input_ids) >= len(r.input_ids) else r.input_ids
            rows.append({"input_ids": longer[:max_length],  # the bucketing length
                         "chosen_ids": c.input_ids[:max_length], "chosen_labels": c.labels[:max_length],
                         "rejected_ids": r.input_ids[:max_length], "rejected_labels": r.labels[:max_length],
                         "gen_input_ids": c.input_ids[: c.prompt_length][-max_length:], "gen_reference": c_turns[-1]["content"],
                         "gen_rejected": r_turns[-1]["content"], "gen_prompt": prompts[i], "gen_index": i})
        if cut:
            log.warning("preference: %d of %d pairs have an answer longer than data.max_length=%d: cut (raise --max-length)",
                        cut, len(rows), max_length)
        return rows

    def training_rows(self, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        return rows

    # -- model -----------------------------------------------------------------------------------

    def build(self, task: Any, **load: Any) -> nn.Module:
        return self.sft.build(task, **load)

    def load_model(self, folder: Any, task: Any) -> nn.Module:
        return self.sft.load_model(folder, task)

    def collate(self, pad_token_id: int) -> Any:
        return PairCollate(pad_token_id, self.sft.answers)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Without an objective of the strategy's own: the sft loss on the chosen answers."""
        logps, mask = answer_logps(outputs, batch["labels"])
        half = logps.shape[0] // 2
        return -logps[:half].sum() / mask[:half].sum().clamp(min=1)

    # -- judging -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        from ..eval.generation import GENERATIONS, Timer, text_metrics
        from ..eval.style import archaic_rate

        was_training = model.training
        model.eval()
        device = None if accelerator is not None else next(model.parameters()).device
        parts: list[tuple[torch.Tensor, ...]] = []
        nll, count, outputs, timer = 0.0, 0, [], Timer()
        for batch in tqdm(batches, desc="scoring pairs", unit="batch", leave=False, disable=None):
            if device is not None:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            scores, total, n, rows = self._pairs(model, batch, timer)
            if accelerator is not None:
                scores = accelerator.gather_for_metrics(scores)
                total, n = accelerator.reduce(total.double(), "sum"), accelerator.reduce(n, "sum")
                rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
            parts.append(tuple(t.float().cpu() for t in scores))
            nll, count, outputs = nll + float(total), count + int(n), outputs + rows
        model.train(was_training)
        if not outputs:
            return {"reward_accuracy": None, "loss": None, "examples": 0}
        ratio, plain, chosen, rejected = (torch.cat(t) for t in zip(*parts))
        outputs.sort()
        generated, loss = [o[4] for o in outputs], nll / max(count, 1)
        implicit = not bool(ratio.isnan().any())  # a reference model's log-probs came with every batch
        return {"likelihood_accuracy": _wins(plain), "reward_accuracy": _wins(ratio) if implicit else None,
                "margin": float(ratio.mean()) if implicit else None,
                "chosen_logp": float(chosen.mean()), "rejected_logp": float(rejected.mean()),
                **text_metrics(generated, [o[2] for o in outputs]),
                "chrf_rejected": text_metrics(generated, [o[3] for o in outputs])["chrf"],
                "archaic_rate": archaic_rate(generated), "loss": loss, "perplexity": math.exp(min(loss, 50)),
                "examples": len(outputs), "generated_tokens_per_second": round(timer.rate, 1),
                "samples": [{"prompt": p, "reference": c, "rejected": r, "output": o}
                            for _, p, c, r, o in outputs[: self.sft.generation.samples]],
                GENERATIONS: [{"prompt": p, "reference": c, "rejected": r, "output": o} for _, p, c, r, o in outputs]}

    def _pairs(self, model: nn.Module, batch: dict[str, Any], timer: Any) -> tuple[tuple[torch.Tensor, ...], Any, Any, list]:
        """One batch: (log-ratio margin over the reference, plain margin, chosen and rejected log-probs), the
        chosen answers' summed NLL and token count, and (index, prompt, chosen, rejected, generated) rows."""
        from ..eval.generation import generate_ids
        from ..eval.metrics import model_inputs

        tokens, mask = answer_logps(model(**model_inputs(batch)), batch["labels"])
        logps = tokens.sum(-1)
        half = logps.shape[0] // 2
        plain = logps[:half] - logps[half:]
        ratio = dpo_logits(logps, batch[REFERENCE]) if REFERENCE in batch else torch.full_like(plain, float("nan"))
        total, n = -tokens[:half].sum(), mask[:half].sum()
        tokenizer = self.sft.renderer.tokenizer
        with timer:
            new = generate_ids(model, batch["gen_input_ids"], batch["gen_attention_mask"], self.sft.generation,
                               self.sft.renderer.stop_ids, tokenizer.pad_token_id)
        timer.tokens += sum(len(x) + 1 for x in new)
        texts = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        rows = list(zip(batch["gen_index"].tolist(), batch["gen_prompt"], batch["gen_reference"], batch["gen_rejected"], texts))
        return (ratio, plain, logps[:half], logps[half:]), total, n, rows

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        keys = ("reward_accuracy", "margin", "likelihood_accuracy", "chosen_logp", "rejected_logp", "chrf", "chrf_rejected", "bleu",
                "archaic_rate", "loss")
        return {k: scores.get(k) for k in keys}

    def outcome(self, final: dict[str, Any], data: Any, history: list[dict], lr: float | None, trained: bool) -> dict[str, Any]:
        return {"samples": final.get("samples", []), "generated_tokens_per_second": final.get("generated_tokens_per_second")}

    def describe(self, scores: dict[str, Any]) -> str:
        """The measured scores in words (a reward model's run has only its reward accuracy and margin)."""
        parts = []
        if scores.get("likelihood_accuracy") is not None:
            parts.append(f"chosen likelier {scores['likelihood_accuracy']:.3f}")
        if scores.get("reward_accuracy") is not None:
            parts.append(f"reward accuracy {scores['reward_accuracy']:.3f} (margin {scores['margin']:.2f})")
        if scores.get("chrf") is not None:
            parts.append(f"chrF {scores['chrf']:.1f} (vs rejected {scores.get('chrf_rejected') or 0:.1f}), "
                         f"archaic words {scores.get('archaic_rate') or 0:.3f}")
        return ", ".join(parts) or "no pairs scored"

    def files(self, data: Any, scores: dict[str, Any]) -> dict[str, str]:
        return self.sft.files(data, scores)

    def generate(self, model: nn.Module, prompts: list[str], batch_size: int | None = None, progress: bool = True) -> list[str]:
        return self.sft.generate(model, prompts, batch_size, progress)

    def with_shots(self, split: Any, pool: Any, k: int, seed: int) -> Any:
        return replace(split, chosen=self.sft.with_shots(split.chosen, pool.chosen, k, seed),
                       rejected=self.sft.with_shots(split.rejected, pool.chosen, k, seed))


def win_share(margins: torch.Tensor) -> torch.Tensor:
    """The share of pairs won, a tie (the policy is still the reference) counting half: 0.5 at the start
    (a tensor on the margins' device: the training loop reads it with its other statistics)."""
    return ((margins > 0).float() + 0.5 * (margins == 0).float()).mean()


def _wins(margins: torch.Tensor) -> float:
    return float(win_share(margins))


def pair_stats(logps: torch.Tensor, margins: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
    """What a preference loss logs per training batch (as TRL does): the share of pairs won by ``margins``
    (under ``name``), their mean, and the mean chosen and rejected log-probabilities; detached."""
    half = logps.shape[0] // 2
    logps, margins = logps.detach(), margins.detach()
    return {name: win_share(margins), "margin": margins.mean(), "chosen_logp": logps[:half].mean(),
            "rejected_logp": logps[half:].mean()}


def sequence_logps(outputs: Any, labels: torch.Tensor) -> torch.Tensor:
    """Per sequence: the summed log-probability of its labelled (answer) tokens, shape (rows,). ``outputs``: a
    model's outputs (the labelled tokens' log-probabilities, :mod:`adaptlab.models.lm_head`) or a logits tensor."""
    from .sft import _as_outputs

    return answer_logps(_as_outputs(outputs), labels)[0].sum(-1)


class PairCollate:
    """B pairs -> 2B right-padded sequences (chosen, then rejected); the chosen prompts left-padded for generation."""

    def __init__(self, pad_token_id: int, answers: bool = True):
        self.pad, self.answers = pad_token_id, answers

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from ..eval.generation import left_pad

        ids = [r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows]
        labels = [r["chosen_labels"] for r in rows] + [r["rejected_labels"] for r in rows]
        width = max(len(x) for x in ids)
        batch: dict[str, Any] = {
            "use_cache": False,
            "input_ids": torch.tensor([x + [self.pad] * (width - len(x)) for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            "labels": torch.tensor([y + [IGNORE] * (width - len(y)) for y in labels]),
            EXAMPLES: len(rows), PAIRED: True,
            DESIRABLE: torch.tensor([True] * len(rows) + [False] * len(rows)),
        }
        if self.answers:  # the answers' log-probabilities only: no logits for the prompts, none over the vocabulary
            batch[ANSWERS] = batch["labels"]
        if REFERENCE in rows[0]:
            batch[REFERENCE] = torch.tensor([r[REFERENCE][0] for r in rows] + [r[REFERENCE][1] for r in rows], dtype=torch.float64)
        if "gen_input_ids" in rows[0]:
            batch["gen_input_ids"], batch["gen_attention_mask"] = left_pad([r["gen_input_ids"] for r in rows], self.pad)
            batch["gen_index"] = torch.tensor([r["gen_index"] for r in rows])
            for key in ("gen_prompt", "gen_reference", "gen_rejected"):
                batch[key] = [r[key] for r in rows]
        return batch


def dpo_logits(logps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per pair: (log pi(yw) - log ref(yw)) - (log pi(yl) - log ref(yl)), the argument of DPO's sigmoid
    (Rafailov et al. 2023, eq. 7, without beta)."""
    half = logps.shape[0] // 2
    return (logps[:half] - logps[half:]) - (reference[:half] - reference[half:]).to(logps.dtype)

