"""Back-translation (``train.augment.backtranslate``): each training text translated into a pivot
language and back by a generative model, a paraphrase with the same label (Sennrich et al. 2016,
§3.2; for classification, Xie et al. 2020, UDA §3.1).

The translator is adaptlab's own generative path: a finished sft run folder (``adaptlab train
--task sft``, e.g. the ``translate`` recipe's) or a causal-LM backbone prompted as an instruction
model (the bundled ``smollm2-135m``), generating greedily with the run's chat template. Opening one is the
serving layer's work (``serve/generator.py``): the caller hands ``open_generator`` in, so this data
module imports nothing above it. Translations
are cached per text (``cache_dir()/backtranslation``, one JSON line per text, keyed by the
translators and the pivot language), so the second run on the same data costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from ..models.assets import cache_dir

log = logging.getLogger("adaptlab")

Generate = Callable[[list[str]], list[str]]
OpenGenerator = Callable[[str, "Path | None"], Generate]
"""(translator reference, folder ``@stage`` references resolve in) -> ``generate(prompts) -> answers``."""

PROMPT = "Translate the following text into {language}. Reply with the translation only.\n\n{text}"


class BackTranslator:
    """Text -> pivot language -> text, through two generators (the same one when ``back`` is unset), cached."""

    def __init__(self, via: str, open_generator: OpenGenerator, back: str | None = None, language: str = "French",
                 root: Path | None = None, cache: Path | None = None):
        self.key = hashlib.sha1(json.dumps([via, back or via, language]).encode()).hexdigest()[:16]
        self.path = (cache or cache_dir() / "backtranslation") / f"{self.key}.jsonl"
        self.via, self.back, self.language, self.root = via, back or via, language, root
        self.open = open_generator
        self.cache: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.cache[row["text"]] = row["back"]

    def __call__(self, texts: list[str]) -> list[str]:
        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            log.info("back-translation: %d texts through %s (%s and back); cached in %s", len(todo), self.via, self.language, self.path)
            forward = self.open(self.via, self.root)
            pivot = forward([PROMPT.format(language=self.language, text=t) for t in todo])
            backward = forward if self.back == self.via else self.open(self.back, self.root)
            again = backward([PROMPT.format(language="English", text=p) for p in pivot])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:  # appended per batch of texts: a killed run keeps what it made
                for text, out in zip(todo, again):
                    self.cache[text] = out.strip()
                    f.write(json.dumps({"text": text, "back": self.cache[text]}, ensure_ascii=False) + "\n")
        return [self.cache[t] for t in texts]
