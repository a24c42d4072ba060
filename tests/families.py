"""Tiny random-weight models of many transformer families, with real tokenizers (the family matrix).

How transformers' and PEFT's own suites cover families offline: a config of each family at
hidden 64 and 2 layers, a model built from it in-process, and a real tokenizer from a bundled
backbone (SmolLM2's byte-level BPE for decoders, MiniLM's WordPiece for encoders). Every code path
-- loading, tokenising, preparing, training, saving, reloading -- is the one a real model of the
family takes; only the sizes are small.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

H, LAYERS, HEADS, KV, FF = 64, 2, 4, 2, 128
"""Width, depth, attention heads, key-value heads (grouped-query families) and feed-forward width."""


def _gqa(**extra: Any) -> dict[str, Any]:
    return {"hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV,
            "intermediate_size": FF, **extra}


def _mha(**extra: Any) -> dict[str, Any]:
    return {"hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": FF, **extra}


DECODERS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "gpt2": ("GPT2Config", lambda: {"n_embd": H, "n_layer": LAYERS, "n_head": HEADS, "n_inner": FF, "n_positions": 256}),
    "gpt_neox": ("GPTNeoXConfig", lambda: _mha(rotary_pct=0.5)),
    "opt": ("OPTConfig", lambda: {"hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "ffn_dim": FF,
                                  "word_embed_proj_dim": H}),
    "bloom": ("BloomConfig", lambda: {"hidden_size": H, "n_layer": LAYERS, "n_head": HEADS}),
    "falcon": ("FalconConfig", lambda: {"hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                                        "new_decoder_architecture": True, "num_kv_heads": KV}),
    "llama": ("LlamaConfig", lambda: _gqa()),
    "mistral": ("MistralConfig", lambda: _gqa(sliding_window=32)),
    "qwen2": ("Qwen2Config", lambda: _gqa()),
    "qwen3": ("Qwen3Config", lambda: _gqa(head_dim=16)),
    "gemma2": ("Gemma2Config", lambda: _gqa(head_dim=32, sliding_window=32)),  # head_dim x heads != hidden
    "gemma3_text": ("Gemma3TextConfig", lambda: _gqa(head_dim=16, sliding_window=32)),
    "phi": ("PhiConfig", lambda: _mha(partial_rotary_factor=0.5)),
    "phi3": ("Phi3Config", lambda: _gqa()),  # fused qkv_proj and gate_up_proj
    "olmo2": ("Olmo2Config", lambda: _gqa()),
    "granite": ("GraniteConfig", lambda: _gqa()),
    "starcoder2": ("Starcoder2Config", lambda: _gqa()),
}
"""Causal LMs: ``model_type`` -> (config class, its settings)."""

ENCODERS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "bert": ("BertConfig", lambda: _mha()),
    "roberta": ("RobertaConfig", lambda: _mha()),
    "xlm-roberta": ("XLMRobertaConfig", lambda: _mha()),
    "deberta-v2": ("DebertaV2Config", lambda: _mha(relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"])),
    "distilbert": ("DistilBertConfig", lambda: {"dim": H, "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": FF}),
    "electra": ("ElectraConfig", lambda: _mha(embedding_size=32)),
    "albert": ("AlbertConfig", lambda: _mha(embedding_size=32)),
    "mpnet": ("MPNetConfig", lambda: _mha()),
    "modernbert": ("ModernBertConfig", lambda: _mha(global_attn_every_n_layers=2, local_attention=16)),
}
"""Encoders: ``model_type`` -> (config class, its settings)."""

FAMILIES = {**DECODERS, **ENCODERS}


def tiny_config(family: str, tokenizer: Any) -> Any:
    """The family's config at the tiny size, with the tokenizer's vocabulary and special tokens."""
    import transformers

    name, settings = FAMILIES[family]
    special = {k: getattr(tokenizer, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    if family in ENCODERS:
        special |= {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
    config = getattr(transformers, name)(vocab_size=len(tokenizer), **settings(), **special)
    if family in ("roberta", "xlm-roberta"):  # positions start after the padding index
        config.max_position_embeddings = 258
    elif hasattr(config, "max_position_embeddings"):
        config.max_position_embeddings = 256
    return config


def make_tiny(family: str, folder: Path, tokenizer: Any, seed: int = 0) -> Path:
    """A Hugging Face folder with a tiny random-weight model of ``family`` and ``tokenizer``."""
    from transformers import AutoModel, AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(family, tokenizer)
    torch.manual_seed(seed)
    model = (AutoModelForCausalLM if family in DECODERS else AutoModel).from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def decoder_tokenizer() -> Any:
    """SmolLM2's tokenizer (byte-level BPE, vocabulary 49,152, ChatML template) from the bundled backbone."""
    from transformers import AutoTokenizer

    from adaptlab.models.backbones import BUNDLED_MODELS

    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODELS["smollm2-135m"].locate())
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


def encoder_tokenizer() -> Any:
    """MiniLM's WordPiece tokenizer (vocabulary 30,522) from the bundled backbone."""
    from transformers import AutoTokenizer

    from adaptlab.models.backbones import BUNDLED_MODELS

    return AutoTokenizer.from_pretrained(BUNDLED_MODELS["minilm-l6"].locate())
