"""The notebook's 35-symbol character vocabulary, as a `dllab.seq2seq.vocab.Vocab`: < > @ # space , . ? - a-z.

`<` starts a transcript (SOS), `>` ends it (EOS), `@` pads (PAD, also CTC's blank), `#` stands for any
character outside the vocabulary (UNK); the transcript characters are `dllab.data.text.CHARACTERS`, what its
normaliser leaves. Text is lower-cased before lookup; one character is one token.

No constant here caps a transcript: the longest token sequence is the config's `model.max_tokens`, derived
from the data when not given (`dllab.asr.experiment.resolve_lengths`). `MAX_TOKENS` is the course notebook's
`text_len`, the cap of `--data.mode course`: a longer transcript is cut to its first `MAX_TOKENS - 2`
characters, then wrapped in `<` and `>` (SOS and EOS included in the 99).
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
MAX_TOKENS = 99  # the notebook's text_len: course mode's cap, SOS and EOS included


def cut(text: str, max_tokens: int) -> str:
    """The first `max_tokens - 2` characters of `text`: what fits in `max_tokens` tokens with `<` and `>`."""
    if max_tokens < 3:
        raise ValueError(f"max_tokens: need room for SOS, EOS and a character, got {max_tokens}")
    return text[: max_tokens - 2]


def encode(text: str) -> list[int]:
    """`<` + lower-cased characters (unknown -> `#`) + `>` as ids."""
    return VOCAB.encode(text.lower(), bos_eos=True)


def decode(ids: list[int] | Tensor) -> str:
    """Ids -> text, dropping SOS/PAD and stopping at the first EOS."""
    return "".join(VOCAB.decode(ids))


def pad_tokens(seqs: list[list[int]], multiple: int = 1, limit: int | None = None) -> Tensor:
    """(B, L) long, right-padded with PAD to the longest sequence, rounded up to `multiple` but never past
    `limit` (the model's `max_tokens`) by the rounding."""
    from dllab.seq2seq.batching import pad_ids

    return pad_ids(seqs, PAD, multiple, limit)[0]
