"""Supervised fine-tuning (SFT) of a causal LM: learn to answer prompts, judged by what it generates.

Rows are conversations (:mod:`adaptlab.data.conversations`); the loss is the
next-token cross-entropy on the assistant tokens only (Ouyang et al. 2022 §3.5
train on demonstrations the same way), averaged over those tokens, computed from
the labelled positions' log-probabilities alone, in chunks (:mod:`adaptlab.models.lm_head`):
no full-vocabulary logits are made. Evaluation
generates an answer for every evaluation prompt (greedy by default) and scores it
against the reference with chrF (the primary metric: robust for translation and
short answers, Kocmi et al. 2021), BLEU, ROUGE-L and exact match, next to the
response-token loss and its perplexity.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.conversations import IGNORE, Conversations, Renderer, read_conversations
from ..errors import AdaptlabError
from ..models.lm_head import KEY as ANSWERS
from .base import register_task

log = logging.getLogger("adaptlab")

VALIDATION_CAP = 64
"""Validation examples when ``data.max_validation`` is unset: each epoch generates an answer for each."""


@dataclass
class SFTData:
    """Conversations split into train / validation / eval, as the runner expects of any task's data."""

    train: Conversations
    eval: Conversations
    source: str
    form: str
    """How the rows were written: ``prompt/response``, ``messages``, ``alpaca``, or ``prompt`` (prompts alone)."""
    eval_name: str = "eval"
    extra_evals: dict[str, Conversations] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    validation: Conversations | None = None
    labels: list[str] = field(default_factory=list)


@register_task
class SFT:
    """Prompts and responses (or chat messages) -> a causal LM that answers them (chrF, BLEU, ROUGE-L)."""

    summary = "prompts and responses, chat messages or alpaca rows -> a causal LM (chrF, BLEU, ROUGE-L)"
    metrics = ("chrf", "bleu", "rouge_l", "exact_match")
    default_metric = "chrf"
    peft_task_type = "CAUSAL_LM"
    generative = True
    columns = (("chrf", "chrF", "{:.1f}"), ("bleu", "BLEU", "{:.1f}"), ("rouge_l", "ROUGE-L", "{:.3f}"),
               ("exact_match", "exact match", "{:.3f}"), ("loss", "response loss", "{:.3f}"))
    tolerance = 1.0  # one chrF point
    serves = True
    auto_class = "AutoModelForCausalLM"
    train_defaults: dict[str, Any] = {"batch_size": 8, "eval_batch_size": 16}
    """TRL's SFTTrainer/DPOTrainer batch; evaluation generates for a whole batch at once (``generation.batch_size``)."""

    def __init__(self, renderer: Renderer | None = None, generation: Any = None, system: str | None = None, packing: bool = False):
        self.renderer, self.generation, self.system, self.packing = renderer, generation, system, packing
        self.answers = True  # the built model takes ``answer_labels`` (lm_head.install; set when it is built)

    def detect(self, columns: list[str], data: Any) -> bool:
        from ..data.conversations import row_format

        return row_format(columns, data) is not None

    def configure(self, run_config: Any, backbone: Any) -> SFT:
        require_causal_lm(backbone, "sft")
        renderer = Renderer(backbone.tokenizer, run_config.data.template, backbone.name)
        return SFT(renderer, run_config.generation, run_config.data.system, run_config.data.packing)

    # -- data ---------------------------------------------------------------------------------

    def load(self, cfg: Any, seed: int, table: Any = None) -> SFTData:
        return load_splits(cfg, seed, table, read_conversations, "sft", "rows")

    def encode(self, split: Conversations, backbone: Any, cfg: Any, max_length: int) -> list[dict[str, Any]]:
        """Rows of token ids and labels (assistant tokens only), cut to ``max_length``; cuts are reported."""
        rows, cut_rows, lost = [], 0, 0
        prompts = split.prompts  # a property that walks every conversation: once, not per row
        for i, turns in enumerate(split.turns):
            r = self.renderer.render(turns)
            if r.prompt_length >= max_length:
                raise AdaptlabError(f"an sft prompt ({turns[-2]['content'][:40]!r}...) takes {r.prompt_length} tokens and leaves no room "
                                    f"for its response at data.max_length={max_length}; raise --max-length or shorten the prompt")
            if len(r.input_ids) > max_length:
                cut_rows += 1
                lost += sum(1 for y in r.labels[max_length:] if y != IGNORE)
            prompt = r.input_ids[: r.prompt_length][-max_length:]
            rows.append({"input_ids": r.input_ids[:max_length], "labels": r.labels[:max_length], "gen_input_ids": prompt,
                         "gen_reference": turns[-1]["content"], "gen_prompt": prompts[i], "gen_index": i})
        if cut_rows:
            log.warning("sft: %d of %d rows are longer than data.max_length=%d: %d response tokens cut (raise --max-length to keep them)",
                        cut_rows, len(rows), max_length, lost)
        return rows

    def training_rows(self, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        """With ``data.packing``: examples concatenated in order into rows of at most ``max_length`` tokens.

        Each example keeps its own positions (``position_ids`` restart at 0) and, since the batch then has no
        attention mask, transformers builds a block-diagonal causal mask from those positions: attention never
        crosses an example's boundary (``masking_utils.find_packed_sequence_indices``). The first token of each
        example is a prompt token, so no label reaches across a boundary either.
        """
        if not self.packing:
            return rows
        packed: list[dict[str, Any]] = []
        current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for row in rows:
            n = len(row["input_ids"])
            if current["input_ids"] and len(current["input_ids"]) + n > max_length:
                packed.append(current)
                current = {"input_ids": [], "labels": [], "position_ids": []}
            current["input_ids"] += row["input_ids"]
            current["labels"] += row["labels"]
            current["position_ids"] += list(range(n))
        if current["input_ids"]:
            packed.append(current)
        log.info("sft: %d training examples packed into %d rows of at most %d tokens", len(rows), len(packed), max_length)
        return packed

    # -- model -----------------------------------------------------------------------------------

    def build(self, task: Any, **load: Any) -> nn.Module:
        from transformers import AutoModelForCausalLM

        from ..models.modeling import load_dtype, set_dropout

        backbone = task.backbone
        config = backbone.config.__class__.from_dict(backbone.config.to_dict())
        config.pad_token_id = backbone.tokenizer.pad_token_id
        dropout = getattr(task.train_config, "dropout", None)
        if dropout is not None:
            set_dropout(config, dropout)
        model = AutoModelForCausalLM.from_pretrained(backbone.source, config=config, **{"dtype": load_dtype(task.train_config), **load})
        return self.answering(model)

    def answering(self, model: nn.Module) -> nn.Module:
        """``model`` with the chunked labelled-token forward (:func:`adaptlab.models.lm_head.install`); batches
        carry ``answer_labels`` when it has one."""
        from ..models.lm_head import install

        install(model)
        self.answers = bool(getattr(model, "_adaptlab_answer_forward", False))
        return model

    def load_model(self, folder: Any, task: Any) -> nn.Module:
        from transformers import AutoModelForCausalLM

        return self.answering(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32))

    def collate(self, pad_token_id: int) -> Any:
        return SFTCollate(pad_token_id, self.answers)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        nll, count = response_nll(outputs, batch["labels"])
        return nll / count.clamp(min=1)

    # -- judging -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        """Response-token loss on every batch, and an answer generated for every prompt, scored."""
        from ..eval.generation import GENERATIONS, Timer, generate_ids, text_metrics
        from ..eval.metrics import model_inputs

        was_training = model.training
        model.eval()
        device = None if accelerator is not None else next(model.parameters()).device
        nll = torch.zeros((), dtype=torch.float64)
        count = 0
        outputs: list[tuple[int, str, str, str]] = []
        timer = Timer()
        tokenizer = self.renderer.tokenizer
        main = accelerator is None or accelerator.is_local_main_process
        for batch in tqdm(batches, desc="generating", unit="batch", disable=None if main else True, leave=False):
            if device is not None:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            total, n = response_nll(model(**model_inputs(batch)), batch["labels"])
            with timer:
                new = generate_ids(model, batch["gen_input_ids"], batch["gen_attention_mask"], self.generation,
                                   self.renderer.stop_ids, tokenizer.pad_token_id)
            timer.tokens += sum(len(x) + 1 for x in new)
            texts = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
            rows = list(zip(batch["gen_index"].tolist(), batch["gen_prompt"], batch["gen_reference"], texts))
            if accelerator is not None:
                total, n = accelerator.reduce(total.double(), "sum"), accelerator.reduce(n, "sum")
                rows = accelerator.gather_for_metrics(rows, use_gather_object=True)
            nll += total.double().cpu()
            count += int(n)
            outputs += rows
        model.train(was_training)
        outputs.sort()
        loss = nll.item() / max(count, 1)
        scores = text_metrics([o[3] for o in outputs], [o[2] for o in outputs])
        generated = [{"prompt": p, "reference": r, "output": o} for _, p, r, o in outputs]
        return {**scores, "loss": loss, "perplexity": math.exp(min(loss, 50)), "examples": len(outputs),
                "generated_tokens_per_second": round(timer.rate, 1), "samples": generated[: self.generation.samples],
                GENERATIONS: generated}

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        return {k: scores.get(k) for k in (*self.metrics, "loss", "perplexity")}

    def outcome(self, final: dict[str, Any], data: Any, history: list[dict], lr: float | None, trained: bool) -> dict[str, Any]:
        return {"samples": final.get("samples", []), "generated_tokens_per_second": final.get("generated_tokens_per_second")}

    def describe(self, scores: dict[str, Any]) -> str:
        return (f"chrF {scores.get('chrf') or 0:.1f}, BLEU {scores.get('bleu') or 0:.1f}, ROUGE-L {scores.get('rouge_l') or 0:.3f}, "
                f"response loss {scores.get('loss') or 0:.4f}")

    def files(self, data: Any, scores: dict[str, Any]) -> dict[str, str]:
        from ..eval.generation import generations_file

        return generations_file(scores)

    @torch.inference_mode()
    def generate(self, model: nn.Module, prompts: list[str], batch_size: int | None = None, progress: bool = True) -> list[str]:
        """An answer to each prompt (a user turn, after ``data.system`` when set), in input order."""
        from ..eval.generation import generate_ids, left_pad

        system = [{"role": "system", "content": self.system}] if self.system else []
        ids = [self.renderer.generation_prompt(system + [{"role": "user", "content": p}]) for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
        size = batch_size or self.generation.batch_size
        device = next(model.parameters()).device
        out: list[str] = [""] * len(ids)
        was_training = model.training
        model.eval()
        for start in tqdm(range(0, len(order), size), desc="generating", unit="batch", disable=None if progress else True, leave=False):
            chunk = order[start : start + size]
            input_ids, mask = left_pad([ids[i] for i in chunk], self.renderer.tokenizer.pad_token_id)
            new = generate_ids(model, input_ids.to(device), mask.to(device), self.generation, self.renderer.stop_ids,
                               self.renderer.tokenizer.pad_token_id)
            for i, text in zip(chunk, self.renderer.tokenizer.batch_decode(new, skip_special_tokens=True)):
                out[i] = text.strip()
        model.train(was_training)
        return out

    def with_shots(self, split: Conversations, pool: Conversations, k: int, seed: int) -> Conversations:
        """Each conversation with ``k`` examples of ``pool`` put before it as earlier turns (in-context learning)."""
        rng = random.Random(seed)
        out = []
        for turns in split.turns:
            shots = [{**t, "train": False} for c in rng.sample(pool.turns, k) for t in c if t["role"] != "system"]
            system = [t for t in turns if t["role"] == "system"]
            out.append(system + shots + [t for t in turns if t["role"] != "system"])
        return replace(split, turns=out)


def response_nll(outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over the labelled positions, and their count.

    ``outputs``: a model's outputs (the labelled tokens' log-probabilities of :mod:`adaptlab.models.lm_head`, or
    full logits from a model it could not wrap) or a logits tensor. Position t predicts token t + 1.
    """
    from ..models.lm_head import answer_logps

    logps, mask = answer_logps(_as_outputs(outputs), labels)
    return -logps.sum(), mask.sum()


def _as_outputs(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        from types import SimpleNamespace

        return SimpleNamespace(logits=outputs, token_logps=None)
    return outputs


def aligned(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last positions the logits and labels share: prompt-learning models return logits for their
    virtual tokens too, in front; a batch with ``logits_to_keep`` gets logits for its last positions only."""
    n = min(logits.shape[1], labels.shape[1])
    return logits[:, logits.shape[1] - n :], labels[:, labels.shape[1] - n :]


def logits_needed(labels: torch.Tensor) -> int:
    """``logits_to_keep`` for a batch: the positions from the one before its first labelled token to the end
    (position t predicts token t + 1); at least 1 (transformers reads 0 as *all*)."""
    labelled = (labels != IGNORE).any(0).nonzero()
    return labels.shape[1] - int(labelled[0]) + 1 if len(labelled) else 1


class SFTCollate:
    """Right-padded inputs and labels for the loss; left-padded prompts for generation; texts alongside.

    ``use_cache: False`` rides along as a model argument: a forward pass over whole sequences needs no
    KV cache, and packed rows are only recognised (block-diagonal attention) without one."""

    def __init__(self, pad_token_id: int, answers: bool = False):
        self.pad, self.answers = pad_token_id, answers

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from ..eval.generation import left_pad

        width = max(len(r["input_ids"]) for r in rows)
        if "position_ids" in rows[0]:  # packed rows: no attention mask, so the positions separate the examples
            pad = [width - len(r["input_ids"]) for r in rows]
            packed = {"input_ids": torch.tensor([r["input_ids"] + [self.pad] * k for r, k in zip(rows, pad)]),
                      "position_ids": torch.tensor([r["position_ids"] + list(range(k)) for r, k in zip(rows, pad)]),
                      "labels": torch.tensor([r["labels"] + [IGNORE] * k for r, k in zip(rows, pad)]),
                      "use_cache": False}  # with a cache, transformers would not look for packed sequences
            if self.answers:
                packed[ANSWERS] = packed["labels"]
            return packed
        batch: dict[str, Any] = {
            "use_cache": False,  # scoring a whole sequence: no KV cache to build (generation makes its own)
            "input_ids": torch.tensor([r["input_ids"] + [self.pad] * (width - len(r["input_ids"])) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]),
            "labels": torch.tensor([r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows]),
        }
        if self.answers:  # the model computes the labelled tokens' log-probabilities only
            batch[ANSWERS] = batch["labels"]
        if "gen_input_ids" in rows[0]:
            batch["gen_input_ids"], batch["gen_attention_mask"] = left_pad([r["gen_input_ids"] for r in rows], self.pad)
            batch["gen_index"] = torch.tensor([r["gen_index"] for r in rows])
            batch["gen_prompt"] = [r["gen_prompt"] for r in rows]
            batch["gen_reference"] = [r["gen_reference"] for r in rows]
        return batch


def require_causal_lm(backbone: Any, task: str) -> None:
    """Stop with one line when ``backbone`` cannot generate (an encoder), naming ones that can."""
    from ..models.verbalizer import is_causal_lm

    if not is_causal_lm(backbone.config):
        raise AdaptlabError(f"task {task} needs a causal LM, and backbone {backbone.name} is a {backbone.config.model_type} encoder; "
                            f"use --backbone smollm2-135m, or a local or hub causal LM (Llama, Qwen, Mistral, GPT-2 families)")


def load_splits(cfg: Any, seed: int, table: Any, read: Any, task: str, unit: str) -> SFTData:
    """Read, validate and split a generative task's data: held-out eval (or the named eval sets), samples
    of at most ``max_train``/``max_eval``, a seeded validation split. ``read(table, cfg)`` gives the split
    (conversations, preference pairs: anything with ``len`` and ``subset``) and the form its rows had."""
    from ..data.task import eval_sources, load_table

    for name in ("shots", "target_shots"):
        if getattr(cfg, name) is not None:
            raise AdaptlabError(f"data.{name} is for classification (examples per class); task {task} has no classes")
    table = table or load_table(cfg.train, cfg.encoding)
    train, form = read(table, cfg)
    log.info("%s: %d %s of %s read as %s", task, len(train), unit, table.source, form)
    named = eval_sources(cfg)
    held_out = None
    if not named or cfg.train in named.values():
        n_eval = max(1, round(len(train) * cfg.eval_fraction))
        if len(train) - n_eval < 2:
            raise AdaptlabError(f"{table.source} has too few {unit} ({len(train)}) to hold out an eval split")
        held_out, train = hold_out(train, n_eval, seed)
    sets = {name: held_out if source == cfg.train else read(load_table(source, cfg.encoding), cfg)[0]
            for name, source in named.items()} or {"eval": held_out}
    sets = {name: sample_split(rows, cfg.max_eval, seed) for name, rows in sets.items()}
    train = sample_split(train, cfg.max_train, seed)
    validation = None
    if cfg.validation_fraction and len(train) >= cfg.min_validation_train:
        n = min(round(len(train) * cfg.validation_fraction), cfg.max_validation or VALIDATION_CAP)
        validation, train = hold_out(train, n, seed + 1)
    main, *rest = sets
    sampling = {"form": form, **({"validation_examples": len(validation)} if validation else {})}
    return SFTData(train, sets[main], table.source, form, main, {n: sets[n] for n in rest}, sampling, validation)


def hold_out(split: Conversations, n: int, seed: int) -> tuple[Conversations, Conversations]:
    """``n`` conversations drawn (seeded), and the rest; both in their original order."""
    order = list(range(len(split)))
    random.Random(seed).shuffle(order)
    return split.subset(sorted(order[:n])), split.subset(sorted(order[n:]))


def sample_split(split: Conversations, limit: int | None, seed: int) -> Conversations:
    if not limit or limit >= len(split):
        return split
    return split.subset(sorted(random.Random(seed).sample(range(len(split)), limit)))
