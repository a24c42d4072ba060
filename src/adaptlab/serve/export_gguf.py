"""``adaptlab export RUN --format gguf``: a causal-LM run as one GGUF file for llama.cpp, Ollama and LM Studio.

The run is first a plain transformers model (adapters merged, as ``adaptlab merge`` does; full and partial
fine-tuning runs are one already); its weights and tokenizer are then written with the ``gguf`` package,
llama.cpp's own reader/writer (tensor names from its name map, metadata keys from its constants, merges and
special tokens from its ``SpecialVocab``). llama.cpp's ``convert_hf_to_gguf.py`` is a script in its repository,
not on the package index, so the few steps it adds are here: the per-architecture layout (Llama-family query and
key rows permuted to llama.cpp's rotary layout), the vocabulary with token types, and quantisation (``f32``,
``f16``, or ``q8_0`` through ``gguf.quants``). The file is then read back through transformers' GGUF loader and
its logits compared with the run's on probe prompts before it is moved into place.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from ..errors import AdaptlabError
from .predict import Predictor

ARCHITECTURES = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False)}
"""transformers ``model_type`` -> (GGUF architecture, whether query/key rows are permuted for llama.cpp's rope)."""
TYPES = ("f32", "f16", "q8_0")
PROBE = ["What is the capital of France?", "Translate into English: Je suis heureux.", "Write one word."]


@dataclass
class Check:
    max_logit_gap: float
    """Largest absolute difference of a next-token logit, the GGUF model against the run."""
    top1_agreement: float
    """Share of probe positions where both models pick the same next token."""
    same_tokens: bool
    """The tokenizer read back from the file splits the probe prompts into the run tokenizer's ids."""


def causal_model(predictor: Predictor) -> PreTrainedModel:
    """The run as a plain transformers causal LM: merged adapters, or the fine-tuned model itself."""
    if not predictor.generative:
        raise AdaptlabError(f"{predictor.run_dir} is a {predictor.task_type.name} run: GGUF export is for causal LMs "
                            f"(sft or preference runs); classifiers export with --format onnx")
    merge = getattr(predictor.strategy, "merge", None)
    model = merge(predictor.module) if callable(merge) else predictor.module
    model = getattr(model, "model", model) if not isinstance(model, PreTrainedModel) else model
    if not isinstance(model, PreTrainedModel) or not hasattr(model, "lm_head"):
        raise AdaptlabError(f"'{predictor.strategy.name}' runs cannot be exported to GGUF: what they trained has no place "
                            f"in a plain model (export a full, lora, dora or ia3 run)")
    return model.eval()


def write_gguf(model: PreTrainedModel, tokenizer: Any, path: Path, dtype: str, pre: str) -> None:
    import gguf

    config = model.config
    if config.model_type not in ARCHITECTURES:
        raise AdaptlabError(f"GGUF export supports {', '.join(sorted(ARCHITECTURES))} models; this run's is {config.model_type}")
    arch, permute = ARCHITECTURES[config.model_type]
    writer = gguf.GGUFWriter(str(path), arch)
    _metadata(writer, config, dtype)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        _vocabulary(writer, tokenizer, config.vocab_size, pre)
        gguf.SpecialVocab(folder, load_merges=True, n_vocab=config.vocab_size).add_to_gguf(writer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    output, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    out_weight, in_weight = getattr(output, "weight", None), getattr(embeddings, "weight", None)
    tied = isinstance(out_weight, torch.Tensor) and isinstance(in_weight, torch.Tensor) and out_weight.data_ptr() == in_weight.data_ptr()
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # llama.cpp reads the embedding matrix as the output layer when there is none
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise AdaptlabError(f"GGUF export: no GGUF name for the tensor {name}")
        data = tensor.detach().float()
        if permute and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in name else config.num_key_value_heads
            data = _rope_rows(data, heads)
        _add(writer, target, data.numpy(), dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _rope_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' rotary layout (halves) -> llama.cpp's (interleaved pairs), row-wise per head."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _add(writer, name: str, data: np.ndarray, dtype: str) -> None:
    import gguf

    if data.ndim == 1 or dtype == "f32":  # norms and biases stay f32, as llama.cpp's converter keeps them
        writer.add_tensor(name, data.astype(np.float32))
    elif dtype == "q8_0" and data.shape[-1] % 32 == 0:
        q = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data.astype(np.float32), q), raw_dtype=q)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def _metadata(writer, config, dtype: str) -> None:
    import gguf

    rope = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(getattr(config, "_name_or_path", "") or "adaptlab run")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])


def _vocabulary(writer, tokenizer, size: int, pre: str) -> None:
    """Every token by id with llama.cpp's token type; ids past the tokenizer's (padded embeddings) as unused."""
    import gguf

    if getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None).__class__.__name__ != "BPE":
        raise AdaptlabError("GGUF export writes byte-level BPE tokenizers (Llama 3, SmolLM, Qwen); this run's tokenizer is "
                            f"{type(tokenizer).__name__} with another model")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL if i not in added else
                         gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)


@torch.inference_mode()
def probe_logits(model: nn.Module, tokenizer) -> list[torch.Tensor]:
    """Next-token logits at every position of each :data:`PROBE` prompt."""
    return [model(input_ids=torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"]])).logits.float() for t in PROBE]


def check(expected: list[torch.Tensor], tokenizer, path: Path) -> Check:
    """The GGUF file read back by transformers: its logits against the run's (``expected``, from before merging)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    theirs = probe_logits(loaded, tokenizer)
    gap = max((a - b).abs().max().item() for a, b in zip(expected, theirs))
    agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(expected, theirs))
    read_back = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    same = all(read_back(t, add_special_tokens=False)["input_ids"] == tokenizer(t, add_special_tokens=False)["input_ids"] for t in PROBE)
    return Check(gap, agree / sum(a.shape[1] for a in expected), same)


def export_gguf(run_dir: str | Path, output: str | Path, dtype: str = "f16", pre: str | None = None) -> tuple[Path, Check]:
    """Write ``output`` (a ``.gguf`` file) from the run, check it loads back, and return it with the check."""
    out = Path(output)
    if dtype not in TYPES:
        raise AdaptlabError(f"--gguf-type must be one of {', '.join(TYPES)}; got {dtype}")
    if out.exists():
        raise AdaptlabError(f"{out} already exists; choose another --output")
    predictor = Predictor(run_dir, device="cpu")
    tokenizer = predictor.backbone.tokenizer
    expected = probe_logits(predictor.module, tokenizer) if predictor.generative else []
    model = causal_model(predictor)
    pre = pre or tokenizer.init_kwargs.get("gguf_pre") or "default"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.gguf")
    try:
        write_gguf(model, tokenizer, partial, dtype, pre)
        result = check(expected, tokenizer, partial)
        if dtype == "f32" and result.max_logit_gap > 1e-3:
            raise AdaptlabError(f"the GGUF file's logits differ from the run's by {result.max_logit_gap:.2e}; not written")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out, result
