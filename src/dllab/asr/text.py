"""The notebook's 35-symbol character vocabulary, as a `dllab.seq2seq.vocab.Vocab`: < > @ # space , . ? - a-z.

`<` starts a transcript (SOS), `>` ends it (EOS), `@` pads (PAD), `#` stands for any character outside the
vocabulary (UNK); the transcript characters are `dllab.data.text.CHARACTERS`, what its normaliser leaves.
Text is lower-cased before lookup; a transcript plus its two markers is at most `MAX_TOKENS` long.
Only `pad_tokens` needs torch, and imports it when called, so the configs can use these constants without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dllab.data.text import CHARACTERS
from dllab.seq2seq.vocab import Vocab

if TYPE_CHECKING:
    from torch import Tensor

SYMBOLS: tuple[str, ...] = ("<", ">", "@", "#", *CHARACTERS)
SOS, EOS, PAD, UNK = 0, 1, 2, 3
VOCAB = Vocab(SYMBOLS, pad=PAD, sos=SOS, eos=EOS, unk=UNK)
VOCAB_SIZE = len(VOCAB)  # 35
MAX_TOKENS = 99  # the notebook's cap, SOS and EOS included


def encode(text: str) -> list[int]:
    """`<` + lower-cased characters (unknown -> `#`) + `>` as ids."""
    return VOCAB.encode(text.lower(), bos_eos=True)


def decode(ids: list[int] | Tensor) -> str:
    """Ids -> text, dropping SOS/PAD and stopping at the first EOS."""
    return "".join(VOCAB.decode(ids))


def pad_tokens(seqs: list[list[int]], multiple: int = 1) -> Tensor:
    """(B, L) long, right-padded with PAD to the longest sequence (rounded up to `multiple`, at most MAX_TOKENS)."""
    from dllab.seq2seq.batching import pad_ids

    return pad_ids(seqs, PAD, multiple, MAX_TOKENS)[0]
