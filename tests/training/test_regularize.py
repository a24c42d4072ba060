"""train.regularize: each regulariser does what its paper says, and the loop applies it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from adaptlab.settings import RegularizeConfig
from adaptlab.training.regularize import Regularizers, l2_sp_penalty, llrd_groups, mixout_weight, symmetric_kl


def test_l2_sp_is_zero_at_the_pretrained_weights_and_pulls_back_to_them():
    w = nn.Parameter(torch.randn(4, 3))
    anchor = {"w": w.detach().clone()}
    assert l2_sp_penalty({"w": w}, anchor, 0.5).item() == 0.0
    with torch.no_grad():
        w.add_(torch.randn(4, 3))
    l2_sp_penalty({"w": w}, anchor, 0.5).backward()
    assert torch.allclose(w.grad, 0.5 * (w.detach() - anchor["w"]))  # a step against it moves w towards w0
    stepped = w.detach() - 0.1 * w.grad
    assert (stepped - anchor["w"]).norm() < (w.detach() - anchor["w"]).norm()


def test_mixout_at_zero_is_the_identity_and_keeps_the_expectation():
    w, w0 = torch.randn(64, 64), torch.randn(64, 64)
    assert torch.equal(mixout_weight(w, w0, 0.0), w)
    torch.manual_seed(0)
    mean = torch.stack([mixout_weight(w, w0, 0.3) for _ in range(400)]).mean(0)
    assert (mean - w).abs().mean() < 0.1 and not torch.equal(mixout_weight(w, w0, 0.3), w)
    assert torch.equal(mixout_weight(w0, w0, 0.5), w0)  # untrained weights are left as they are


def test_symmetric_kl_is_zero_only_for_equal_predictions():
    a = torch.randn(5, 3)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert symmetric_kl(a, a.flip(-1)).item() > 0


class Tiny(nn.Module):
    """Named like a transformers encoder: embeddings, encoder.layer.<i>, a head."""

    def __init__(self, layers: int = 3):
        super().__init__()
        self.embeddings = nn.Embedding(10, 4)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(nn.Linear(4, 4) for _ in range(layers))
        self.classifier = nn.Linear(4, 2)


def test_llrd_gives_each_layer_its_rate():
    m = Tiny(3)
    groups = llrd_groups([{"params": list(m.parameters()), "lr": 1.0, "weight_decay": 0.0}], m, 0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert rate[id(m.classifier.weight)] == 1.0
    assert [rate[id(m.encoder.layer[i].weight)] for i in range(3)] == [0.125, 0.25, 0.5]  # top layer: lr * decay
    assert rate[id(m.embeddings.weight)] == 0.0625
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))


def test_ema_differs_from_the_raw_weights_and_is_swapped_in_for_evaluation():
    m = Tiny(1)
    reg = Regularizers(RegularizeConfig(ema=0.9), m)
    reg.epoch_start(m)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    reg.after_step()
    raw = {n: p.detach().clone() for n, p in m.named_parameters()}
    assert all(not torch.equal(reg.ema[n], raw[n]) for n in raw)
    with reg.averaged():
        assert all(torch.equal(p, reg.ema[n]) for n, p in m.named_parameters())
    assert all(torch.equal(p, raw[n]) for n, p in m.named_parameters())  # the trained weights come back


def _fit(tiny_backbone, toy_csv, **train):
    from adaptlab.training.loop import fit
    from tests.test_loop import run

    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=2, lr=1e-2, precision="fp32", **train)
    return fit(s, module, setup.train_rows, setup.eval_rows, task.train_config), setup


def test_the_loop_ends_with_and_scores_the_averaged_weights(tiny_backbone, toy_csv):
    from torch.utils.data import DataLoader

    from adaptlab.data.batching import Collate
    from adaptlab.eval.metrics import evaluate

    (plain, _), _ = _fit(tiny_backbone, toy_csv)
    (averaged, state), setup = _fit(tiny_backbone, toy_csv, regularize={"ema": 0.9})
    weights = dict(averaged.named_parameters())
    assert any(not torch.equal(p, weights[n]) for n, p in plain.named_parameters())
    loader = DataLoader(setup.eval_rows, batch_size=64, collate_fn=Collate(0))
    assert evaluate(averaged, loader)["loss"] == pytest.approx(state.history[state.best_epoch - 1]["loss"], rel=1e-5)


def test_regularisers_change_training(tiny_backbone, toy_csv):
    (plain, _), _ = _fit(tiny_backbone, toy_csv, dropout=0.1)
    for reg in ({"label_smoothing": 0.2}, {"r_drop": 1.0}, {"llrd": 0.5}, {"l2_sp": 0.1}, {"mixout": 0.2}):
        (module, _), _ = _fit(tiny_backbone, toy_csv, dropout=0.1, regularize=reg)
        weights = dict(module.named_parameters())
        assert any(not torch.allclose(p, weights[n]) for n, p in plain.named_parameters()), reg
        assert all(type(m).forward is m.forward.__func__ for m in module.modules() if isinstance(m, nn.Linear)
                   if hasattr(m.forward, "__func__")), reg  # mixout removed itself


@pytest.mark.parametrize("args, message", [
    (["--strategy", "lora", "--set", "train.regularize.l2_sp=0.1"], "train.regularize.l2_sp needs a strategy that updates pretrained weights"),
    (["--strategy", "full", "--set", "train.regularize.r_drop=1", "--set", "train.dropout=0"], "train.regularize.r_drop needs dropout"),
    (["--strategy", "protonet", "--set", "train.regularize.label_smoothing=0.1"], "strategy protonet has its own loss"),
    (["--strategy", "full", "--set", "train.regularize.mixout=1.5"], "invalid config 'train.regularize.mixout'"),
])
def test_regularisers_a_run_cannot_apply_are_one_line(cli, tiny_backbone, toy_csv, args, message):
    code, out, err = cli("train", "--backbone", str(tiny_backbone), "--data", str(toy_csv), "--output", "r", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(Path(".").glob("r*"))


def test_the_average_survives_a_resume(tmp_path):
    from adaptlab.training.checkpoint import BestWeights, Checkpointer, LoopState

    m = Tiny(1)
    opt = torch.optim.AdamW(m.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ckpt = Checkpointer(tmp_path / "checkpoint")
    ema = {"classifier.weight": torch.ones(2, 4)}
    ckpt.save(m, opt, sched, BestWeights(), LoopState(ever_trainable=["classifier.weight"]), extra=ema)
    assert torch.equal(ckpt.load_extra()["classifier.weight"], ema["classifier.weight"])
