"""The model card's loading snippet matches what the run folder holds, and the snippet works."""

from __future__ import annotations

import re

import pytest
import torch


@pytest.mark.parametrize("strategy", ["full", "lora", "linear_probe", "adapter"])
def test_card_snippet_loads_what_the_folder_holds(strategy, tmp_path, tiny_backbone, toy_csv):
    import adaptlab

    run = adaptlab.train(strategy=strategy, backbone=str(tiny_backbone), data=str(toy_csv), output=str(tmp_path / "r"),
                         train__epochs=1, train__progress=False, data__max_train=64, data__max_eval=32)
    card = (run.run_dir / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(from transformers.*?)```", card, re.S)
    if strategy in ("linear_probe", "adapter"):  # only the trained tensors: no plain-transformers snippet
        assert snippet is None and "holds only what trained" in card
        return
    assert snippet is not None, card
    assert ("PeftModel" in snippet.group(1)) == (strategy == "lora")
    namespace: dict = {}
    code = snippet.group(1).replace('"model"', repr(str(run.run_dir / "model")))
    exec(code, namespace)  # the card's own code, run as a user would run it
    model = namespace["model"].eval()
    tokenizer = adaptlab.load(run.run_dir).backbone.tokenizer
    with torch.no_grad():
        logits = model(**tokenizer(["good film"], return_tensors="pt")).logits
    expected = adaptlab.load(run.run_dir).predict_proba(["good film"])
    torch.testing.assert_close(logits.softmax(-1), expected, atol=1e-5, rtol=1e-4)
