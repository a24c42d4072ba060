"""Unpaired feedback: a prompt, one answer, and whether the answer is desirable (thumbs up or down).

The data KTO learns from when nobody wrote pairs (Ethayarajh et al. 2024 §4.3: logs of answers rated one at a
time). The columns are TRL's ``KTOTrainer`` format: ``prompt``, ``completion`` (or, with ``--task feedback``, the
``response`` column as ``sft`` names it; ``data.prompt_column`` / ``data.response_column``), and ``label`` (``data.label_column``)
holding ``true``/``false`` -- also ``1``/``0``, ``yes``/``no``, ``up``/``down``, ``desirable``/``undesirable``.
A prompt may occur with several answers or with one; nothing pairs them. Each row becomes one conversation
(:class:`~adaptlab.data.conversations.Conversations`), so the chat template and the masking by token position
are exactly those of ``sft``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import AdaptlabError
from .conversations import Conversations, cell_text

COMPLETION = "completion"
"""TRL's name of the answer column; used when the table has no ``data.response_column``."""
YES = {"true", "1", "1.0", "yes", "up", "desirable", "good", "+1"}
NO = {"false", "0", "0.0", "no", "down", "undesirable", "bad", "-1"}


@dataclass
class Feedback:
    """Conversations (a prompt and one answer each) and whether each answer is desirable."""

    conversations: Conversations
    desirable: list[bool]

    def __len__(self) -> int:
        return len(self.desirable)

    def subset(self, indices: list[int]) -> Feedback:
        return Feedback(self.conversations.subset(indices), [self.desirable[i] for i in indices])

    @property
    def prompts(self) -> list[str]:
        return self.conversations.prompts

    @property
    def turns(self) -> list[list[dict[str, str]]]:
        return self.conversations.turns


def answer_column(columns: list[str], data: Any) -> str | None:
    """The column holding the answers: ``data.response_column``, else TRL's ``completion``."""
    return next((c for c in (data.response_column, COMPLETION) if c in columns), None)


def is_feedback(columns: list[str], data: Any) -> bool:
    """Told from the columns only in TRL's KTO form (``completion`` beside ``prompt`` and ``label``): a ``response``
    table with a label column is ``sft`` data with a category unless ``--task feedback`` says otherwise."""
    return data.prompt_column in columns and data.label_column in columns and COMPLETION in columns


def read_feedback(table: Any, data: Any) -> tuple[Feedback, str]:
    """Every row of ``table`` as (conversation, desirable); errors name the row or the columns."""
    answer = answer_column(table.columns, data)
    if data.prompt_column not in table.columns or data.label_column not in table.columns or answer is None:
        raise AdaptlabError(f"{table.source} has no feedback columns: expected '{data.prompt_column}', '{data.response_column}' "
                            f"(or '{COMPLETION}') and '{data.label_column}' (true/false); columns present: {', '.join(table.columns)}")
    system = [{"role": "system", "content": data.system}] if data.system else []
    turns, desirable = [], []
    for i, row in enumerate(table.rows):
        prompt, text = cell_text(row.get(data.prompt_column)), cell_text(row.get(answer))
        for name, value in ((data.prompt_column, prompt), (answer, text)):
            if not value.strip():
                raise AdaptlabError(f"{table.source}: empty '{name}' at {table.where(i)}")
        desirable.append(_flag(row.get(data.label_column), data.label_column, table, i))
        turns.append(system + [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}])
    if all(desirable) or not any(desirable):
        kind = "desirable" if all(desirable) else "undesirable"
        raise AdaptlabError(f"{table.source}: every answer is {kind}; KTO needs some of each (for answers that are all good, "
                            f"use sft)")
    return Feedback(Conversations(turns), desirable), f"prompt/{answer}/{data.label_column}"


def _flag(value: Any, column: str, table: Any, i: int) -> bool:
    if isinstance(value, bool):
        return value
    text = cell_text(value).strip().casefold()
    if text in YES:
        return True
    if text in NO:
        return False
    raise AdaptlabError(f"{table.source}: '{column}' at {table.where(i)} is {value!r}; feedback labels are true or false")
