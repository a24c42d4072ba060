"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo on CPU).

Trains gradual_unfreeze (whose trainable set grows each epoch) and checks that
every process ends with the same weights: DDP must synchronise the groups that
are unfrozen after it wrapped the model.
"""

import json
import sys

import torch
import torch.distributed as dist

from adaptlab.config import load_config
from adaptlab.strategies import Task, get_strategy
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train

backbone, data, out = sys.argv[1:4]
cfg = load_config({"strategy": {"name": "gradual_unfreeze"}, "backbone": backbone, "data": {"train": data, "validation_fraction": 0},
                   "train": {"epochs": 3, "lr": 3e-3, "progress": False, "checkpoint_every": None, "keep_best": False}})
setup = make_setup(cfg)
strategy = get_strategy("gradual_unfreeze")(cfg.strategy)
task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
module, state = fit(strategy, prepare_module(strategy, task), setup.train_rows, setup.eval_rows, task.train_config)
checksum = torch.stack([p.detach().double().sum() for p in module.parameters()])
gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, checksum)
if dist.get_rank() == 0:
    same = all(torch.equal(g, gathered[0]) for g in gathered)
    with open(out, "w") as f:
        json.dump({"world": dist.get_world_size(), "same": same, "steps": state.step, "examples": state.examples}, f)
