"""The notebook's 35-symbol character vocabulary: < > @ # space , . ? - a-z.

`<` starts a transcript, `>` ends it, `@` pads, `#` stands for any character outside the vocabulary.
Text is lower-cased before lookup; a transcript plus its two markers is at most `MAX_TOKENS` long.
Only `pad_tokens` needs torch, and imports it when called, so the configs can use these constants without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dllab.data.text import CHARACTERS, normalize  # noqa: F401 (normalize is part of this vocabulary's face)

if TYPE_CHECKING:
    from torch import Tensor

SYMBOLS: tuple[str, ...] = ("<", ">", "@", "#", *CHARACTERS)
SOS, EOS, PAD, UNK = 0, 1, 2, 3
VOCAB_SIZE = len(SYMBOLS)  # 35
MAX_TOKENS = 99  # the notebook's cap, SOS and EOS included
_INDEX = {s: i for i, s in enumerate(SYMBOLS)}


def encode(text: str) -> list[int]:
    """`<` + lower-cased characters (unknown -> `#`) + `>` as ids."""
    return [SOS, *(_INDEX.get(ch, UNK) for ch in text.lower()), EOS]


def decode(ids: list[int] | Tensor) -> str:
    """Ids -> text, dropping SOS/PAD and stopping at the first EOS."""
    out = []
    for i in ids.tolist() if hasattr(ids, "tolist") else ids:  # a Tensor (or array) -> list
        if i == EOS:
            break
        if i in (SOS, PAD):
            continue
        out.append(SYMBOLS[i])
    return "".join(out)


def pad_tokens(seqs: list[list[int]], multiple: int = 1) -> Tensor:
    """(B, L) long, right-padded with PAD to the longest sequence (rounded up to `multiple`, at most MAX_TOKENS)."""
    import torch

    longest = max(len(s) for s in seqs)
    width = max(longest, min(-(-longest // multiple) * multiple, MAX_TOKENS))
    out = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out
