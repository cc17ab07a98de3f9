"""Token vocabularies with the four special tokens every seq2seq model in dllab uses: PAD, SOS, EOS, UNK.

Tokens are strings: characters of a spelling or a transcript, IPA symbols (a multi-codepoint symbol such as
"t͡ʃ" is one token), or any other unit. Two kinds are in use:

    Vocab.build(train_sequences)    p2g: ids 0..3 are PAD, SOS, EOS, UNK (`SPECIALS`), the other tokens follow
                                    in sorted order, so the same training data always gives the same vocabulary
    Vocab(symbols, pad=, sos=, ...) a fixed alphabet in its own order with its own special ids (asr: the
                                    course notebook's `< > @ #` then the transcript characters)

Torch-free, so that configs can size models from a vocabulary without importing torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass(frozen=True)
class Vocab:
    """tokens[i] is the token with id i; `pad`, `sos`, `eos` and `unk` are the ids of the special tokens."""

    tokens: tuple[str, ...]
    pad: int = PAD
    sos: int = SOS
    eos: int = EOS
    unk: int = UNK  # what a token outside the vocabulary encodes to
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        ids = {"pad": self.pad, "sos": self.sos, "eos": self.eos, "unk": self.unk}
        if len(set(ids.values())) != 4 or not all(0 <= i < len(self.tokens) for i in ids.values()):
            raise ValueError(f"the special ids must be 4 different ids below {len(self.tokens)}, got {ids}")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> Vocab:
        """The specials, then every token seen in `sequences`, sorted."""
        seen = {tok for seq in sequences for tok in seq}
        return cls(SPECIALS + tuple(sorted(seen - set(SPECIALS))))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, seq: Sequence[str], bos_eos: bool = False) -> list[int]:
        """Token ids; tokens not in the vocabulary become `unk`. `bos_eos` wraps the ids in SOS ... EOS."""
        ids = [self.index.get(tok, self.unk) for tok in seq]
        return [self.sos, *ids, self.eos] if bos_eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids` up to the first EOS, without PAD / SOS (an unknown shows as the `unk` token).

        `ids` may be a 1-d tensor or array (anything with `tolist()`)."""
        out = []
        for i in ids.tolist() if hasattr(ids, "tolist") else ids:
            if i == self.eos:
                break
            if i != self.pad and i != self.sos:
                out.append(self.tokens[i])
        return out

    def count_unknown(self, sequences: Iterable[Sequence[str]]) -> int:
        """How many tokens of `sequences` are not in the vocabulary (and would become UNK)."""
        return sum(tok not in self.index for seq in sequences for tok in seq)

    def to_list(self) -> list[str]:
        """The tokens in id order (what p2g writes to vocab.json; `from_list` reads it back)."""
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> Vocab:
        """A `build` vocabulary from its `to_list()`: the SPECIALS first, at ids 0..3."""
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary list starts with {SPECIALS}, got {tuple(tokens[:4])}")
        return cls(tuple(tokens))
