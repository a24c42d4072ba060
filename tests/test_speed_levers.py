"""What makes the loop fast on a GPU, checked without one (issue 14): no host sync per step, sequence
lengths rounded for tensor cores on CUDA only, the fused optimiser and pinned batches on CUDA only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import adaptlab
from adaptlab.data.batching import TOKENS, Batches, Collate, pad_multiple
from adaptlab.tasks.sft import SFTCollate
from adaptlab.training.loop import fit, make_optimizer

from .test_loop import run


class Syncs:
    """Counts adaptlab's own calls that read a tensor's value on the host. (Libraries have theirs: on a
    CPU, AdamW reads its step counter, which on CUDA lives on the host anyway; transformers checks a
    padding mask; the Trainer pays for both as well.)"""

    def __init__(self, monkeypatch):
        import sys

        self.calls = 0
        package = str(Path(adaptlab.__file__).parent)
        collation = str(Path(adaptlab.__file__).parent / "data")  # builds batches from host rows, before the copy
        for name in ("item", "tolist", "cpu", "__float__", "__int__", "__bool__"):
            original = getattr(torch.Tensor, name)

            def counted(t, *a, _original=original, **k):
                caller = sys._getframe(1).f_code.co_filename
                if caller.startswith(package) and not caller.startswith(collation):
                    self.calls += 1
                return _original(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_training_reads_the_loss_once_per_log_interval(tiny_backbone, toy_csv, monkeypatch):
    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=1, batch_size=8, log_every=10, lr=1e-3, max_grad_norm=1.0)
    cfg = task.train_config
    steps = math.ceil(len(setup.train_rows) / 8)
    import adaptlab.training.loop as loop

    counts = []
    original = loop.train_epoch

    def counted_epoch(*args, **kwargs):
        syncs = Syncs(monkeypatch)
        original(*args, **kwargs)
        counts.append(syncs.calls)
        monkeypatch.undo()

    monkeypatch.setattr(loop, "train_epoch", counted_epoch)
    _, state = fit(s, module, setup.train_rows, [], cfg)
    assert state.step == steps > 30
    # one read per 10 steps plus the epoch's tail; a per-step loss.item() would make it >= steps
    assert counts == [math.ceil(steps / 10)], (counts, steps)
    assert len(state.history) == 1 and math.isfinite(state.history[0]["train_loss"])


def test_a_nan_is_still_named_by_its_step(tiny_backbone, toy_csv, monkeypatch):
    from adaptlab.errors import AdaptlabError

    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=1, batch_size=8, log_every=10, lr=1e-3)
    calls = {"n": 0}
    loss = s.loss if hasattr(s, "loss") and s.loss else None
    from adaptlab.tasks import get_task_type

    task_loss = loss or get_task_type("classification").loss

    def poisoned(outputs, batch):
        calls["n"] += 1
        value = task_loss(outputs, batch)
        return value * float("nan") if calls["n"] == 4 else value

    monkeypatch.setattr(type(s), "loss", staticmethod(poisoned), raising=False)
    with pytest.raises(AdaptlabError, match=r"training loss became nan at step 4 \(epoch 1\)"):
        fit(s, module, setup.train_rows, [], task.train_config)


def test_lengths_round_up_to_eight_on_cuda_only():
    assert pad_multiple(torch.device("cuda")) == 8 and pad_multiple(torch.device("cpu")) == 1
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "label": 0},
            {"input_ids": [5, 6], "attention_mask": [1, 1], "label": 1}]
    rows = [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"], "labels": r["label"]} for r in rows]
    batch = Batches(Collate(9), 9, multiple=8)(rows)
    assert batch["input_ids"].shape == (2, 8) and batch[TOKENS] == 5  # the count is of real tokens, before rounding
    assert batch["input_ids"][1].tolist() == [5, 6] + [9] * 6 and batch["attention_mask"].sum() == 5
    assert batch["labels"].tolist() == [0, 1]  # per-example labels are not sequences
    same = Batches(Collate(9), 9, multiple=1)(rows)
    assert same["input_ids"].shape == (2, 3)


def test_rounded_token_labels_and_packed_positions_are_ignored_padding():
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}]
    batch = Batches(SFTCollate(0), 0, multiple=8)(rows)
    assert batch["labels"].tolist() == [[-100, 2, 3] + [-100] * 5] and batch["attention_mask"].tolist() == [[1] * 3 + [0] * 5]
    packed = [{"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5], "position_ids": [0, 1, 2, 0, 1]}]
    batch = Batches(SFTCollate(0), 0, multiple=8)(packed)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]  # the padding is a sequence of its own
    assert batch["labels"][0, 5:].tolist() == [-100] * 3 and batch[TOKENS] == 5


def test_unknown_per_position_fields_leave_the_batch_as_it_is():
    def collate(rows):
        return {"input_ids": torch.ones(1, 3, dtype=torch.long), "teacher_hidden": torch.zeros(1, 2, 3, 4)}

    batch = Batches(collate, 0, multiple=8)([{}])
    assert batch["input_ids"].shape == (1, 3)


def test_fused_adamw_on_cuda_only():
    p = torch.nn.Parameter(torch.zeros(2))
    assert not make_optimizer([{"params": [p]}], 1e-3, torch.device("cpu")).defaults.get("fused")
    if torch.cuda.is_available():
        q = torch.nn.Parameter(torch.zeros(2, device="cuda"))
        assert make_optimizer([{"params": [q]}], 1e-3, torch.device("cuda")).defaults["fused"]


def test_the_last_checkpoint_keeps_weights_without_optimiser_state(tiny_backbone, toy_csv, tmp_path):
    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=2, batch_size=32, lr=1e-3)
    seen = []
    import adaptlab.training.checkpoint as checkpoint

    original = checkpoint.Checkpointer.save

    def spy(self, module, optimizer, *rest, **kw):
        seen.append(optimizer is not None)
        return original(self, module, optimizer, *rest, **kw)

    checkpoint.Checkpointer.save = spy
    try:
        fit(s, module, setup.train_rows, setup.eval_rows, task.train_config, run_dir=tmp_path)
    finally:
        checkpoint.Checkpointer.save = original
    assert seen == [True, False]  # epoch 1 can be resumed from; after epoch 2 nothing trains again
    assert (tmp_path / "checkpoint" / "params.safetensors").is_file() and not (tmp_path / "checkpoint" / "optim.pt").exists()
