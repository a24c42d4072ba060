"""Where a run's time goes: named wall-clock spans, recorded in metrics.json's ``timing``.

A comparison is only fair when both sides time the same span (issue 27): ``fit`` is the span from a
prepared model and tokenised rows to a trained model in memory; the rest -- loading, the range test, the
evaluation passes, the forgetting probe, checkpoints, writing the model -- are fixed costs reported beside
it, so a benchmark can put any one of them on either side of the line and say which. The spans nest
(``fit`` contains ``range_test``, ``epoch_eval`` and ``checkpoint``); ``steps`` is the optimiser steps alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

ORDER = ("load", "prepare", "score_before", "fit", "precompute", "range_test", "steps", "epoch_eval", "checkpoint",
         "forgetting_probe", "final_eval", "save", "total")
"""The order metrics.json lists them in (a span that did not happen is absent)."""


@contextmanager
def span(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to ``phases[name]`` (spans repeat: each epoch's evaluation)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - started


def ordered(phases: dict[str, float]) -> dict[str, float]:
    """``phases`` in :data:`ORDER`, in seconds to the millisecond."""
    known = [k for k in ORDER if k in phases] + sorted(k for k in phases if k not in ORDER)
    return {k: round(phases[k], 3) for k in known}
