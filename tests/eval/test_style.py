"""The archaic-word share (``eval/style.py``): what the preference tables report as "archaic words"."""

from __future__ import annotations

import pytest

from adaptlab.eval.style import archaic_rate, is_archaic


def test_early_modern_forms_count_and_their_modern_lookalikes_do_not():
    for word in ("thou", "hath", "unto", "saith", "giveth", "knowest", "believest", "sayest"):
        assert is_archaic(word), word
    for word in ("the", "teeth", "death", "beneath", "greatest", "forest", "interest", "twentieth", "best", "west"):
        assert not is_archaic(word), word


def test_the_rate_on_a_king_james_verse_and_its_modern_translation():
    kjv = "And God said unto Moses, I AM THAT I AM: and he said, Thus shalt thou say unto the children of Israel"
    web = "God said to Moses, I AM WHO I AM, and he said, You shall tell the children of Israel this"
    assert archaic_rate([kjv]) == pytest.approx(4 / 22)  # unto, shalt, thou, unto of 22 words
    assert archaic_rate([web]) == 0.0 and archaic_rate([]) == 0.0 and archaic_rate(["", "  "]) == 0.0
    assert archaic_rate([kjv, web]) == pytest.approx(4 / 42)  # over all words of all texts, not a mean of rates
