"""A style measure for generated English: the share of words that are archaic (Early Modern English).

The effect a preference stage on ``verses-preference`` should have, where the rejected answers are the
King James Version (thee, thou, hath, -eth) and the chosen ones the World English Bible: after DPO or
ORPO, fewer archaic words in what the model writes. A fixed list plus the ``-eth``/``-est`` verb forms
of that English (Barber 1997, *Early Modern English*, ch. 5), with the modern words that end the same
way left out. Any English text can be measured; on modern prose it is near 0.
"""

from __future__ import annotations

import re

ARCHAIC = frozenset("""thee thou thy thine ye hath doth dost hast art shalt wilt canst couldst wouldst shouldst didst wast wert
saith spake unto hither thither whither whence thence wherefore verily begat yea peradventure howbeit ere nigh
sware brethren shew shewed""".split())
"""Archaic function words and verb forms. (``art`` is counted: in the verses it is the verb, 'thou art'.)"""

MODERN_ETH = frozenset("""teeth beneath seth japheth nazareth elizabeth heth jetheth kenneth meth death breath
beth bethel best rest test west nest guest quest chest forest honest interest earnest harvest protest arrest
request modest manifest invest contest suggest digest priest jest lest east least feast beast yeast past fast
last vast cast mast most post host ghost just must dust trust crust""".split())

_WORD = re.compile(r"[a-z]+")


def is_archaic(word: str) -> bool:
    if word in ARCHAIC:
        return True
    if word in MODERN_ETH or len(word) < 5 or word.endswith("tieth"):  # twentieth, thirtieth: ordinals
        return False
    return word.endswith("eth") or (word.endswith("est") and word[-4] not in "aeiou" and word[:-3] + "s" not in MODERN_ETH
                                    and _verb_est(word))


def _verb_est(word: str) -> bool:
    """``-est`` second-person verbs (knowest, sayest, believest), not superlatives (greatest, largest)."""
    return word.endswith(("west", "yest", "vest", "kest", "rest", "nest", "mest", "dest")) and not word.endswith(
        ("greatest", "largest", "smallest", "highest", "oldest", "youngest", "strongest", "longest", "nearest", "dearest",
         "hardest", "widest", "finest", "closest", "fewest", "newest", "lowest", "slowest", "latest", "loudest"))


def archaic_rate(texts: list[str]) -> float:
    """Archaic words over all words of ``texts`` (0 when there are none)."""
    words = [w for t in texts for w in _WORD.findall(t.lower())]
    return sum(map(is_archaic, words)) / len(words) if words else 0.0
