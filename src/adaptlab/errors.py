"""User-facing errors.

Every problem caused by the user's input (a file, a flag, a recipe) is raised as
:class:`AdaptlabError`. The CLI prints its message as one line on stderr and exits
with code 2; the Python API lets it propagate. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AdaptlabError(Exception):
    """A problem with the user's input, explained in one line."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> AdaptlabError:
    """An error for an unknown name, suggesting the closest known one."""
    choices = sorted(choices)
    return AdaptlabError(
        f"unknown {kind} '{name}'{did_you_mean(name, choices)}; choose from: {', '.join(choices)}"
    )
