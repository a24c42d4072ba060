"""``adaptlab serve``: finished runs behind an HTTP API in OpenAI's format (FastAPI on uvicorn).

``/v1/models`` and ``/v1/chat/completions`` (streaming included) follow OpenAI's API, so its clients and the
tools built on them talk to a fine-tuned run unchanged; ``/v1/classify`` (label and class probabilities) and
``/v1/score`` (a reward model's score of each response) are adaptlab's own, for what OpenAI has no shape for.
One process holds every run over one copy of its backbone (:mod:`.engine`); requests are batched within a
short window (:mod:`.batching`). Every error is a JSON body ``{"error": {"message", "type", "param"}}`` with a
4xx status naming what to change (5xx only for a full queue, a timeout or a bug, never with a traceback).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import AdaptlabError
from .batching import Batcher, Busy
from .chat import Request as ChatJob
from .chat import Sampling, prompt_ids
from .engine import ChatKey, ClassifyKey, Engine, RequestError, ScoreKey
from .schema import ChatRequest, ClassifyRequest, ScoreRequest
from .streaming import ChatStream

log = logging.getLogger("adaptlab.serve")


@dataclass
class Limits:
    """How the server batches and bounds its work (``adaptlab serve --help``)."""

    window_ms: float = 10.0
    """How long the first request of a batch waits for others (0 and ``max_batch`` 1: one at a time)."""
    max_batch: int = 16
    """Most requests answered together."""
    max_queue: int = 256
    """Most requests waiting; more are refused with 503 at once."""
    timeout_s: float = 300.0
    """A request not answered by then gets 504 (and is dropped if it has not started)."""


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


def create_app(engine: Engine, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    batcher: Batcher = Batcher(engine.run, limits.window_ms / 1000, limits.max_batch, limits.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="adaptlab serve", lifespan=lifespan)
    app.state.batcher = batcher
    _errors(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": len(engine.models), "queued": batcher.queued, "batches": batcher.batches}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"object": "model", "created": 0, "owned_by": "adaptlab", **m} for m in engine.describe()]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest) -> Any:
        predictor = engine.get(body.model, "chat")
        limit = body.limit or predictor.config.generation.max_new_tokens
        messages = [{"role": m.role, "content": str(m.content)} for m in body.messages]
        _check_length(predictor, messages, limit)
        job, sampling = ChatJob(messages, limit, body.stops), Sampling(body.temperature, body.top_p, body.seed)
        created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            streamed = ChatStream(batcher, body.model, predictor.backbone.tokenizer, job, sampling)
            return StreamingResponse(streamed.events(limits.timeout_s, ident, created), media_type="text/event-stream")
        answer = await batcher.submit(ChatKey(body.model, sampling), job, limits.timeout_s)
        return {"id": ident, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": answer.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                          "total_tokens": answer.prompt_tokens + answer.completion_tokens}}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        predictor = engine.get(body.model, "classify")
        if (body.pairs is not None) != bool(predictor.config.data.text_pair_column):
            needed = "needs input_pair (a second text per input)" if predictor.config.data.text_pair_column else "takes no input_pair"
            raise RequestError(f"model '{body.model}' {needed}", "input_pair")
        predictions = await batcher.submit(ClassifyKey(body.model), (body.texts, body.pairs), limits.timeout_s)
        return {"object": "list", "model": body.model, "labels": predictor.labels,
                "data": [{"index": i, **p.as_dict()} for i, p in enumerate(predictions)]}

    @app.post("/v1/score")
    async def score(body: ScoreRequest) -> dict[str, Any]:
        engine.get(body.model, "score")
        scores = await batcher.submit(ScoreKey(body.model), body.pairs, limits.timeout_s)
        return {"object": "list", "model": body.model, "data": [{"index": i, "score": s} for i, s in enumerate(scores)]}

    return app


def _check_length(predictor: Any, messages: list[dict[str, str]], limit: int) -> None:
    """A prompt and answer longer than the model's context is refused here, not failed inside a batch."""
    room = getattr(predictor.backbone.config, "max_position_embeddings", None)
    used = len(prompt_ids(predictor, messages))
    if room and used + limit > room:
        raise RequestError(f"the prompt takes {used} tokens and max_tokens asks for {limit} more: the model reads at most "
                           f"{room}; shorten the messages or lower max_tokens", "messages")


def _errors(app: FastAPI) -> None:
    """Every failure as OpenAI's error body; the field at fault in ``param``."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return error(400, "the request body is not valid JSON", None)
        param = ".".join(where) or None
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return error(400, f"{param}: {message}" if param else message, param)

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), None, "not_found" if exc.status_code == 404 else "invalid_request_error")

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, str(exc), exc.param, "model_not_found" if exc.status == 404 else "invalid_request_error")

    @app.exception_handler(AdaptlabError)
    async def refused(request: Request, exc: AdaptlabError) -> JSONResponse:
        return error(400, str(exc), None)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return error(503, f"the server is busy: {exc}", None, "overloaded")

    @app.exception_handler(asyncio.TimeoutError)
    async def late(request: Request, exc: asyncio.TimeoutError) -> JSONResponse:
        return error(504, "no answer within the server's timeout (adaptlab serve --timeout)", None, "timeout")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details", None, "server_error")


def listen(host: str, port: int) -> socket.socket:
    """A bound listening socket, or one error line (the port taken, the host unknown) before any model loads."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise AdaptlabError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None
    sock.listen(2048)
    return sock


@contextmanager
def running(app: FastAPI, sock: socket.socket) -> Iterator[str]:
    """uvicorn serving ``app`` on ``sock`` in a background thread, for tests and benchmarks: its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise AdaptlabError("the server stopped while starting")
        time.sleep(0.01)
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def serve(run_dirs: Sequence[str | Path], host: str, port: int, limits: Limits) -> None:
    """``adaptlab serve``: until interrupted."""
    import uvicorn

    sock = listen(host, port)
    engine = Engine(run_dirs)
    for m in engine.describe():
        log.info("serving %s (%s, %s): %s", m["id"], m["kind"], m["strategy"], m["path"])
    log.info("listening on http://%s:%d (OpenAI base URL: http://%s:%d/v1)", host, sock.getsockname()[1], host, sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(create_app(engine, limits), log_level="warning", lifespan="on")).run(sockets=[sock])
