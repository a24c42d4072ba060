"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo on CPU), with
``train.distributed: fsdp``.

Trains ``strategy`` with its parameters sharded (FSDP2), then checks on every process that the
gathered module is whole and the same everywhere, and on the first that the run's artefact (saved by
the strategy, loaded back) predicts exactly what the gathered module predicts, and that ``--resume`` is
refused (its checkpoints would be shards).
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from adaptlab.config import load_config
from adaptlab.data.batching import Collate
from adaptlab.errors import AdaptlabError
from adaptlab.eval.metrics import model_inputs
from adaptlab.strategies import Task, get_strategy
from adaptlab.strategies.base import hook
from adaptlab.tasks import get_task_type
from adaptlab.training.loop import fit
from adaptlab.training.runner import _save_artifact, make_setup, prepare_module, resolve_train

backbone, data, out, name = sys.argv[1:5]
cfg = load_config({"strategy": {"name": name}, "backbone": backbone, "data": {"train": data, "validation_fraction": 0},
                   "train": {"epochs": 2, "lr": 3e-3, "progress": False, "checkpoint_every": None, "distributed": "fsdp"}})
setup = make_setup(cfg)
strategy = get_strategy(name)(cfg.strategy)
task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
module = prepare_module(strategy, task)
before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
trained, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config, run_dir=Path(tempfile.mkdtemp()))
shards = sum(isinstance(p, DTensor) for p in module.parameters())  # fully_shard works in place on what was passed in
whole = not any(isinstance(p, DTensor) for p in trained.parameters())
moved = any(not torch.equal(before[n], p.detach()) for n, p in trained.named_parameters() if n in before)
checksum = torch.stack([p.detach().double().sum() for p in trained.parameters()])
gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, checksum)
report = {"world": dist.get_world_size(), "sharded": shards > 0,
          "whole": whole, "moved": moved, "same": all(torch.equal(g, gathered[0]) for g in gathered), "steps": state.step}
try:  # checkpoints under FSDP would be shards: --resume is refused in one line, on every process, before anything trains
    fit(strategy, prepare_module(strategy, task), setup.train_rows, setup.eval_rows, task.train_config,
        run_dir=Path(tempfile.mkdtemp()), resume=True)
    report["resume_refused"] = ""
except AdaptlabError as error:
    report["resume_refused"] = str(error)
if dist.get_rank() == 0:
    batch = Collate(setup.backbone.tokenizer.pad_token_id)(setup.eval_rows[:32])
    trained.eval()
    with torch.inference_mode():
        expected = trained(**model_inputs(batch)).logits
    with tempfile.TemporaryDirectory() as folder:
        _save_artifact(strategy, trained, Path(folder) / "model", task)  # what the runner writes
        load = hook(strategy, "load", None) or (lambda f, t: get_task_type("classification").load_model(f, t))
        loaded = load(Path(folder) / "model", task).eval()
        with torch.inference_mode():
            got = loaded(**model_inputs(batch)).logits
    report["reloaded_max_diff"] = float((got - expected).abs().max())
    with open(out, "w") as f:
        json.dump(report, f)
