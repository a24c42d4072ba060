"""Learning-rate schedules as multipliers of each parameter group's peak rate."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_multiplier(name: str, total_steps: int, warmup_steps: int, ratio: float = 32.0) -> Callable[[int], float]:
    """A ``LambdaLR`` function: warm up linearly, then decay as ``name`` says.

    ``slanted_triangular`` follows ULMFiT (Howard & Ruder 2018, eq. 3): a short
    linear increase over ``warmup_steps`` (their ``cut``) and a long linear decay,
    never below ``1 / ratio`` of the peak.
    """
    total = max(total_steps, 1)
    warm = min(warmup_steps, total - 1) if total > 1 else 0

    def decay(step: int) -> float:
        progress = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
        if name == "linear":
            return 1.0 - progress
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "constant":
            return 1.0
        raise ValueError(f"unknown schedule {name}")

    def multiplier(step: int) -> float:
        if name == "slanted_triangular":
            cut = max(warm, 1)
            p = step / cut if step < cut else 1 - (step - cut) / max(total - cut, 1)
            return (1 + max(p, 0.0) * (ratio - 1)) / ratio
        if step < warm:
            return (step + 1) / (warm + 1)
        return decay(step)

    if name not in ("linear", "cosine", "constant", "slanted_triangular"):
        raise ValueError(f"unknown schedule {name}")
    return multiplier
