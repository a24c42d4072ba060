"""Preference pairs: a prompt, a chosen and a rejected answer, read from the two forms people write.

* columns ``prompt`` / ``chosen`` / ``rejected`` holding text (names set by ``data.prompt_column``,
  ``data.chosen_column``, ``data.rejected_column``);
* TRL's conversational form: ``chosen`` and ``rejected`` hold message lists, with the prompt either in a
  ``prompt`` column of messages (explicit) or as the turns the two lists share before their last
  assistant turn (implicit).

Each pair becomes two conversations (:class:`~adaptlab.data.conversations.Conversations`) with the same
prompt turns, so the chat template and the masking by token position are exactly those of ``sft``.
Rows whose answers are the same text say nothing about preference: they are counted, reported and
dropped. Empty answers and missing columns stop the run with one line naming the row or the columns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import AdaptlabError
from .conversations import Conversations, cell_text, read_messages

log = logging.getLogger("adaptlab")


@dataclass
class Preferences:
    """Pairs of conversations that differ only in their last (assistant) turn."""

    chosen: Conversations
    rejected: Conversations

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, indices: list[int]) -> Preferences:
        return Preferences(self.chosen.subset(indices), self.rejected.subset(indices))

    @property
    def prompts(self) -> list[str]:
        return self.chosen.prompts

    @property
    def turns(self) -> list[list[dict[str, str]]]:
        """The prompt turns of each pair (what generation answers)."""
        return [c[:-1] for c in self.chosen.turns]


def is_preference(columns: list[str], data: Any) -> bool:
    return data.chosen_column in columns and data.rejected_column in columns


def read_preferences(table: Any, data: Any) -> tuple[Preferences, str]:
    """Every row of ``table`` as a pair, and the form the rows had; ties dropped (counted)."""
    if not is_preference(table.columns, data):
        raise AdaptlabError(f"{table.source} has no preference columns: expected '{data.chosen_column}' and "
                            f"'{data.rejected_column}' (and '{data.prompt_column}' for text rows); columns present: "
                            f"{', '.join(table.columns)}")
    system = [{"role": "system", "content": data.system}] if data.system else []
    chosen, rejected, ties, form = [], [], 0, "prompt/chosen/rejected"
    for i, row in enumerate(table.rows):
        c, r = row.get(data.chosen_column), row.get(data.rejected_column)
        if _listlike(c) or _listlike(r):
            form = "conversational"
            prompt, c_text, r_text = _conversational(row, data, table, i)
        else:
            if data.prompt_column not in table.columns:
                raise AdaptlabError(f"{table.source}: text '{data.chosen_column}'/'{data.rejected_column}' rows need a "
                                    f"'{data.prompt_column}' column (--prompt-column); columns present: {', '.join(table.columns)}")
            prompt = [{"role": "user", "content": cell_text(row.get(data.prompt_column))}]
            c_text, r_text = cell_text(c), cell_text(r)
            _require(prompt[0]["content"], data.prompt_column, table, i)
        _require(c_text, data.chosen_column, table, i)
        _require(r_text, data.rejected_column, table, i)
        if c_text.strip() == r_text.strip():
            ties += 1
            continue
        head = system + prompt if system and prompt[0]["role"] != "system" else prompt
        chosen.append(head + [{"role": "assistant", "content": c_text}])
        rejected.append(head + [{"role": "assistant", "content": r_text}])
    if ties:
        log.warning("preference: %d of %d rows of %s have the same chosen and rejected answer: dropped (they carry "
                    "no preference)", ties, len(table.rows), table.source)
    if not chosen:
        raise AdaptlabError(f"{table.source} has no pair whose chosen and rejected answers differ")
    return Preferences(Conversations(chosen), Conversations(rejected)), form


def _listlike(value: Any) -> bool:
    return isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[{"))


def _conversational(row: dict, data: Any, table: Any, i: int) -> tuple[list[dict[str, str]], str, str]:
    """TRL's conversational row: (prompt turns, chosen answer, rejected answer)."""
    c = read_messages(row.get(data.chosen_column), table, i)
    r = read_messages(row.get(data.rejected_column), table, i)
    prompt_cell = row.get(data.prompt_column)
    if prompt_cell not in (None, "") and (isinstance(prompt_cell, list) or str(prompt_cell).lstrip().startswith("[")):
        value = json.loads(prompt_cell) if isinstance(prompt_cell, str) else prompt_cell
        prompt = [{"role": str(t["role"]), "content": cell_text(t["content"])} for t in value]
        return prompt, c[-1]["content"], r[-1]["content"]
    if c[:-1] != r[:-1]:
        raise AdaptlabError(f"{table.source} at {table.where(i)}: '{data.chosen_column}' and '{data.rejected_column}' must "
                            "share their turns before the last answer (or give the prompt in its own column)")
    if not c[:-1]:
        raise AdaptlabError(f"{table.source} at {table.where(i)}: no prompt: the message lists hold only an answer")
    return c[:-1], c[-1]["content"], r[-1]["content"]


def _require(value: str, name: str, table: Any, i: int) -> None:
    if not value.strip():
        raise AdaptlabError(f"{table.source}: empty '{name}' at {table.where(i)}")
