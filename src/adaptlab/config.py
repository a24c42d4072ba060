"""Typed run configuration, loaded from YAML recipes with ``--set a.b=c`` overrides.

One :class:`RunConfig` describes one run completely; the resolved copy is written
into every run folder, so a run can be repeated from its own folder. Each field has
a docstring (shown by ``adaptlab strategies --verbose`` and in the docs); unknown
keys are rejected with the closest known key suggested.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SerializeAsAny, ValidationError, field_validator

from .errors import AdaptlabError, did_you_mean
from .settings import DataConfig, GenerationConfig, Section, StrategyConfig, TrainConfig, parse_eval_sets

__all__ = ["DataConfig", "GenerationConfig", "RunConfig", "Section", "StrategyConfig", "TrainConfig", "load_config", "parse_eval_sets"]


class RunConfig(Section):
    strategy: SerializeAsAny[StrategyConfig]
    """The strategy and its options, e.g. ``{name: lora, r: 8}``."""
    backbone: str = "minilm-l6"
    """A bundled model alias (``adaptlab models``), a local Hugging Face folder or a hub id."""
    data: DataConfig = DataConfig()
    """Where the examples come from and how they are split."""
    train: TrainConfig = TrainConfig()
    """Optimisation settings shared by every strategy."""
    generation: GenerationConfig = GenerationConfig()
    """How generative tasks (sft) generate when they are evaluated and when ``adaptlab generate`` runs."""
    output: str | None = None
    """Run folder; default ``runs/<strategy>-<time>``."""

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_config(cls, value: Any) -> StrategyConfig:
        from .strategies import get_strategy

        if isinstance(value, StrategyConfig):
            value = value.model_dump()
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or "name" not in value:
            raise ValueError("needs a 'name', e.g. {name: lora}")
        return get_strategy(value["name"]).Config.model_validate(value)


# -- loading ---------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into one clear line."""
    path = Path(path)
    if not path.is_file():
        path = _bundled_recipe(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise AdaptlabError(f"invalid YAML in {path}{where}: {problem}") from None
    except UnicodeDecodeError:
        raise AdaptlabError(f"recipe {path} is not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdaptlabError(f"recipe {path} must be a mapping of settings, got {type(data).__name__}")
    return data


def _bundled_recipe(path: Path) -> Path:
    """A bare name like ``distill`` also finds the bundled recipe ``recipes/distill.yaml``."""
    from importlib.resources import files

    if path.parent == Path(".") and not path.exists():
        bundled = Path(str(files("adaptlab.recipes") / (path.name if path.suffix else path.name + ".yaml")))
        if bundled.is_file():
            return bundled
    raise AdaptlabError(f"recipe file not found: {path}")


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a nested dict, in place."""
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    for key, value in items:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            if isinstance(child, str) and part == "strategy":
                child = {"name": child}
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node = child
        node[leaf] = value
    return data


def _split(override: str) -> tuple[str, Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise AdaptlabError(f"--set expects key=value, got '{override}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def build_config(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a :class:`RunConfig`; errors name the field."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise AdaptlabError(describe_validation_error(e, data)) from None


def describe_validation_error(error: ValidationError, data: dict[str, Any]) -> str:
    """Turn pydantic's report into one line: the field, the problem, a suggestion."""
    errors = error.errors()
    first = errors[0]
    loc = [str(p) for p in first["loc"] if not _union_branch(p)]
    field = ".".join(loc)
    others = sum(1 for e in errors[1:] if [str(p) for p in e["loc"] if not _union_branch(p)] != loc)
    if first["type"] == "extra_forbidden":
        prefix = ".".join(loc[:-1])
        known = [f"{prefix}.{k}" if prefix else k for k in _known_keys(loc[:-1], data)]
        return f"unknown config key '{field}'{did_you_mean(field, known)}"
    message = first["msg"].removeprefix("Value error, ")
    if any(e["type"] == "literal_error" and "'auto'" in e["msg"] for e in errors[1:]):
        message += ", or 'auto'"  # a number-or-auto field: say both
    if "input" in first and not isinstance(first["input"], dict):
        message += f" (got {first['input']!r})"
    more = f" (and {others} more)" if others else ""
    return f"invalid config '{field}': {message}{more}"


def _union_branch(part: Any) -> bool:
    """pydantic names the branch of a union in an error's location (``constrained-int``, ``literal['auto']``)."""
    return isinstance(part, str) and ("-" in part or "[" in part or part in ("int", "float", "str", "bool"))


def _known_keys(parents: list[str], data: dict[str, Any]) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in parents:
        if part == "strategy":
            from .strategies import REGISTRY

            name = data.get("strategy", {})
            name = name.get("name") if isinstance(name, dict) else name
            model = REGISTRY[name].Config if name in REGISTRY else StrategyConfig
            continue
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def load_config(
    recipe: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> RunConfig:
    """Recipe (file, dict or config) + overrides -> validated :class:`RunConfig`."""
    if isinstance(recipe, RunConfig):
        data = recipe.model_dump(exclude_unset=True)
    elif isinstance(recipe, dict):
        data = copy.deepcopy(recipe)
    elif recipe is not None:
        data = read_yaml(recipe)
    else:
        data = {}
    apply_overrides(data, overrides or {})
    data.setdefault("strategy", {"name": "lora"})
    return build_config(data)


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
