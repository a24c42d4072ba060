"""What a prepared model trains, read from the model: the ``adapted_modules`` of metrics.json and the model card.

A run reports what it did, not what its options asked for: every parameter that trained is traced to
the layer it belongs to -- the projection a peft layer wraps (LoRA, DoRA, (IA)^3), the projection a
bottleneck adapter follows, a head or a soft prompt trained in full -- and layers inside the block list
are listed once with the blocks they occur in (``self_attn.q_proj`` in blocks 0-29). Nothing here knows
a strategy: the model's own modules say it.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from .placement import PlacementError, find_blocks


def _how(module: nn.Module) -> str | None:
    """What kind of adaptation a module carries, or None when it is a plain layer."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    from .bottleneck import Adapted

    if isinstance(module, BaseTunerLayer):
        method = type(module).__module__.split(".")[2]  # peft.tuners.<method>.layer
        magnitude = getattr(module, "lora_magnitude_vector", None)
        return "dora" if method == "lora" and magnitude else method
    if isinstance(module, ModulesToSaveWrapper):
        return "trained in full"
    if isinstance(module, Adapted):
        return f"{type(module.adapter).__name__.replace('Bottleneck', '').lower() or 'bottleneck'} adapter"
    if isinstance(getattr(module, "adapters", None), nn.ModuleDict):
        return "adapter stack"
    return None


def _display(name: str) -> str:
    """A module's name as in the transformers model: without peft's wrapper prefix (``base_model.model.``, or
    ``base_model.`` for prompt learning)."""
    return re.sub(r"^(?:.*\.)?base_model\.(?:model\.)?", "", name)


def _ranges(indices: list[int]) -> str:
    out, start = [], None
    for i, j in zip([None, *indices], [*indices, None]):
        if start is None:
            start = j
        elif j is None or j != i + 1:
            out.append(f"{start}" if start == i else f"{start}-{i}")
            start = j
    return ",".join(out)


def adapted_modules(module: nn.Module, trained: set[str] | None = None) -> dict[str, Any]:
    """The layers whose parameters train (``trained``: parameter names; default those with ``requires_grad``),
    each with how: ``{"blocks": path, "in_blocks": [{module, blocks, how}], "outside_blocks": [{module, how}]}``."""
    names = trained if trained is not None else {n for n, p in module.named_parameters() if p.requires_grad}
    kinds = {name: how for name, m in module.named_modules() if (how := _how(m)) is not None}
    owners: dict[str, str] = {}
    for param in sorted(names):
        path = param.rsplit(".", 1)[0] if "." in param else ""
        parts = path.split(".")
        anchor = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in kinds), None)
        owners.setdefault(anchor if anchor is not None else path, kinds.get(anchor, "trained in full") if anchor else "trained in full")
    try:
        blocks = find_blocks(module)
        prefix = next(n for n, m in module.named_modules() if m is blocks)
    except (PlacementError, StopIteration):
        prefix = None
    inside: dict[tuple[str, str], list[int]] = {}
    outside = []
    for name, how in owners.items():
        match = re.match(rf"^{re.escape(prefix)}\.(\d+)(?:\.(.*))?$", name) if prefix else None
        if match:
            inside.setdefault((match.group(2) or "(block)", how), []).append(int(match.group(1)))
        else:
            outside.append({"module": _display(name) or "(whole model)", "how": how})
    rows = [{"module": m, "blocks": _ranges(sorted(set(b))), "how": how} for (m, how), b in inside.items()]
    return {"blocks": _display(prefix) if prefix else None, "in_blocks": rows, "outside_blocks": outside}


def summary(adapted: dict[str, Any]) -> str:
    """One line: ``lora on self_attn.q_proj, ... in blocks 0-29; trained in full: score``."""
    by_how: dict[tuple[str, str], list[str]] = {}
    for row in adapted.get("in_blocks", []):
        by_how.setdefault((row["how"], row["blocks"]), []).append(row["module"])
    parts = [f"{how} {'after' if 'adapter' in how else 'on'} {', '.join(mods)} in blocks {blocks}" for (how, blocks), mods in by_how.items()]
    outside: dict[str, list[str]] = {}
    for row in adapted.get("outside_blocks", []):
        outside.setdefault(row["how"], []).append(row["module"])
    parts += [f"{how}: {', '.join(mods)}" for how, mods in outside.items()]
    return "; ".join(parts) or "nothing trains"
