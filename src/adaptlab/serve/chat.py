"""Answering conversations with a generative run: what ``adaptlab serve``'s ``/v1/chat/completions`` runs.

The same rendering and decoding as ``adaptlab generate`` (the run's chat template or plain blocks, its system
message when the request brings none, transformers' ``generate`` with the KV cache and left padding, greedy
unless sampling is asked for), but over whole conversations and with each request's own settings: several
requests share one ``generate`` call when their sampling settings agree (the longest ``max_tokens`` of the
batch bounds it, and each answer is cut to its own). Stop strings are applied to the decoded text, since the
requests of one batch may each bring their own. Streaming answers one conversation at a time through a
transformers streamer (``BaseStreamer``: the prompt first, then each new token).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..eval.generation import generate_ids, left_pad
from ..settings import GenerationConfig
from ..tasks.base import Generative
from .predict import Predictor


@dataclass(frozen=True)
class Sampling:
    """The settings requests must share to be generated together (``max_tokens`` need not agree)."""

    temperature: float | None = None
    """None: the run's own generation settings; 0: greedy; otherwise sample at this temperature."""
    top_p: float | None = None
    seed: int | None = None


@dataclass
class Request:
    messages: list[dict[str, str]]
    max_tokens: int
    stop: list[str] = field(default_factory=list)


@dataclass
class Answer:
    text: str
    finish_reason: str
    """``stop`` (an end-of-turn token or a stop string) or ``length`` (``max_tokens`` reached)."""
    prompt_tokens: int
    completion_tokens: int


def settings(predictor: Predictor, sampling: Sampling, max_tokens: int) -> GenerationConfig:
    base = predictor.config.generation
    if sampling.temperature is None:
        return base.model_copy(update={"max_new_tokens": max_tokens})
    sample = sampling.temperature > 0
    return base.model_copy(update={"max_new_tokens": max_tokens, "do_sample": sample,
                                   "temperature": sampling.temperature if sample else base.temperature,
                                   "top_p": sampling.top_p if sampling.top_p is not None else base.top_p})


def _task(predictor: Predictor) -> Generative:
    task = predictor.task_type
    if not isinstance(task, Generative):  # read_run and the server's model kinds admit generative runs only here
        raise TypeError(f"{predictor.run_dir} does not generate")
    return task


def prompt_ids(predictor: Predictor, messages: list[dict[str, str]]) -> list[int]:
    """The tokens the run answers ``messages`` from: its system message first when the request has none."""
    system = predictor.config.data.system
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    return _task(predictor).renderer.generation_prompt(messages)


@torch.inference_mode()
def answer(predictor: Predictor, requests: list[Request], sampling: Sampling) -> list[Answer]:
    """One answer per request, generated together."""
    renderer = _task(predictor).renderer
    prompts = [prompt_ids(predictor, r.messages) for r in requests]
    longest = max(r.max_tokens for r in requests)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    ids, mask = left_pad(prompts, renderer.tokenizer.pad_token_id)
    new = generate_ids(predictor.module, ids.to(predictor.device), mask.to(predictor.device),
                       settings(predictor, sampling, longest), renderer.stop_ids, renderer.tokenizer.pad_token_id)
    out = []
    for request, prompt, tokens in zip(requests, prompts, new):
        stopped = len(tokens) < longest
        if len(tokens) >= request.max_tokens:
            tokens, stopped = tokens[: request.max_tokens], False
        text, cut = cut_at_stop(renderer.tokenizer.decode(tokens, skip_special_tokens=True).strip(), request.stop)
        out.append(Answer(text, "stop" if stopped or cut else "length", len(prompt), len(tokens)))
    return out


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first of ``stops`` (not included), and whether one was found."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class Deltas(BaseStreamer, StoppingCriteria):
    """Text as it is generated, to ``emit`` (called on the generating thread); stops generation at a stop
    string or when ``cancel`` is set (the client went away). Holds back what could be the start of a stop
    string and an incomplete UTF-8 character until the next token decides."""

    def __init__(self, tokenizer, stops: list[str], emit: Callable[[str], None]):
        self.tokenizer, self.stops, self.emit = tokenizer, [s for s in stops if s], emit
        self.tokens: list[int] = []
        self.sent, self.prompt_seen, self.stopped = 0, False, False
        self.cancel = threading.Event()

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        self.tokens += value.reshape(-1).tolist()
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).lstrip()
        text, self.stopped = cut_at_stop(text, self.stops)
        ready = len(text) if self.stopped else len(text) - self._held(text)
        if ready > self.sent:
            self.emit(text[self.sent : ready])
            self.sent = ready

    def _held(self, text: str) -> int:
        """Characters at the end that the next token may still change: an incomplete character, trailing
        space (the whole answer is stripped), the start of a stop string."""
        partial = 1 if text.endswith("\ufffd") else 0
        space = len(text) - len(text.rstrip())
        stop = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        return max(partial, space, stop)

    def end(self) -> None:
        if not self.stopped:
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).strip()
            if len(text) > self.sent:
                self.emit(text[self.sent :])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = self.stopped or self.cancel.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def stream(predictor: Predictor, request: Request, sampling: Sampling, deltas: Deltas) -> Answer:
    """Generate one answer, handing its text to ``deltas`` as it grows."""
    renderer = _task(predictor).renderer
    prompt = prompt_ids(predictor, request.messages)
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    ids, mask = left_pad([prompt], renderer.tokenizer.pad_token_id)
    tokens = generate_ids(predictor.module, ids.to(predictor.device), mask.to(predictor.device),
                          settings(predictor, sampling, request.max_tokens), renderer.stop_ids,
                          renderer.tokenizer.pad_token_id, streamer=deltas, stopping_criteria=StoppingCriteriaList([deltas]))[0]
    stopped = deltas.stopped or len(tokens) < request.max_tokens
    text, _ = cut_at_stop(renderer.tokenizer.decode(tokens, skip_special_tokens=True).strip(), request.stop)
    return Answer(text, "stop" if stopped else "length", len(prompt), len(tokens))
