"""Prototypical networks without training: prototypes are the class means of the training embeddings."""

from __future__ import annotations

import torch

from adaptlab.config import load_config
from adaptlab.training.runner import make_setup, run_one


def test_frozen_protonet_is_nearest_class_mean(tiny_backbone, toy_csv, tmp_path):
    cfg = load_config({"strategy": {"name": "protonet", "episodic": False}, "backbone": str(tiny_backbone),
                       "data": {"train": str(toy_csv), "shots": 5}, "train": {"progress": False, "precision": "fp32"}})
    setup = make_setup(cfg)
    result = run_one(cfg, setup, tmp_path / "run")
    module = result.module.eval()
    assert result.metrics["trainable_params"] == 0 and result.metrics["train_examples"] == 10
    from adaptlab.data.batching import Collate
    from adaptlab.eval.metrics import model_inputs

    device = module.prototypes.device  # the training device: a GPU where one is visible
    batch = {k: v.to(device) for k, v in Collate(0)(setup.train_rows).items()}
    with torch.no_grad():
        emb = module.embed(model_inputs(batch))
        means = torch.stack([emb[batch["labels"] == c].mean(0) for c in range(2)])
        torch.testing.assert_close(module.prototypes, means, rtol=1e-5, atol=1e-6)
        queries = {k: v.to(device) for k, v in model_inputs(Collate(0)(setup.eval_rows[:8])).items()}
        distances = torch.cdist(module.embed(queries), means) ** 2
        torch.testing.assert_close(module(**queries).logits, -distances, rtol=1e-4, atol=1e-4)
    assert not (tmp_path / "run" / "model" / "encoder").exists(), "a frozen encoder is not saved again"
    assert (tmp_path / "run" / "model" / "prototypes.safetensors").is_file()
