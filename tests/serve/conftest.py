"""Three finished runs over tiny in-process models -- a LoRA SFT policy and a reward model over one tiny chat
Llama, a LoRA classifier over a tiny BERT -- and a real ``adaptlab serve`` (uvicorn on 127.0.0.1, a free port)
over all three."""

from __future__ import annotations

from pathlib import Path

import pytest

import adaptlab

from ..conftest import make_tiny_chat_llama, write_csv
from ..tasks.test_preference import toy_pairs

QUICK = {"train.progress": False, "train.checkpoint_every": None, "train.seed": 0, "train.keep_best": False}


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_chat, tiny_backbone, translations_csv, toy_csv) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    pairs = write_csv(root / "pairs.csv", toy_pairs(120))
    vivid = make_tiny_chat_llama(root / "vivid-chat", init_range=1.0)  # random answers that differ by prompt: a mix-up shows
    adaptlab.train(strategy="lora", backbone=str(vivid), data=str(translations_csv), output=str(root / "policy"),
                   overrides={**QUICK, "data.max_length": 48, "data.max_eval": 8, "train.epochs": 1, "train.lr": 1e-4,
                              "train.batch_size": 16, "generation.max_new_tokens": 8})
    adaptlab.train(strategy="lora", backbone=str(tiny_backbone), data=str(toy_csv), output=str(root / "sentiment"),
                   overrides={**QUICK, "train.epochs": 2, "train.lr": 5e-3})
    adaptlab.train(strategy="reward_model", backbone=str(tiny_chat), data=str(pairs), output=str(root / "rm"),
                   overrides={**QUICK, "data.max_length": 32, "data.max_eval": 16, "train.epochs": 2, "train.lr": 1e-2,
                              "train.batch_size": 8})
    return {name: root / name for name in ("policy", "sentiment", "rm")}


@pytest.fixture(scope="session")
def engine(runs):
    from adaptlab.serve.engine import Engine

    return Engine([str(p) for p in runs.values()])


@pytest.fixture(scope="session")
def server(engine):
    """The base URL of a running server (16 requests to a batch, a 20 ms window)."""
    from adaptlab.serve.server import Limits, create_app, listen, running

    with running(create_app(engine, Limits(window_ms=20, max_batch=16)), listen("127.0.0.1", 0)) as url:
        yield url
