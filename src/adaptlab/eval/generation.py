"""Generating answers and scoring them against references.

Generation is transformers' ``generate`` (KV cache, left padding, greedy by
default, stopping at the end-of-turn token); the scores come from the libraries
the field reports with: chrF and BLEU from sacrebleu (Popović 2015; Papineni et
al. 2002, with sacrebleu's standard 13a tokenisation), ROUGE-L from Google's
rouge-score (Lin 2004, F-measure, stemmed), both imported only when text is
scored (the ``generate`` extra). Exact match compares answers with case and
runs of whitespace ignored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from torch import nn

from ..errors import AdaptlabError

GENERATIONS = "generations"
"""Scores key of every (prompt, reference, output) a generative evaluation produced; written to the run folder
as generations.jsonl (a reward model judges them later, ``adaptlab.reporting.judge``), kept out of metrics.json."""


def generations_file(scores: dict[str, Any]) -> dict[str, str]:
    """``generations.jsonl``: one JSON line per evaluation prompt, in the evaluation split's order."""
    rows = scores.get(GENERATIONS) or []
    return {"generations.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)} if rows else {}


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus chrF and BLEU (0-100), mean ROUGE-L F1 (0-1) and exact match (0-1) of ``predictions``."""
    try:
        import sacrebleu
        from rouge_score import rouge_scorer
    except ImportError as e:
        raise AdaptlabError(f"scoring generated text needs the 'generate' extra (pip install 'adaptlab[generate]'): {e}") from None
    if not predictions:
        return {"chrf": 0.0, "bleu": 0.0, "rouge_l": 0.0, "exact_match": 0.0}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return {
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
        "rouge_l": sum(rouge) / len(rouge),
        "exact_match": sum(_norm(p) == _norm(r) for p, r in zip(predictions, references)) / len(predictions),
    }


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts padded on the left (a causal LM continues each from its last real token)."""
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in sequences])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    return ids, mask


@torch.inference_mode()
def generate_ids(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: Any,
                 stop_ids: list[int], pad_id: int, keep_stop: bool = False, **extra: Any) -> list[list[int]]:
    """New tokens for each left-padded prompt, up to the first stop token (included with ``keep_stop``: an answer
    trained on must learn to end). ``extra``: more of ``generate``'s arguments (a streamer, stopping criteria)."""
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                              "eos_token_id": stop_ids, "pad_token_id": pad_id, **extra}
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    else:  # greedy: silence the sampling defaults a model's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    target = getattr(model, "module", model)  # DDP wraps; generate lives on the model
    embedded = soft_prompt_inputs(target, input_ids, attention_mask)
    if embedded is not None:  # only the new tokens come back from inputs_embeds
        new = target.get_base_model().generate(**embedded, **kwargs).tolist()
    else:
        out = target.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new = out[:, input_ids.shape[1]:].tolist()
    return [_until(row, set(stop_ids), keep_stop) for row in new]


def soft_prompt_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """A prompt-tuned or p-tuned peft model's input for ``generate``: its soft prompt in front of the prompts'
    embeddings, as its forward pass puts it; None for other models.

    peft's own ``generate`` for these methods computes positions that OPT's learned position embeddings and
    Bloom's ALiBi reject (peft 0.21, transformers 5.24); generating from the embeddings works for every family,
    and its first token is the forward pass's (``tests/test_families.py``).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return None
    config = model.active_peft_config
    if not config.is_prompt_learning or config.peft_type.value == "PREFIX_TUNING":
        return None
    embeds = model.word_embeddings(input_ids)
    prompts = model.get_prompt(batch_size=input_ids.shape[0]).to(embeds.dtype)
    ones = torch.ones(input_ids.shape[0], prompts.shape[1], dtype=attention_mask.dtype, device=attention_mask.device)
    return {"inputs_embeds": torch.cat([prompts, embeds], dim=1), "attention_mask": torch.cat([ones, attention_mask], dim=1)}


def _until(ids: list[int], stops: set[int], keep: bool = False) -> list[int]:
    for k, token in enumerate(ids):
        if token in stops:
            return ids[: k + keep]
    return ids


class Timer:
    """Generated tokens and seconds, for tokens/s."""

    def __init__(self) -> None:
        self.tokens, self.seconds = 0, 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds += time.perf_counter() - self._start

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
