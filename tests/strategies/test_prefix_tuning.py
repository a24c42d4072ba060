"""Prefix tuning starts from the keys and values of real words (Li & Liang 2021, §7.4)."""

from __future__ import annotations

import torch

from adaptlab.backbones import load_backbone
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
