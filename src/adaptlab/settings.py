"""The settings sections of a run, each a typed model with a docstring per field.

The leaf of the package: every layer (data, strategies, the training loop) reads
its own section from here, and :mod:`adaptlab.config` assembles them, with the
chosen strategy's options, into a :class:`~adaptlab.config.RunConfig`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, fields carry docstrings."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


def parse_eval_sets(value: Any) -> Any:
    """``"zh=FILE,en=FILE"`` or ``["zh=FILE", ...]`` -> ``{"zh": FILE, ...}``; a plain path stays as it is."""
    if isinstance(value, str) and "=" in value:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if all(re.match(r"^[\w.-]+=.+$", p) for p in parts):
            value = parts
    if isinstance(value, list):
        out = {}
        for item in value:
            name, sep, source = str(item).partition("=")
            if not sep:  # a bare path in a list is named after its file
                name, source = Path(str(item)).stem or str(item), str(item)
            out[name.strip()] = source.strip()
        return out
    return value


class DataConfig(Section):
    task: str | None = None
    """Task type (``adaptlab tasks``): ``classification``, ``sft``, ``preference``, ``feedback``,
    ``language_modelling``; ``null`` tells it from the training data's columns (text and label: classification;
    prompt, answer and label: feedback; chosen and rejected: preference; prompt and response, ``messages`` or
    alpaca's ``instruction``/``output``: sft)."""
    train: str = "rotten-tomatoes"
    """A bundled dataset name (``adaptlab datasets``) or a CSV, TSV, JSONL, JSON or Parquet file."""
    eval: str | dict[str, str] | None = None
    """Evaluation file or bundled dataset; without it an ``eval_fraction`` of ``train`` is held out (stratified by class for classification; seeded).
    Several named sets (``{zh: FILE, en: FILE}``; CLI ``zh=FILE,en=FILE``) are each scored: the first is
    the main one (``metrics["eval"]``); a set whose source is ``train`` is its held-out split. None of them
    chooses anything during training (``validation_fraction`` does)."""
    text_column: str = "text"
    """Column holding the input text."""
    text_pair_column: str | None = None
    """Optional second text column, for sentence-pair tasks."""
    label_column: str = "label"
    """Column holding the label (strings or integers)."""
    eval_fraction: float = Field(0.2, gt=0, lt=1)
    """Share of ``train`` held out for evaluation when no ``eval`` file is given."""
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of the training examples set aside as a validation split: the best epoch and early stopping
    are chosen on it, never on the evaluation data the report shows. Not carved below
    ``min_validation_train`` training examples (then the last epoch is kept), nor from few-shot
    ``shots`` unless set explicitly; 0 disables it."""
    max_validation: int | None = Field(None, ge=1)
    """At most this many validation examples (seeded). ``null``: no cap for classification, 64 for sft
    (every epoch generates an answer for each, the slow part of its evaluation)."""
    min_validation_train: int = Field(100, ge=2)
    """Training sets smaller than this get no validation split (few-shot: every example trains)."""
    max_train: int | None = Field(None, ge=1)
    """Use at most this many training examples (stratified, seeded), for quick runs."""
    split_seed: int | None = Field(None, ge=0, lt=2**32)
    """Seed of the data's splits and samples (held-out, validation, ``max_train``, ``shots``); ``null``: ``train.seed``.
    ``compare --seeds`` fixes it at the first seed, so the seeds vary initialisation and order only (``--resplit``: the split too)."""
    max_eval: int | None = Field(None, ge=1)
    """Use at most this many evaluation examples (stratified, seeded)."""
    max_length: int = Field(128, ge=8)
    """Truncate inputs to this many tokens."""
    encoding: str = "utf-8"
    """Text encoding of the data files."""
    shots: int | None = Field(None, ge=1)
    """Few-shot: keep only this many training examples per class (seeded, after ``max_train``)."""
    target_shots: int | None = Field(None, ge=0)
    """Cross-lingual few-shot: add this many labelled examples per class of the ``target`` eval set to
    training (drawn from its examples outside the evaluated ones when ``max_eval`` leaves some)."""
    target: str | None = None
    """Name of the eval set ``target_shots`` draws from; ``null``: the first whose source is not ``train``."""
    prompt_column: str = "prompt"
    """sft: column holding the prompt (the user's turn)."""
    response_column: str = "response"
    """sft: column holding the response the model learns to give."""
    chosen_column: str = "chosen"
    """preference: column holding the preferred answer (text, or a TRL message list)."""
    rejected_column: str = "rejected"
    """preference: column holding the dispreferred answer."""
    system: str | None = None
    """sft: a system message put before every conversation (rows of ``messages`` keep their own)."""
    template: Literal["auto", "chat", "plain"] = "auto"
    """sft: ``chat``: the tokenizer's chat template; ``plain``: ``### Instruction / ### Response`` blocks
    (``adaptlab.data.conversations.PLAIN``); ``auto``: the chat template, an error when the tokenizer has none."""
    packing: bool = False
    """sft: pack short training examples into rows of ``max_length`` tokens, kept apart (positions restart
    and attention never crosses an example's boundary)."""

    @field_validator("eval", mode="before")
    @classmethod
    def _named_eval_sets(cls, value: Any) -> Any:
        return parse_eval_sets(value)


Rate = Annotated[float, Field(ge=0, le=1)]


class BackTranslateConfig(Section):
    """Back-translation through a generative model (``adaptlab.data.backtranslate``)."""

    via: str = "smollm2-135m"
    """Translator into the pivot language: a finished sft run folder, or a causal-LM backbone (alias, folder, hub id)
    prompted as an instruction model."""
    back: str | None = None
    """Translator back into English; ``null``: the same as ``via``."""
    language: str = "French"
    """The pivot language, as the translator is asked for it."""


class AugmentConfig(Section):
    """Task-specific data augmentation of the training examples (classification; never of evaluation data).

    The token-level operations are EDA's (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for
    Boosting Performance on Text Classification Tasks", §2); each rate is the share of a text's words the
    operation touches. ``adaptlab.data.augment`` says why synonyms come from the backbone's own embeddings.
    """

    copies: int = Field(0, ge=0, le=16)
    """Augmented copies added per training example (each from every enabled operation, seeded); 0: off,
    or 1 when any rate below is set."""
    deletion: Rate = 0.0
    """Random deletion: each word is dropped with this probability (EDA's RD; a text keeps one word)."""
    swap: Rate = 0.0
    """Random swap: ``rate x words`` times, two random words trade places (EDA's RS)."""
    synonym: Rate = 0.0
    """Synonym replacement: this share of the content words (not stop words) is replaced by one of their
    nearest neighbours in the backbone's input-embedding space (EDA's SR, with the model's own vocabulary
    instead of WordNet, which no offline package ships)."""
    neighbours: int = Field(5, ge=1, le=50)
    """Synonym replacement draws from this many nearest neighbours of a word."""
    backtranslate: BackTranslateConfig | None = None
    """Also add each example translated into a pivot language and back (Sennrich et al. 2016, §3.2; Xie et al.
    2020, §3.1), e.g. ``{via: smollm2-135m}``; translations are cached per text. ``null``: off."""

    @property
    def active(self) -> bool:
        return bool(self.deletion or self.swap or self.synonym)

    @property
    def on(self) -> bool:
        return self.active or self.backtranslate is not None

    @property
    def n_copies(self) -> int:
        return (self.copies or 1) if self.active else 0


class RegularizeConfig(Section):
    """Regularisers that balance adapting to the task against what the pretrained model knew
    (``adaptlab.training.regularize``). The forgetting block of metrics.json shows their effect."""

    label_smoothing: Rate = 0.0
    """Cross-entropy against targets mixed with the uniform distribution (Szegedy et al. 2016, §7); classification."""
    r_drop: float = Field(0.0, ge=0)
    """R-Drop (Liang et al. 2021, §2.1): each batch runs twice with different dropout masks, and this weight times
    the symmetric KL divergence between the two predictions is added; needs dropout (``train.dropout`` > 0 or
    the backbone's own); classification."""
    llrd: Annotated[float, Field(gt=0, le=1)] | None = None
    """Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA, appendix A; Howard & Ruder 2018, §3.2):
    the top transformer layer trains at ``lr x llrd``, each lower one ``llrd`` times slower, the embeddings
    slowest; the head and other new parameters at ``lr``. ``null``: off."""
    l2_sp: float = Field(0.0, ge=0)
    """L2-SP (Li et al. 2018, §3.1): adds ``l2_sp / 2 x ||w - w0||^2`` over the trained pretrained weights,
    pulling them back to the starting point ``w0`` instead of to zero; strategies that update backbone weights."""
    mixout: Rate = 0.0
    """Mixout (Lee et al. 2020, §3): while training, each weight of the backbone's linear layers is replaced by
    its pretrained value with this probability (rescaled to keep the expectation); strategies that update
    backbone weights. 0: off."""
    ema: Annotated[float, Field(gt=0, lt=1)] | None = None
    """Exponential moving average of the trained weights with this decay (e.g. 0.99; Polyak & Juditsky 1992):
    evaluation, the kept epoch and the saved model use the averaged weights. ``null``: off."""

    @property
    def active(self) -> bool:
        return any(getattr(self, k) for k in ("label_smoothing", "r_drop", "l2_sp", "mixout")) or \
            self.llrd is not None or self.ema is not None


class TrainConfig(Section):
    epochs: Annotated[int, Field(ge=1)] | Literal["auto"] | None = None
    """Passes over the training data. ``auto`` (what ``null`` means for most strategies): enough for at
    least ``min_steps`` optimiser steps, at most ``max_epochs``, stopping early (patience 2) when the
    validation split stops improving -- small data gets more epochs, large data fewer."""
    lr: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    """Peak learning rate. ``auto`` (what ``null`` means for most strategies): chosen by a learning-rate
    range test before training (Smith 2017; ``lr_find.py``), recorded in metrics.json."""
    lr_find_steps: int = Field(40, ge=5)
    """Steps of the learning-rate range test (each one training batch, exponentially rising rate)."""
    lr_find_share: float = Field(0.25, gt=0, le=1)
    """The most the range test may cost, as a share of the run's planned optimiser steps: a shorter run tests
    fewer steps, and one too short for a test of 20 steps trains at the strategy's default rate instead
    (metrics.json's ``train_settings.lr_find`` says which, and why)."""
    min_steps: int = Field(150, ge=1)
    """With ``epochs: auto``: the fewest optimiser steps a run gets (epochs are added until it has them)."""
    max_epochs: int = Field(10, ge=1)
    """With ``epochs: auto``: the most epochs a run gets, however small the data."""
    batch_size: int = Field(32, ge=1)
    """Examples per optimisation step (per device, before accumulation)."""
    eval_batch_size: int = Field(64, ge=1)
    """Examples per evaluation batch."""
    grad_accum: int = Field(1, ge=1)
    """Accumulate gradients over this many batches before each optimiser step."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay (not applied to biases and norms)."""
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    """Share of the steps spent warming the learning rate up from zero."""
    schedule: Literal["linear", "cosine", "constant", "slanted_triangular"] | None = None
    """Learning-rate decay after warm-up; ``null`` uses the strategy's recommended one."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the gradient norm to this value; ``null`` disables clipping."""
    dropout: float | None = Field(None, ge=0, lt=1)
    """Override every dropout probability of the backbone; ``null`` keeps the backbone's."""
    seed: int = Field(42, ge=0, lt=2**32)
    """Seed for initialisation, shuffling and the train/eval split (0 to 2**32 - 1, as numpy takes)."""
    metric: str | None = None
    """Evaluation metric used to keep the best epoch and for early stopping; ``null``: the task's primary
    metric (classification ``accuracy``, or ``macro_f1``; sft ``chrf``, or ``bleu``, ``rouge_l``, ``exact_match``)."""
    keep_best: bool = True
    """End with the weights of the best epoch (by ``metric``), not those of the last."""
    patience: int | None = Field(None, ge=1)
    """Stop after this many epochs without improvement on the validation split; ``null``: 2 with
    ``epochs: auto``, else never stop early."""
    bucket: bool = True
    """Group examples of similar length into batches (2-3x faster than padding to max)."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Keep only each block's input during the forward pass and recompute the rest in the backward pass
    (transformers' gradient checkpointing, non-reentrant): activation memory falls from every layer's to about
    one layer's, for about a third more compute. ``auto``: on for generative tasks (sft, preference: long
    sequences through many layers, as TRL's SFTTrainer and DPOTrainer default), off for classification."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 on GPUs that support it, fp32 on CPU (bf16 is ~20x slower there)."""
    log_every: int = Field(10, ge=1)
    """Write a line to ``steps.jsonl`` every this many optimiser steps."""
    checkpoint_every: int | None = Field(200, ge=1)
    """Also checkpoint every this many optimiser steps (epoch ends always are)."""
    progress: bool = True
    """Show a progress bar (in a terminal; never in logs)."""
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    """Experiment trackers that receive the settings, per-step loss and lr, per-epoch validation scores and the final
    metrics (``adaptlab.training.tracking``; the ``track`` extra: ``pip install 'adaptlab[track]'``)."""
    augment: AugmentConfig = AugmentConfig()
    """Data augmentation of the training examples (``{synonym: 0.1, copies: 1}``; off by default)."""
    regularize: RegularizeConfig = RegularizeConfig()
    """Regularisers against overfitting and forgetting (``{llrd: 0.8, l2_sp: 0.01}``; off by default)."""
    distributed: Literal["ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"] = "ddp"
    """The engine that spreads training over the processes of ``torchrun``/``accelerate launch`` (ignored in
    one process): ``ddp`` copies the model to each; ``fsdp`` (FSDP2) shards parameters, gradients and
    optimiser state per transformer block; ``deepspeed-zero2``/``-zero3`` shard optimiser state and
    gradients (and, at 3, parameters) through DeepSpeed. The run folder is the same whichever trained it."""


class GenerationConfig(Section):
    max_new_tokens: int = Field(96, ge=1)
    """Most tokens generated per prompt (generation stops earlier at the end-of-turn token)."""
    do_sample: bool = False
    """Sample instead of greedy decoding (greedy is the default: scores are then reproducible)."""
    temperature: float = Field(0.7, gt=0)
    """Sampling temperature (with ``do_sample``)."""
    top_p: float = Field(0.9, gt=0, le=1)
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``top_p`` (with ``do_sample``)."""
    batch_size: int = Field(16, ge=1)
    """Prompts generated together (left-padded, with the KV cache)."""
    samples: int = Field(5, ge=0)
    """Sample generations (prompt, reference, output) kept in metrics.json and shown in the report."""


class StrategyConfig(Section):
    """Base of every strategy's config; ``name`` selects the strategy."""

    name: str
    """Registered strategy name (``adaptlab strategies``)."""
