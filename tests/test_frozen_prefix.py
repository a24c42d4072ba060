"""top_k's cached frozen blocks (adaptlab.models.frozen_prefix): the same outputs as the whole model,
with the frozen blocks run once per example instead of every step."""

from __future__ import annotations

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.data.batching import Collate
from adaptlab.eval.metrics import model_inputs
from adaptlab.models.frozen_prefix import KEY
from adaptlab.models.modeling import find_blocks
from adaptlab.strategies import Task, get_strategy
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train


def top_k(backbone, data, k=1, cache=True, **train):
    cfg = load_config({"strategy": {"name": "top_k", "k": k, "cache": cache}, "backbone": str(backbone),
                       "data": {"train": str(data)},
                       "train": {"progress": False, "checkpoint_every": None, "seed": 0, "epochs": 2, "lr": 1e-3, **train}})
    setup = make_setup(cfg)
    strategy = get_strategy("top_k")(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg), type=setup.task_type, run_config=cfg)
    return strategy, prepare_module(strategy, task), setup, task


def calls_per_block(module):
    counts = [0] * len(find_blocks(module))
    for i, block in enumerate(find_blocks(module)):
        block.register_forward_pre_hook(lambda m, a, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("backbone", ["tiny_backbone", "tiny_llama"])
def test_cached_prefix_gives_the_whole_models_outputs(request, backbone, toy_csv):
    strategy, module, setup, task = top_k(request.getfixturevalue(backbone), toy_csv)
    module.eval()
    rows = setup.eval_rows[:16]
    cached = strategy.precompute(module, rows, 8, torch.device("cpu"))
    assert all(KEY in r and r[KEY].shape[0] == len(r["input_ids"]) for r in cached)
    whole = Collate(setup.backbone.tokenizer.pad_token_id or 0)(rows)
    with_cache = strategy.collate(setup.backbone.tokenizer.pad_token_id or 0)(cached)
    counts = calls_per_block(module)
    with torch.inference_mode():
        expected = module(**model_inputs(whole)).logits
        assert counts == [1, 1]
        got = module(**model_inputs(with_cache)).logits
    assert counts == [1, 2]  # the frozen block ran only for the whole-model call
    mask = whole["attention_mask"].bool() if expected.dim() == 3 else slice(None)
    torch.testing.assert_close(got[mask] if expected.dim() == 3 else got, expected[mask] if expected.dim() == 3 else expected,
                               atol=1e-5, rtol=1e-4)
    assert len(find_blocks(module)) == 2  # the full block list is back after the call


def test_training_never_runs_the_frozen_blocks_and_learns(tiny_backbone, toy_csv):
    strategy, module, setup, task = top_k(tiny_backbone, toy_csv, epochs=6, lr=3e-3, batch_size=16)
    frozen_before = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    counts = calls_per_block(module)
    module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config)
    batches = -(-len(setup.eval_rows) // task.train_config.eval_batch_size)
    caching = -(-len(setup.train_rows) // task.train_config.eval_batch_size) + batches
    assert counts[0] == caching  # once per example (in batches) before training, never in a step
    assert counts[1] > counts[0]
    assert all(torch.equal(p, frozen_before[n]) for n, p in module.named_parameters() if n in frozen_before)
    assert state.history[-1]["accuracy"] > 0.75


def test_without_cache_is_the_same_training(tiny_backbone, toy_csv):
    """Caching only removes repeated work: with dropout 0 both paths train the same weights."""
    results = []
    for cache in (True, False):
        strategy, module, setup, task = top_k(tiny_backbone, toy_csv, cache=cache, dropout=0.0, epochs=2)
        module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config)
        results.append((state.history[-1]["loss"], [p.detach().clone() for p in module.parameters() if p.requires_grad]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_a_single_epoch_is_not_cached(tiny_backbone, toy_csv):
    strategy, module, setup, task = top_k(tiny_backbone, toy_csv, epochs=1)
    assert strategy.precompute(module, setup.eval_rows[:4], 4, torch.device("cpu")) == setup.eval_rows[:4]
