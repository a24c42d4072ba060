"""Label-text scorers: the numbers are the log-probabilities and similarities they claim to be."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from adaptlab.config import load_config
from adaptlab.errors import AdaptlabError
from adaptlab.models.verbalizer import EmbeddingScorer, LMScorer, VerbalizerOptions, label_texts


@pytest.fixture(scope="module")
def lm(tiny_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)


def test_lm_scores_are_mean_log_probabilities_of_the_label(lm):
    model, tokenizer = lm
    scorer = LMScorer(model, tokenizer, ["good", "bad awful"], "the {text} . Answer : {label}")
    enc = tokenizer(["film was good", "plot"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = scorer(**enc).logits
        for b, text in enumerate(["film was good", "plot"]):
            for j, label in enumerate(["good", "bad awful"]):
                context = [tokenizer.bos_token_id] * (scorer.prefix[:1] == [tokenizer.bos_token_id]) + tokenizer(
                    f"the {text} . Answer :", add_special_tokens=False)["input_ids"]
                target = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
                logp = model(torch.tensor([context + target])).logits[0].log_softmax(-1)
                expected = torch.stack([logp[len(context) - 1 + i, t] for i, t in enumerate(target)]).mean()
                torch.testing.assert_close(logits[b, j], expected, rtol=0, atol=1e-5)


def test_lm_scores_do_not_depend_on_batch_padding(lm):
    model, tokenizer = lm
    scorer = LMScorer(model, tokenizer, ["good", "bad"], "{text}\nAnswer: {label}", chunk=3)
    texts = ["the film was good", "bad", "a very dull and boring story"]
    with torch.inference_mode():
        together = scorer(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        alone = torch.cat([scorer(**tokenizer([t], return_tensors="pt")).logits for t in texts])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)


def test_embedding_scores_are_scaled_cosine_similarities(tiny_backbone):
    encoder = AutoModel.from_pretrained(tiny_backbone).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    scorer = EmbeddingScorer(encoder, tokenizer, ["good great", "bad awful"], scale=10.0)

    def embed(text):
        enc = tokenizer([text], return_tensors="pt")
        return encoder(**enc).last_hidden_state[0].mean(0)

    with torch.inference_mode():
        logits = scorer(**tokenizer(["the film was good"], return_tensors="pt")).logits[0]
        x = embed("the film was good")
        expected = torch.stack([10.0 * torch.cosine_similarity(x, embed(t), dim=0) for t in ["good great", "bad awful"]])
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_label_texts_must_name_real_labels():
    options = VerbalizerOptions(name="x", label_texts={"pos": "good", "typo": "bad"})
    with pytest.raises(AdaptlabError, match="typo"):
        label_texts(options, ["neg", "pos"])
    assert label_texts(VerbalizerOptions(name="x", label_texts={"pos": "good"}), ["neg", "pos"]) == ["neg", "good"]


def test_template_needs_a_text_placeholder():
    with pytest.raises(AdaptlabError, match="template"):
        load_config({"strategy": {"name": "zero_shot", "template": "Answer: {label}"}})
