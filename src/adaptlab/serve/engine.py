"""The models ``adaptlab serve`` answers with: finished runs over one copy of their backbone, by name.

Runs are loaded with :func:`~adaptlab.serve.many.load_many` (one backbone's frozen weights held once, each run
keeps only what it trained), named by their folder, and asked what they answer (:attr:`Predictor.kind`). The
engine's :meth:`run` is what the batcher calls on its worker thread: one batch of one kind for one run.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import AdaptlabError
from .chat import Answer, Deltas, Request, Sampling, answer, stream
from .many import load_many
from .predict import Prediction, Predictor


@dataclass(frozen=True)
class ChatKey:
    model: str
    sampling: Sampling


@dataclass(frozen=True)
class StreamKey:
    model: str
    sampling: Sampling
    job: int
    """Unique per request: a streamed answer is generated alone."""


@dataclass(frozen=True)
class ClassifyKey:
    model: str


@dataclass(frozen=True)
class ScoreKey:
    model: str


@dataclass
class StreamJob:
    request: Request
    deltas: Deltas


Payload = Request | StreamJob | tuple[list[str], list[str] | None] | tuple[list[str], list[str]]
Result = Answer | list[Prediction] | list[float]


class RequestError(Exception):
    """A request the server refuses: its HTTP status and the field at fault."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


class Engine:
    """Finished run folders, by model name (the folder's name; its path when two folders share a name)."""

    def __init__(self, run_dirs: Sequence[str | Path], device: str | None = None):
        names = [Path(r).name for r in run_dirs]
        many = load_many(list(run_dirs), device)
        self.models: dict[str, Predictor] = {
            (Path(r).name if names.count(Path(r).name) == 1 else str(r)): many[str(r)] for r in run_dirs}

    def get(self, name: str, kind: str) -> Predictor:
        """The run called ``name``, answering ``kind`` requests; else a :class:`RequestError` that says what is served."""
        if name not in self.models:
            raise RequestError(f"model '{name}' is not served; served: {', '.join(self.models)}", "model", 404)
        predictor = self.models[name]
        if predictor.kind != kind:
            endpoint = {"chat": "/v1/chat/completions", "classify": "/v1/classify", "score": "/v1/score"}[predictor.kind]
            raise RequestError(f"model '{name}' is a {predictor.strategy.name} run on a {predictor.task_type.name} task: "
                               f"it answers {endpoint}", "model")
        return predictor

    def describe(self) -> list[dict[str, str]]:
        return [{"id": name, "kind": p.kind, "strategy": p.strategy.name, "task": p.task_type.name,
                 "backbone": p.config.backbone, "path": str(p.run_dir)} for name, p in self.models.items()]

    def run(self, key: Hashable, payloads: list) -> list:
        """One batch (the batcher's worker thread)."""
        if isinstance(key, ChatKey):
            return answer(self.models[key.model], payloads, key.sampling)
        if isinstance(key, StreamKey):
            (job,) = payloads
            return [stream(self.models[key.model], job.request, key.sampling, job.deltas)]
        if isinstance(key, ClassifyKey):
            return self._classify(self.models[key.model], payloads)
        if isinstance(key, ScoreKey):
            return self._score(self.models[key.model], payloads)
        raise AdaptlabError(f"unknown batch key {key!r}")

    @staticmethod
    def _classify(predictor: Predictor, payloads: list[tuple[list[str], list[str] | None]]) -> list[list[Prediction]]:
        """Every request's texts in one pass (requests with and without second texts apart)."""
        out: list[list[Prediction]] = [[] for _ in payloads]
        for paired in (False, True):
            chosen = [i for i, (_, pairs) in enumerate(payloads) if (pairs is not None) == paired]
            if not chosen:
                continue
            texts = [t for i in chosen for t in payloads[i][0]]
            pairs = [p for i in chosen for p in (payloads[i][1] or [])] if paired else None
            predictions = predictor.predict(texts, pairs)
            for i in chosen:
                n = len(payloads[i][0])
                out[i], predictions = predictions[:n], predictions[n:]
        return out

    @staticmethod
    def _score(predictor: Predictor, payloads: list[tuple[list[str], list[str]]]) -> list[list[float]]:
        prompts = [p for ps, _ in payloads for p in ps]
        responses = [r for _, rs in payloads for r in rs]
        scores = predictor.score(prompts, responses)
        out = []
        for ps, _ in payloads:
            out.append(scores[: len(ps)])
            scores = scores[len(ps):]
        return out
