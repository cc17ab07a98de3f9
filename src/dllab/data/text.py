"""English transcript text: the characters the speech models spell with, and the normaliser that folds free
text onto them. Shared by the corpora in `dllab.data` and by `dllab.asr`.
"""

from __future__ import annotations

import re

# The course notebook's transcript characters (its vocabulary less the <, >, @ and # markers).
CHARACTERS: tuple[str, ...] = (" ", ",", ".", "?", "-", *"abcdefghijklmnopqrstuvwxyz")
_KEPT = frozenset(CHARACTERS)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Fold free English text onto CHARACTERS, leaving nothing outside them.

    `;` and `:` become commas, `!` a full stop, quotes, brackets and other symbols are dropped, and runs of
    whitespace become one space.
    """
    text = text.lower().replace(";", ",").replace(":", ",").replace("!", ".")
    text = "".join(ch if ch in _KEPT else " " if ch in "\t\n()[]/" else "" for ch in text)
    text = _SPACES.sub(" ", text).strip()
    text = re.sub(r" ([,.?])", r"\1", text)
    return re.sub(r"([,.?])[,.?]+", r"\1", text)
