"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2`` (gloo on CPU).

Trains a strategy and checks that every process ends with the same weights, and that they moved:
gradual_unfreeze (the default), whose trainable set grows each epoch (DDP must synchronise the groups
unfrozen after it wrapped the model); maml, whose loss runs the inner and outer passes on the unwrapped
module (the wrapped forward only hands the episode on), so the gradients reach DDP's hooks on the
parameters, not through its forward -- each process draws different episodes, so weights that were not
all-reduced would differ.
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
name = sys.argv[4] if len(sys.argv) > 4 else "gradual_unfreeze"
options = {"maml": {"first_order": True, "episodes": 4, "inner_layers": 1, "inner_steps": 2}}.get(name, {})
cfg = load_config({"strategy": {"name": name, **options}, "backbone": backbone, "data": {"train": data, "validation_fraction": 0},
                   "train": {"epochs": 3, "lr": 3e-3, "progress": False, "checkpoint_every": None, "keep_best": False}})
setup = make_setup(cfg)
strategy = get_strategy(name)(cfg.strategy)
task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
module = prepare_module(strategy, task)
start = torch.stack([p.detach().double().sum() for p in module.parameters()])
module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config)
checksum = torch.stack([p.detach().double().sum() for p in module.parameters()])
gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, checksum)
if dist.get_rank() == 0:
    same = all(torch.equal(g, gathered[0]) for g in gathered)
    with open(out, "w") as f:
        json.dump({"world": dist.get_world_size(), "same": same, "moved": not torch.equal(start, checksum), "steps": state.step,
                   "examples": state.examples}, f)
