"""From raw tables to a validated classification task with a fixed split.

Everything that can be wrong with the user's data is checked here, before any
model is loaded or any folder is written, so that a bad file costs one clear line
and nothing else.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AdaptlabError
from ..settings import DataConfig
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
    eval_name: str = "eval"
    """Name of the main evaluation set (``data.eval`` as ``{name: source}``)."""
    extra_evals: dict[str, Examples] = field(default_factory=dict)
    """Further named evaluation sets (e.g. other languages), scored after training."""
    sampling: dict[str, Any] = field(default_factory=dict)
    """How the training set was sampled (shots, target shots), for metrics.json."""
    validation: Examples | None = None
    """Set aside from the training examples: the best epoch and early stopping are chosen on it."""

    @property
    def majority_baseline(self) -> float:
        """Eval accuracy of always predicting the most frequent training class (classes tied in training, as
        with ``--shots``: the one most frequent in evaluation, so that the baseline is not an unlucky tie-break)."""
        counts, shares = Counter(self.train.labels), Counter(self.eval.labels)
        most = max(counts.values())
        top = max((y for y, c in counts.items() if c == most), key=lambda y: shares[y])
        return shares[top] / max(len(self.eval), 1)


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
            f"(choose with --text-column / --label-column; sft rows: prompt/response, messages or alpaca columns)"
        )
    return cfg.text_column, cfg.label_column, cfg.text_pair_column


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _label_key(value: Any) -> str:
    """One spelling per class: surrounding spaces dropped, integral numbers written as integers ("1.0" -> "1")."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+\.0*", text):
        return str(int(float(text)))
    return text


def _report_merged_labels(raw: list[Any], keys: list[str], source: str) -> None:
    """Warn, with counts, where differently written labels became one class ('pos ' and 'pos', 1 and 1.0)."""
    spellings: dict[str, Counter] = defaultdict(Counter)
    for value, key in zip(raw, keys):
        spellings[key][str(value)] += 1
    merged = {key: forms for key, forms in spellings.items() if len(forms) > 1}
    for key, forms in sorted(merged.items()):
        listed = ", ".join(f"{form!r} ({n} rows)" for form, n in forms.most_common())
        log.warning("labels in %s written differently were merged into class %r: %s", source, key, listed)


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
    raw = [table.rows[i][label_col] for i in keep]
    labels = [_label_key(value) for value in raw]
    _report_merged_labels(raw, labels, table.source)
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
    order = sorted(quota)
    random.Random(seed + 1).shuffle(order)  # equal remainders: a seeded draw, not always the lowest class ids
    for y in sorted(order, key=lambda y: quota[y] - counts[y], reverse=True)[: take - sum(counts.values())]:
        counts[y] += 1  # largest remainders get the leftover places
    taken, rest = [], []
    for y in sorted(by_class):
        ix = by_class[y][:]
        rng.shuffle(ix)
        taken += ix[: counts[y]]
        rest += ix[counts[y] :]
    return sorted(taken), sorted(rest)


def build_task(cfg: DataConfig, seed: int = 42, table: Table | None = None) -> TaskData:
    """Load, validate and split the data described by ``cfg`` (``table``: ``cfg.train``, already read)."""
    train_table = table or load_table(cfg.train, cfg.encoding)
    texts, pairs, raw = extract(train_table, cfg)
    names = label_names(raw, train_table.source)
    index = {name: i for i, name in enumerate(names)}
    train = Examples(texts, [index[y] for y in raw], pairs)
    named = eval_sources(cfg)
    held_out = None
    if not named or cfg.train in named.values():  # a set whose source is the training data is its held-out split
        n_eval = max(len(names), round(len(train) * cfg.eval_fraction))
        if len(train) - n_eval < len(names):
            raise AdaptlabError(f"{train_table.source} has too few rows ({len(train)}) to hold out an eval split")
        held, kept = stratified_split(train.labels, n_eval, seed)
        train, held_out = train.subset(kept), train.subset(held)
    pools = {name: held_out if source == cfg.train else load_eval(source, cfg, index) for name, source in named.items()} or {"eval": held_out}
    sets = {name: cap(pool, cfg.max_eval, seed) for name, pool in pools.items()}
    if cfg.max_train and cfg.max_train < len(train):
        train = train.subset(stratified_split(train.labels, cfg.max_train, seed)[0])
    sampling: dict[str, Any] = {}
    if cfg.shots:
        train = per_class(train, cfg.shots, seed, f"the training data of {train_table.source}", names)
        sampling["shots"] = cfg.shots
    train, validation = carve_validation(train, cfg, seed)  # before target shots: every one of those trains
    if validation is not None:
        sampling["validation_examples"] = len(validation)
    if cfg.target_shots is not None:
        train, sets = add_target_shots(cfg, train, pools, sets, seed, names, sampling)
    if len(set(train.labels)) < 2:
        raise AdaptlabError(f"the training split of {train_table.source} has only one class; use more examples")
    main, *rest = sets
    return TaskData(train, sets[main], names, train_table.source, main, {n: sets[n] for n in rest}, sampling, validation)


def carve_validation(train: Examples, cfg: DataConfig, seed: int) -> tuple[Examples, Examples | None]:
    """A stratified ``validation_fraction`` of the training examples, for choices made during training.

    None for few-shot runs (every shot trains, unless ``validation_fraction`` is set explicitly), small
    training sets, or when a class would lose its last training example to it.
    """
    few_shot = cfg.shots and "validation_fraction" not in cfg.model_fields_set
    if not cfg.validation_fraction or few_shot or len(train) < cfg.min_validation_train:
        return train, None
    n = max(len(set(train.labels)), round(len(train) * cfg.validation_fraction))
    n = min(n, cfg.max_validation) if cfg.max_validation else n
    held, kept = stratified_split(train.labels, n, seed)
    if set(train.labels[i] for i in kept) != set(train.labels):
        return train, None
    return train.subset(kept), train.subset(held)


def eval_sources(cfg: DataConfig) -> dict[str, str]:
    """The evaluation sets as ``{name: source}``, main one first; ``{}`` for a held-out split only."""
    if not cfg.eval:
        return {}
    return dict(cfg.eval) if isinstance(cfg.eval, dict) else {"eval": cfg.eval}


def load_eval(source: str, cfg: DataConfig, index: dict[str, int]) -> Examples:
    table = load_table(source, cfg.encoding)
    texts, pairs, raw = extract(table, cfg)
    unseen = sorted(set(raw) - set(index))
    if unseen:
        raise AdaptlabError(
            f"labels in {table.source} never seen in training: {', '.join(map(repr, unseen[:5]))}"
            + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
        )
    return Examples(texts, [index[y] for y in raw], pairs)


def cap(examples: Examples, limit: int | None, seed: int) -> Examples:
    """At most ``limit`` examples, stratified and seeded."""
    if limit and limit < len(examples):
        return examples.subset(stratified_split(examples.labels, limit, seed)[0])
    return examples


def per_class(examples: Examples, k: int, seed: int, what: str, names: list[str]) -> Examples:
    """Exactly ``k`` examples of every class present (seeded); an error if a class has fewer."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(examples.labels):
        by_class[y].append(i)
    short = {names[y]: len(ix) for y, ix in by_class.items() if len(ix) < k}
    if short:
        y, n = next(iter(short.items()))
        raise AdaptlabError(f"{k} examples per class asked for, but {what} has only {n} of class {y!r}")
    chosen = []
    for y in sorted(by_class):
        chosen += rng.sample(by_class[y], k)
    return examples.subset(sorted(chosen))


def add_target_shots(cfg: DataConfig, train: Examples, pools: dict[str, Examples], sets: dict[str, Examples],
                     seed: int, names: list[str], sampling: dict[str, Any]) -> tuple[Examples, dict[str, Examples]]:
    """Add ``target_shots`` labelled examples per class of the target set to ``train``.

    They come from the target set's examples that are not evaluated (when ``max_eval``
    left enough), so the evaluated examples are the same for every k; otherwise they
    are taken out of the evaluated examples.
    """
    target = cfg.target or next((n for n, s in eval_sources(cfg).items() if s != cfg.train), None)
    if target not in sets:
        raise AdaptlabError(f"--target-shots needs a target eval set; name one of {', '.join(sets)} with data.target"
                            if target else "--target-shots needs an eval set in another language, e.g. --eval-data zh=FILE")
    sampling.update(target_shots=cfg.target_shots, target=target)
    if not cfg.target_shots:
        return train, sets
    evaluated = set(zip(sets[target].texts, sets[target].labels))
    rest = [i for i, pair in enumerate(zip(pools[target].texts, pools[target].labels)) if pair not in evaluated]
    spare = pools[target].subset(rest)
    counts = Counter(spare.labels)
    if all(counts[y] >= cfg.target_shots for y in set(sets[target].labels)):
        shots = per_class(spare, cfg.target_shots, seed, f"eval set {target!r}", names)
    else:
        shots = per_class(sets[target], cfg.target_shots, seed, f"eval set {target!r}", names)
        drawn = Counter(zip(shots.texts, shots.labels))
        keep = [i for i, pair in enumerate(zip(sets[target].texts, sets[target].labels)) if not _take(drawn, pair)]
        sets = {**sets, target: sets[target].subset(keep)}
        log.warning("target set %r is too small to keep the shots apart: they were taken out of its evaluated examples", target)
    return concat(train, shots), sets


def _take(counter: Counter, key: Any) -> bool:
    if counter[key]:
        counter[key] -= 1
        return True
    return False


def concat(a: Examples, b: Examples) -> Examples:
    pairs = (a.pairs or [""] * len(a)) + (b.pairs or [""] * len(b)) if a.pairs is not None or b.pairs is not None else None
    return Examples(a.texts + b.texts, a.labels + b.labels, pairs)
