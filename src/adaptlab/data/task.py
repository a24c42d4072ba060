"""From raw tables to a validated classification task with a fixed split.

Everything that can be wrong with the user's data is checked here, before any
model is loaded or any folder is written, so that a bad file costs one clear line
and nothing else.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..errors import AdaptlabError
from .bundled import is_bundled, load_bundled
from .files import Table, read_table

log = logging.getLogger("adaptlab")


@dataclass
class Examples:
    """Texts (optionally pairs) with integer labels."""

    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> Examples:
        pairs = [self.pairs[i] for i in indices] if self.pairs is not None else None
        return Examples([self.texts[i] for i in indices], [self.labels[i] for i in indices], pairs)


@dataclass
class TaskData:
    """A classification task: train and eval examples and the label names (id -> name)."""

    train: Examples
    eval: Examples
    labels: list[str]
    source: str

    @property
    def majority_baseline(self) -> float:
        """Eval accuracy of always predicting the most frequent training class."""
        top = Counter(self.train.labels).most_common(1)[0][0]
        return sum(y == top for y in self.eval.labels) / max(len(self.eval), 1)


def load_table(source: str, encoding: str = "utf-8") -> Table:
    if is_bundled(source):
        return load_bundled(source)
    if not Path(source).suffix and not Path(source).exists():
        from ..errors import unknown
        from .bundled import BUNDLED_DATASETS

        raise unknown("dataset", source, list(BUNDLED_DATASETS) + ["<a data file>"])
    return read_table(source, encoding)


def _columns(table: Table, cfg: DataConfig) -> tuple[str, str, str | None]:
    wanted = [cfg.text_column, cfg.label_column] + ([cfg.text_pair_column] if cfg.text_pair_column else [])
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise AdaptlabError(
            f"column {names} not found in {table.source}; columns present: {', '.join(table.columns)} "
            f"(choose with --text-column / --label-column)"
        )
    return cfg.text_column, cfg.label_column, cfg.text_pair_column


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _label_key(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def extract(table: Table, cfg: DataConfig) -> tuple[list[str], list[str] | None, list[str]]:
    """Texts, optional pairs and raw label strings; rows without a label are dropped."""
    text_col, label_col, pair_col = _columns(table, cfg)
    keep = [i for i, row in enumerate(table.rows) if not _is_missing(row.get(label_col))]
    dropped = len(table.rows) - len(keep)
    if not keep:
        raise AdaptlabError(f"no row of {table.source} has a label in column '{label_col}'")
    if dropped:
        log.warning("dropped %d rows of %s with no label in column '%s'", dropped, table.source, label_col)
    for col in [text_col] + ([pair_col] if pair_col else []):
        empty = [i for i in keep if _is_missing(table.rows[i].get(col))]
        if empty:
            raise AdaptlabError(
                f"{len(empty)} rows of {table.source} have an empty '{col}' (first at {table.where(empty[0])})"
            )
    texts = [str(table.rows[i][text_col]) for i in keep]
    pairs = [str(table.rows[i][pair_col]) for i in keep] if pair_col else None
    labels = [_label_key(table.rows[i][label_col]) for i in keep]
    return texts, pairs, labels


def label_names(raw: list[str], source: str) -> list[str]:
    """Sorted class names: numerically when every label is an integer."""
    names = set(raw)
    if len(names) < 2:
        raise AdaptlabError(f"{source} has only one class ({next(iter(names))!r}); a classifier needs at least two")
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def stratified_split(labels: list[int], take: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices of ``take`` examples drawn per class in proportion, and of the rest."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[y].append(i)
    quota = {y: take * len(ix) / len(labels) for y, ix in by_class.items()}
    counts = {y: int(q) for y, q in quota.items()}
    for y in sorted(quota, key=lambda y: quota[y] - counts[y], reverse=True)[: take - sum(counts.values())]:
        counts[y] += 1  # largest remainders get the leftover places
    taken, rest = [], []
    for y in sorted(by_class):
        ix = by_class[y][:]
        rng.shuffle(ix)
        taken += ix[: counts[y]]
        rest += ix[counts[y] :]
    return sorted(taken), sorted(rest)


def build_task(cfg: DataConfig, seed: int = 42) -> TaskData:
    """Load, validate and split the data described by ``cfg``."""
    train_table = load_table(cfg.train, cfg.encoding)
    texts, pairs, raw = extract(train_table, cfg)
    names = label_names(raw, train_table.source)
    index = {name: i for i, name in enumerate(names)}
    train = Examples(texts, [index[y] for y in raw], pairs)
    if cfg.eval:
        eval_table = load_table(cfg.eval, cfg.encoding)
        e_texts, e_pairs, e_raw = extract(eval_table, cfg)
        unseen = sorted(set(e_raw) - set(names))
        if unseen:
            raise AdaptlabError(
                f"labels in {eval_table.source} never seen in training: {', '.join(map(repr, unseen[:5]))}"
                + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
            )
        evaluation = Examples(e_texts, [index[y] for y in e_raw], e_pairs)
    else:
        n_eval = max(len(names), round(len(train) * cfg.eval_fraction))
        if len(train) - n_eval < len(names):
            raise AdaptlabError(f"{train_table.source} has too few rows ({len(train)}) to hold out an eval split")
        held, kept = stratified_split(train.labels, n_eval, seed)
        train, evaluation = train.subset(kept), train.subset(held)
    if cfg.max_train and cfg.max_train < len(train):
        train = train.subset(stratified_split(train.labels, cfg.max_train, seed)[0])
    if cfg.max_eval and cfg.max_eval < len(evaluation):
        evaluation = evaluation.subset(stratified_split(evaluation.labels, cfg.max_eval, seed)[0])
    if len(set(train.labels)) < 2:
        raise AdaptlabError(f"the training split of {train_table.source} has only one class; use more examples")
    return TaskData(train, evaluation, names, train_table.source)
