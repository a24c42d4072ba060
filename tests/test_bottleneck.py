"""Bottleneck adapters and Compacter layers: identity at start, placement, exact folding, sizes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from adaptlab.errors import AdaptlabError
from adaptlab.models.bottleneck import Adapted, fold_adapters
from adaptlab.models.modeling import count_parameters
from adaptlab.strategies.adapter import Adapter, AdapterConfig
from adaptlab.strategies.compacter import Compacter, CompacterConfig


def classifier(folder):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()


def batch(folder):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(["the film was good", "a dull and boring plot"], padding=True, return_tensors="pt"))


def perturb(model, scale=0.05):
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and "classifier" not in n and "score" not in n:
                p.add_(torch.randn_like(p) * scale)


@pytest.mark.parametrize("strategy", [Adapter(AdapterConfig()), Adapter(AdapterConfig(placement="pfeiffer", activation="gelu")),
                                      Compacter(CompacterConfig()), Compacter(CompacterConfig(placement="houlsby"))])
@pytest.mark.parametrize("backbone", ["tiny_backbone", "tiny_llama"])
def test_untrained_adapters_leave_the_output_unchanged(strategy, backbone, request):
    folder = request.getfixturevalue(backbone)
    model, inputs = classifier(folder), batch(folder)
    with torch.inference_mode():
        before = model(**inputs).logits
    strategy.insert(model)
    assert any(isinstance(m, Adapted) for m in model.modules())
    with torch.inference_mode():
        assert torch.equal(model(**inputs).logits, before)
    perturb(model)  # and they are in the forward path
    with torch.inference_mode():
        assert not torch.allclose(model(**inputs).logits, before)


def test_placement_and_layers(tiny_backbone):
    count = lambda cfg: sum(isinstance(m, Adapted) for m in Adapter(cfg).insert(classifier(tiny_backbone)).modules())
    assert count(AdapterConfig(placement="houlsby")) == 4  # 2 layers x (attention, feed-forward)
    assert count(AdapterConfig(placement="pfeiffer")) == 2
    assert count(AdapterConfig(placement="houlsby", layers=[1])) == 2
    with pytest.raises(AdaptlabError, match="do not exist"):
        count(AdapterConfig(layers=[5]))


def test_trainable_counts_follow_the_papers(tiny_backbone):
    """Bottleneck: 2*h*b + b + h per adapter; Compacter: n*r*(h+b) + b + h per adapter + 2n^3 shared."""
    h, layers, labels = 32, 2, 2
    head = h * labels + labels
    bottleneck = Adapter(AdapterConfig(reduction_factor=4, placement="pfeiffer")).insert(classifier(tiny_backbone))
    b = h // 4
    assert count_parameters(bottleneck)[0] == layers * (2 * h * b + b + h) + head
    compact = Compacter(CompacterConfig(reduction_factor=4, n=4, rank=1)).insert(classifier(tiny_backbone))
    rank, n = 1, 4  # per PHM layer: s (in x r), t (r x out) summed over the n products, and a bias
    assert count_parameters(compact)[0] == layers * (2 * rank * (h + b) + b + h) + 2 * n**3 + head
    assert count_parameters(compact)[0] < count_parameters(bottleneck)[0]


@pytest.mark.parametrize("strategy", [Adapter(AdapterConfig(activation="identity")), Compacter(CompacterConfig(activation="identity"))])
def test_linear_adapters_fold_exactly(tiny_backbone, strategy):
    model, inputs = classifier(tiny_backbone), batch(tiny_backbone)
    strategy.insert(model)
    perturb(model, 0.3)
    with torch.inference_mode():
        before = model(**inputs).logits
    merged = fold_adapters(model)
    assert not any(isinstance(m, Adapted) for m in merged.modules()) and not hasattr(merged, "adapter_rules")
    with torch.inference_mode():
        torch.testing.assert_close(merged(**inputs).logits, before, rtol=0, atol=1e-5)


def test_non_linear_adapters_refuse_to_fold(tiny_backbone):
    model = Adapter(AdapterConfig(activation="relu")).insert(classifier(tiny_backbone))
    with pytest.raises(AdaptlabError, match="identity"):
        fold_adapters(model)
