"""Streamed chat answers as server-sent events, in OpenAI's ``chat.completion.chunk`` format.

The answer is generated on the batcher's worker thread (alone: a transformers streamer follows one sequence);
each piece of text crosses to the event loop through an asyncio queue and goes out as one event. A client that
goes away stops the generation at the next token. The last events carry the finish reason, then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from .batching import Batcher
from .chat import Deltas, Request, Sampling
from .engine import StreamJob, StreamKey

_jobs = itertools.count()
_END = object()


def _event(ident: str, created: int, model: str, delta: dict[str, str], finish: str | None = None) -> str:
    chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


class ChatStream:
    """One streamed answer: queued when made (a full queue raises ``Busy`` before any event is sent, so the
    client gets a 503), its events from :meth:`events`."""

    def __init__(self, batcher: Batcher, model: str, tokenizer: Any, request: Request, sampling: Sampling):
        loop = asyncio.get_running_loop()
        self.pieces: asyncio.Queue[Any] = asyncio.Queue()
        def emit(text: str) -> None:  # on the worker thread
            loop.call_soon_threadsafe(self.pieces.put_nowait, text)

        self.deltas = Deltas(tokenizer, request.stop, emit)
        self.batcher, self.model = batcher, model
        self.job = batcher.enqueue(StreamKey(model, sampling, next(_jobs)), StreamJob(request, self.deltas))

    async def events(self, timeout: float, ident: str, created: int) -> AsyncIterator[str]:
        waiting = asyncio.ensure_future(self.batcher.wait(self.job, timeout))
        waiting.add_done_callback(lambda _: self.pieces.put_nowait(_END))
        try:
            yield _event(ident, created, self.model, {"role": "assistant", "content": ""})
            while (piece := await self.pieces.get()) is not _END:
                yield _event(ident, created, self.model, {"content": piece})
            try:
                answer = waiting.result()
            except TimeoutError:
                yield _failure("no answer within the server's timeout (adaptlab serve --timeout)", "timeout")
                return
            except Exception as e:  # noqa: BLE001 -- the status line is sent: the error goes in the stream
                yield _failure(f"{type(e).__name__}: {e}", "server_error")
                return
            yield _event(ident, created, self.model, {}, answer.finish_reason)
            yield "data: [DONE]\n\n"
        finally:
            self.deltas.cancel.set()  # the client went away (or the answer is complete): stop generating
            waiting.cancel()


def _failure(message: str, kind: str) -> str:
    return f"data: {json.dumps({'error': {'message': message, 'type': kind}})}\n\n"
