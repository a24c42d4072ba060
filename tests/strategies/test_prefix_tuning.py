"""Prefix tuning starts from the keys and values of real words (Li & Liang 2021, §7.4)."""

from __future__ import annotations

import pytest
import torch

from adaptlab.models.backbones import load_backbone
from adaptlab.strategies.base import Task, build_classifier
from adaptlab.strategies.prefix_tuning import PrefixTuning, PrefixTuningConfig


def test_prefixes_start_as_real_key_value_activations(tiny_backbone):
    task = Task(["neg", "pos"], load_backbone(str(tiny_backbone)))
    torch.manual_seed(0)
    model = build_classifier(task).eval()
    strategy = PrefixTuning(PrefixTuningConfig(num_virtual_tokens=3, init_text="good film"))
    peft_model = strategy.prepare(model, task)
    prefix = peft_model.prompt_encoder["default"].embedding.weight.detach()
    ids = task.backbone.tokenizer("good film", add_special_tokens=False)["input_ids"]
    ids = (ids * 3)[:3]
    layer = model.bert.encoder.layer[1].attention.self
    with torch.no_grad():
        states = model.bert(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
        key, value = layer.key(states), layer.value(states)
    hidden = model.config.hidden_size
    torch.testing.assert_close(prefix[:, 2 * hidden : 3 * hidden], key)  # layer 1's key block
    torch.testing.assert_close(prefix[:, 3 * hidden : 4 * hidden], value)


def test_random_init_keeps_peft_default(tiny_backbone):
    task = Task(["neg", "pos"], load_backbone(str(tiny_backbone)))
    torch.manual_seed(0)
    strategy = PrefixTuning(PrefixTuningConfig(num_virtual_tokens=3, init="random"))
    prefix = strategy.prepare(build_classifier(task), task).prompt_encoder["default"].embedding.weight
    assert 0.8 < prefix.std().item() < 1.2  # peft's nn.Embedding: unit Gaussian


@pytest.mark.parametrize("family", ["tiny_backbone", "tiny_llama"])
def test_prefixes_reach_every_layer(family, request):
    """Gradient flows into every layer's key and value block: peft handed the prefixes to the attention
    (whatever the transformers release calls the cache argument: ``past_key_values`` or ``cache``)."""
    task = Task(["neg", "pos"], load_backbone(str(request.getfixturevalue(family))))
    torch.manual_seed(0)
    model = PrefixTuning(PrefixTuningConfig(num_virtual_tokens=3)).prepare(build_classifier(task), task)
    enc = task.backbone.tokenizer(["good film", "bad plot"], padding=True, return_tensors="pt")
    out = model(**enc, labels=torch.tensor([1, 0]))
    out.loss.backward()
    grad = model.prompt_encoder["default"].embedding.weight.grad
    blocks = grad.abs().sum(0).reshape(-1, grad.shape[1] // (2 * model.peft_config["default"].num_layers)).sum(-1)
    assert blocks.shape[0] == 2 * model.peft_config["default"].num_layers and bool((blocks > 0).all())
