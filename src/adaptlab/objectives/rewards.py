"""Reward functions for online objectives, with TRL's signature so a user's TRL reward functions work unchanged.

A reward function is ``f(prompts, completions, **columns) -> list[float]`` (TRL's ``GRPOTrainer`` convention):
``prompts`` the user turns, ``completions`` the sampled answers (plain text), and as keyword arguments the
rows' other columns -- here ``reference``, the data's answer. ``strategy.reward`` names one or several:

- a built-in: ``chrf`` (sentence chrF against the reference, 0-1: sacrebleu), ``exact_match``;
- a function in a file, ``path/to/rewards.py:function``, or in an importable module, ``package.module:function``
  (the user's own code, run as the user asked -- as TRL does);
- a reward-model run (``adaptlab train -s reward_model``): its folder, or ``@stage`` in a recipe with stages --
  each answer's reward is the run's score of it as the answer to its prompt (a Bradley-Terry logit; RLHF's
  reward model, Ouyang et al. 2022 §3.5). Opening a run folder is serving work: the runner hands the opener in
  (``Task.open_run``), so this layer imports nothing above it. The model is opened once, before any folder
  is written (:func:`open_models`), and scores under ``inference_mode``;
- several, weighted: ``[chrf, {function: my.py:brevity, weight: 0.5}]``; the reward is their weighted sum and
  each one's mean is logged on its own.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import AdaptlabError
from ..models.backbones import resolve_ref

RewardFn = Callable[..., list[float]]


class Scorer(Protocol):
    """A reward-model run, opened (``serve.predict.Predictor``)."""

    def score(self, prompts: list[str], responses: list[str], batch_size: int = 16, progress: bool = False) -> list[float]: ...


OpenRun = Callable[[str], Scorer]
"""A run folder -> the run, opened (``serve.predict.load``)."""


class ModelReward:
    """A reward-model run as a reward function: its score of each completion as the answer to its prompt."""

    def __init__(self, ref: str):
        self.ref = ref
        self.scorer: Scorer | None = None

    def open(self, open_run: OpenRun | None, root: Path | None) -> None:
        """Open the run once; one error line when it is not a finished reward-model run."""
        if self.scorer is not None or open_run is None:  # no opener: planning (plan-memory), nothing is scored
            return
        scorer = open_run(resolve_ref(self.ref, root))
        scorer.score([], [])  # raises for a run that is not a reward model, before anything trains
        self.scorer = scorer

    def __call__(self, prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        if self.scorer is None:
            raise RuntimeError(f"reward model {self.ref} was not opened (open_models with the runner's Task.open_run)")
        with torch.inference_mode():
            return self.scorer.score(prompts, completions)


def chrf(prompts: list[str], completions: list[str], reference: list[str], **_: Any) -> list[float]:
    """Sentence chrF (Popovic 2015; sacrebleu's defaults) of each completion against its reference, 0-1."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return [metric.sentence_score(c, [r]).score / 100 for c, r in zip(completions, reference)]


def exact_match(prompts: list[str], completions: list[str], reference: list[str], **_: Any) -> list[float]:
    """1.0 where the completion equals the reference after trimming whitespace and case, else 0.0."""
    return [float(c.strip().casefold() == r.strip().casefold()) for c, r in zip(completions, reference)]


BUILT_IN: dict[str, RewardFn] = {"chrf": chrf, "exact_match": exact_match}


@dataclass(frozen=True)
class Reward:
    name: str
    fn: RewardFn
    weight: float = 1.0


def resolve(spec: str | dict[str, Any] | list[str | dict[str, Any]]) -> list[Reward]:
    """``strategy.reward`` -> the functions and weights; one error line for a name that does not resolve."""
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise AdaptlabError("strategy.reward is empty: name a reward function (chrf, exact_match, file.py:function)")
    out = []
    for item in items:
        if isinstance(item, dict):
            if "function" not in item:
                raise AdaptlabError(f"strategy.reward entry {item!r} has no 'function'")
            out.append(Reward(str(item["function"]), load(str(item["function"])), float(item.get("weight", 1.0))))
        else:
            out.append(Reward(str(item), load(str(item))))
    return out


def load(name: str) -> RewardFn:
    """A built-in reward's name, ``file.py:function``, ``module:function`` or a reward-model run -> the callable."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name.startswith("@") or (Path(name).expanduser() / "metrics.json").is_file():
        return ModelReward(name)
    where, _, attr = name.rpartition(":")
    if not where or not attr:
        raise AdaptlabError(f"unknown reward {name!r}: use one of {', '.join(BUILT_IN)}, file.py:function, module:function "
                            "or a reward-model run folder")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise AdaptlabError(f"reward file {where} does not exist")
        spec = importlib.util.spec_from_file_location(f"adaptlab_reward_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise AdaptlabError(f"reward file {where} is not a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise AdaptlabError(f"reward {name!r}: cannot import {where} ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AdaptlabError(f"reward {name!r}: {where} has no function {attr}")
    return fn


def open_models(rewards: list[Reward], open_run: OpenRun | None, root: Path | None) -> None:
    """Open the reward-model runs among ``rewards`` (``@stage`` resolved under ``root``)."""
    for r in rewards:
        if isinstance(r.fn, ModelReward):
            r.fn.open(open_run, root)


def score(rewards: list[Reward], prompts: list[str], completions: list[str], **columns: list[Any]) -> tuple[list[float], dict[str, float]]:
    """Each completion's weighted reward, and each function's mean (for the log)."""
    total = [0.0] * len(completions)
    means: dict[str, float] = {}
    for r in rewards:
        values = r.fn(prompts=prompts, completions=completions, **columns)
        if len(values) != len(completions):
            raise AdaptlabError(f"reward {r.name} returned {len(values)} values for {len(completions)} completions")
        values = [0.0 if v is None else float(v) for v in values]  # TRL: None = does not apply to this row
        total = [t + r.weight * v for t, v in zip(total, values)]
        means[r.name] = sum(values) / max(len(values), 1)
    return total, means
