"""Conversations for supervised fine-tuning: rows in three forms, rendered and masked by token position.

Rows come as prompt/response columns, as OpenAI-style ``messages`` lists, or as
alpaca records (``instruction``/``input``/``output``); each becomes a list of
``{role, content}`` turns. A turn is rendered with the tokenizer's chat template
(or :data:`PLAIN`), and the labels are set by *token positions*: the template is
rendered up to each assistant turn with the generation prompt and up to the end
of that turn, both tokenised, and the tokens in between are the ones trained --
never found by searching for a string. The end-of-turn token is trained (the
model must learn to stop); the system and user turns, the template's own
markup and padding never are.

Written here rather than taken from TRL: TRL's ``assistant_only_loss`` needs a
template with ``{% generation %}`` markers, which the bundled SmolLM2 template
(like most) lacks, and its completion-only masking for prompt/response rows
covers single turns only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import AdaptlabError

IGNORE = -100
"""Label of a token that is not trained (PyTorch's ``cross_entropy`` ``ignore_index``)."""

PLAIN = {"system": "### System:\n{content}\n\n", "user": "### Instruction:\n{content}\n\n### Response:\n", "assistant": "{content}"}
"""The plain template (``data.template: plain``) for tokenizers without a chat template: every assistant
turn is followed by the EOS token and a blank line."""


@dataclass
class Conversations:
    """SFT examples: each a list of ``{role, content}`` turns ending with an assistant turn."""

    turns: list[list[dict[str, str]]]

    def __len__(self) -> int:
        return len(self.turns)

    def subset(self, indices: list[int]) -> Conversations:
        return Conversations([self.turns[i] for i in indices])

    @property
    def prompts(self) -> list[str]:
        """The last user turn of each example (what the report shows as the prompt)."""
        return [next((t["content"] for t in reversed(c) if t["role"] == "user"), "") for c in self.turns]

    @property
    def references(self) -> list[str]:
        return [c[-1]["content"] for c in self.turns]


def row_format(columns: list[str], data: Any) -> str | None:
    """Which form of SFT rows a table with these columns holds, or None."""
    if "messages" in columns:
        return "messages"
    if data.prompt_column in columns and data.response_column in columns:
        return "prompt/response"
    if "instruction" in columns and "output" in columns:
        return "alpaca"
    answers = {getattr(data, "chosen_column", "chosen"), getattr(data, "rejected_column", "rejected")}
    if data.prompt_column in columns and not answers & set(columns):
        return "prompt"  # prompts alone: what an objective that samples its own answers (grpo) trains on
    return None


def read_conversations(table: Any, data: Any) -> tuple[Conversations, str]:
    """Every row of ``table`` as a conversation, and the form the rows had; errors name the row."""
    form = row_format(table.columns, data)
    if form is None:
        raise AdaptlabError(f"{table.source} has no sft columns: expected '{data.prompt_column}' and '{data.response_column}' "
                            f"(--prompt-column / --response-column), 'messages', or 'instruction' and 'output'; "
                            f"columns present: {', '.join(table.columns)}")
    system = [{"role": "system", "content": data.system}] if data.system else []
    out = []
    for i, row in enumerate(table.rows):
        if form == "messages":
            turns = read_messages(row.get("messages"), table, i)
            out.append(system + turns if system and turns[0]["role"] != "system" else turns)
            continue
        if form == "alpaca":
            extra = cell_text(row.get("input"))
            prompt, response = cell_text(row.get("instruction")) + (f"\n\n{extra}" if extra else ""), cell_text(row.get("output"))
            names = ("instruction", "output")
        elif form == "prompt":
            prompt, response = cell_text(row.get(data.prompt_column)), ""
            names = (data.prompt_column,)
        else:
            prompt, response = cell_text(row.get(data.prompt_column)), cell_text(row.get(data.response_column))
            names = (data.prompt_column, data.response_column)
        for name, value in zip(names, (prompt, response)):
            if not value.strip():
                raise AdaptlabError(f"{table.source}: empty '{name}' at {table.where(i)}")
        out.append(system + [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
    return Conversations(out), form


def cell_text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def read_messages(value: Any, table: Any, i: int) -> list[dict[str, str]]:
    """A ``messages`` cell: a list (or its JSON text) of ``{role, content}`` with an assistant turn last."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    where = f"{table.source} at {table.where(i)}"
    if not isinstance(value, list) or not value or not all(isinstance(t, dict) and {"role", "content"} <= set(t) for t in value):
        raise AdaptlabError(f"{where}: 'messages' must be a list of {{\"role\": ..., \"content\": ...}} objects")
    turns = [{"role": str(t["role"]), "content": cell_text(t["content"])} for t in value]
    unknown = sorted({t["role"] for t in turns} - {"system", "user", "assistant"})
    if unknown:
        raise AdaptlabError(f"{where}: unknown role {unknown[0]!r} in 'messages' (use system, user, assistant)")
    while turns and turns[-1]["role"] != "assistant":  # trailing user turns have no answer to learn
        turns.pop()
    if not turns:
        raise AdaptlabError(f"{where}: 'messages' has no assistant turn to learn")
    empty = [t for t in turns if t["role"] == "assistant" and not t["content"].strip()]
    if empty:
        raise AdaptlabError(f"{where}: an assistant turn in 'messages' is empty")
    return turns


# -- rendering ---------------------------------------------------------------------------------


@dataclass
class Rendered:
    """One conversation as tokens: what the model reads, what it learns, where generation starts."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    """Tokens before the last assistant turn's content (its generation prompt included)."""


class Renderer:
    """Turns conversations into token ids and labels with a chat template or :data:`PLAIN`."""

    def __init__(self, tokenizer: Any, template: str, backbone_name: str = "the backbone"):
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if template == "auto":
            if not has_chat:
                raise AdaptlabError(f"the tokenizer of {backbone_name} has no chat template; use --template plain "
                                    f"(### Instruction / ### Response blocks)")
            template = "chat"
        if template == "chat" and not has_chat:
            raise AdaptlabError(f"data.template=chat, but the tokenizer of {backbone_name} has no chat template; use --template plain")
        if tokenizer.eos_token_id is None:
            raise AdaptlabError(f"the tokenizer of {backbone_name} has no EOS token: generation could never stop")
        self.tokenizer, self.template = tokenizer, template
        self.end_of_turn = self._end_of_turn() if template == "chat" else tokenizer.eos_token_id

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _chat(self, turns: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)
        return self._ids(text)

    def _end_of_turn(self) -> int:
        """The token that closes an assistant turn in the chat template (ChatML's ``<|im_end|>``)."""
        probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes"}]
        closing = self._chat(probe, False)[len(self._chat(probe[:1], True)) + len(self._ids("Yes")):]
        special = set(self.tokenizer.all_special_ids)
        for token in closing:
            if token == self.tokenizer.eos_token_id or token in special:
                return token
        return self.tokenizer.eos_token_id

    @property
    def stop_ids(self) -> list[int]:
        """Tokens that end a generated answer."""
        return sorted({self.end_of_turn, self.tokenizer.eos_token_id})

    def render(self, turns: list[dict[str, str]], trained: int | None = None) -> Rendered:
        """Tokens and labels of one conversation: every assistant turn trained (or only the last ``trained``),
        except turns marked ``"train": False`` (in-context examples in front of the real prompt)."""
        spans, ids = (self._chat_spans(turns) if self.template == "chat" else self._plain_spans(turns))
        labels = [IGNORE] * len(ids)
        answers = [t for t in turns if t["role"] == "assistant"]
        keep = [span for span, turn in zip(spans, answers) if turn.get("train", True)]  # in-context examples: "train": False
        keep = keep if trained is None else keep[-trained:]
        for start, end in keep:
            labels[start:end] = ids[start:end]
        return Rendered(ids, labels, spans[-1][0])

    def generation_prompt(self, turns: list[dict[str, str]]) -> list[int]:
        """The tokens a model answers ``turns`` (ending with a user turn) from."""
        if self.template == "chat":
            return self._chat(turns, True)
        return [t for turn in turns for t in (self._ids(PLAIN[turn["role"]].format(content=turn["content"])))]

    def _chat_spans(self, turns: list[dict[str, str]]) -> tuple[list[tuple[int, int]], list[int]]:
        ids = self._chat(turns, False)
        spans = []
        for i, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            prompt = self._chat(turns[:i], True)
            start = len(prompt)
            upto = self._chat(turns[: i + 1], False)
            if ids[: len(upto)] != upto or upto[:start] != prompt:
                raise AdaptlabError("the chat template renders earlier turns differently once later ones follow; "
                                    "its assistant tokens cannot be found by position: use --template plain")
            end = _last(upto, self.end_of_turn, start)
            spans.append((start, end + 1 if end is not None else len(upto)))
        return spans, ids

    def _plain_spans(self, turns: list[dict[str, str]]) -> tuple[list[tuple[int, int]], list[int]]:
        ids: list[int] = []
        spans = []
        for turn in turns:
            piece = self._ids(PLAIN[turn["role"]].format(content=turn["content"]))
            if turn["role"] == "assistant":
                spans.append((len(ids), len(ids) + len(piece) + 1))
                ids += piece + [self.tokenizer.eos_token_id] + self._ids("\n\n")
            else:
                ids += piece
        return spans, ids


def _last(ids: list[int], token: int, start: int) -> int | None:
    """Position of the last ``token`` at or after ``start``."""
    for k in range(len(ids) - 1, start - 1, -1):
        if ids[k] == token:
            return k
    return None
