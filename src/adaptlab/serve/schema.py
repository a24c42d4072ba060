"""The request bodies ``adaptlab serve`` accepts, as pydantic models: FastAPI validates them and names the
field that is wrong. Chat follows OpenAI's Chat Completions request (the fields a fine-tuned model can honour;
``n`` > 1, tools, logprobs and response formats are refused by name rather than ignored); ``/v1/classify`` and
``/v1/score`` are adaptlab's own, shaped like OpenAI's embeddings request (``model`` and ``input``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    role: Role
    content: str | list[dict[str, str]]
    """Text, or OpenAI's list of content parts (text parts only)."""

    @field_validator("content")
    @classmethod
    def _text(cls, value: str | list[dict[str, str]]) -> str:
        if isinstance(value, str):
            return value
        if any(part.get("type") != "text" for part in value):
            raise ValueError("only text content parts are supported")
        return "".join(part.get("text", "") for part in value)


UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs", "response_format",
               "logit_bias", "audio", "modalities", "prediction")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0, le=2)
    """Omitted: the run's own generation settings (greedy unless it was trained to sample); 0: greedy."""
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    """One answer per request (ask again for another sample)."""

    @model_validator(mode="after")
    def _supported(self) -> ChatRequest:
        asked = [k for k in UNSUPPORTED if (self.model_extra or {}).get(k) not in (None, False, [], {})]
        if asked:
            raise ValueError(f"not supported by adaptlab serve: {', '.join(asked)}")
        if self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's: the model answers it")
        return self

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ClassifyRequest(BaseModel):
    model: str
    input: str | list[str]
    """A text or a list of texts (pair tasks: give ``input_pair`` as well, one second text per text)."""
    input_pair: str | list[str] | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input

    @property
    def pairs(self) -> list[str] | None:
        if self.input_pair is None:
            return None
        return [self.input_pair] if isinstance(self.input_pair, str) else self.input_pair

    @model_validator(mode="after")
    def _shapes(self) -> ClassifyRequest:
        if not self.texts:
            raise ValueError("input: give at least one text")
        if self.pairs is not None and len(self.pairs) != len(self.texts):
            raise ValueError(f"input_pair: {len(self.pairs)} texts for {len(self.texts)} inputs")
        return self


class ScoreRequest(BaseModel):
    model: str
    prompt: str | list[str]
    response: str | list[str]
    """One response per prompt (or one prompt for several responses)."""

    @model_validator(mode="after")
    def _shapes(self) -> ScoreRequest:
        prompts, responses = self.pairs
        if not responses:
            raise ValueError("response: give at least one response")
        if len(prompts) != len(responses):
            raise ValueError(f"prompt: {len(prompts)} prompts for {len(responses)} responses")
        return self

    @property
    def pairs(self) -> tuple[list[str], list[str]]:
        responses = [self.response] if isinstance(self.response, str) else self.response
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        return (prompts * len(responses) if len(prompts) == 1 else prompts), responses
