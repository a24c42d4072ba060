"""What ``adaptlab tune`` searches: ranges and choices over config keys.

Every strategy is searched over the shared optimisation settings (learning rate around its
recommended one, epochs, warm-up, weight decay, dropout); a strategy adds its own knobs in a
``search_space`` class attribute (LoRA's ``r``/``alpha``, an adapter's reduction factor, top-k's
``k``). A recipe's ``search:`` mapping and ``--space KEY=LOW:HIGH`` / ``KEY=a,b,c`` replace or add ranges.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from ..config import apply_overrides, build_config
from ..errors import AdaptlabError


@dataclass(frozen=True)
class Space:
    """A numeric range (``low``..``high``, log-scaled or not; integers when both ends are) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial: Any, key: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(key, self.low, self.high, log=self.log)
        return trial.suggest_float(key, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        return f"{self.low}..{self.high}" + (" (log)" if self.log else "")

    def values(self) -> list[Any]:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def rng(low: float, high: float, log: bool | None = None) -> Space:
    """A range; log-scaled by default when it spans a factor of 10 or more."""
    if log is None:
        log = low > 0 and high / low >= 10
    return Space(low=low, high=high, log=log)


def space_for(strategy: Any, cfg: Any) -> dict[str, Space]:
    """The default search space of ``strategy``: the shared settings, then its own ``search_space``."""
    defaults = getattr(strategy, "train_defaults", {})
    lr, epochs = float(defaults.get("lr", 1e-4)), int(defaults.get("epochs", 3))
    shared = {
        "train.lr": rng(lr / 10, lr * 10),
        "train.epochs": Space(1, max(2, 2 * epochs)),
        "train.warmup_ratio": Space(0.0, 0.2),
        "train.weight_decay": Space(0.0, 0.1),
        "train.dropout": Space(0.0, 0.2),
    }
    own = getattr(strategy, "search_space", None)
    own = own(cfg) if callable(own) else own or {}
    return shared | parse_space(own)


def parse_space(spec: dict[str, Any] | list[str]) -> dict[str, Space]:
    """``{key: [a, b, c]}`` (choices), ``{key: {low, high, log}}`` (a range), or CLI ``KEY=LOW:HIGH`` / ``KEY=a,b,c``."""
    if isinstance(spec, list):
        return dict(_parse_flag(item) for item in spec)
    if not isinstance(spec, dict):
        raise AdaptlabError(f"'search' must map config keys to ranges or choices, got {type(spec).__name__}")
    return {str(key): _parse_value(str(key), value) for key, value in spec.items()}


def _parse_flag(item: str) -> tuple[str, Space]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise AdaptlabError(f"--space expects KEY=LOW:HIGH or KEY=a,b,c, got '{item}'")
    if ":" in raw:
        low, high = (_value(part) for part in raw.split(":", 1))
        return key.strip(), _parse_value(key.strip(), {"low": low, "high": high})
    return key.strip(), _parse_value(key.strip(), [_value(part) for part in raw.split(",") if part.strip()])


def _value(text: str) -> Any:
    """``3`` -> 3, ``1e-3`` -> 0.001 (YAML would read a string), anything else as YAML reads it."""
    import yaml

    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            pass
    return yaml.safe_load(text)


def _parse_value(key: str, value: Any) -> Space:
    if isinstance(value, Space):
        return value
    if isinstance(value, list | tuple):
        if not value:
            raise AdaptlabError(f"search space '{key}' has no choices")
        return Space(choices=tuple(value))
    if isinstance(value, dict) and set(value) <= {"low", "high", "log"} and {"low", "high"} <= set(value):
        low, high = value["low"], value["high"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise AdaptlabError(f"search space '{key}' needs numbers for low and high, got {low!r} and {high!r}")
        if not low < high:
            raise AdaptlabError(f"search space '{key}' is empty: low {low} is not below high {high}")
        if value.get("log") and low <= 0:
            raise AdaptlabError(f"search space '{key}' is log-scaled and needs low > 0, got {low}")
        return rng(low, high, value.get("log"))
    raise AdaptlabError(f"search space '{key}' must be a list of choices or {{low: .., high: ..}}, got {value!r}")


def check_space(search: dict[str, Space], base: Any) -> None:
    """Every key is a config key and every end of its range a valid value: one line naming it, before any trial."""
    data = base.model_dump(mode="json", exclude_unset=True)
    for key, space in search.items():
        for value in space.values():
            build_config(apply_overrides(copy.deepcopy(data), {key: value}))
