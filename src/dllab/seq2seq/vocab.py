"""Token vocabularies with the four special tokens every seq2seq model in dllab uses.

Ids 0..3 are PAD, SOS, EOS, UNK; the other tokens follow in sorted order, so a vocabulary built from the
same training data is always the same. Tokens are strings: characters of a spelling, IPA symbols (a
multi-codepoint symbol such as "t͡ʃ" is one token), or any other unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD, SOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]  # tokens[i] is the token with id i; tokens[:4] == SPECIALS
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {self.tokens[:4]}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]]) -> Vocab:
        """The specials, then every token seen in `sequences`, sorted."""
        seen = {tok for seq in sequences for tok in seq}
        return cls(SPECIALS + tuple(sorted(seen - set(SPECIALS))))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, seq: Sequence[str], bos_eos: bool = False) -> list[int]:
        """Token ids; tokens not in the vocabulary become UNK. `bos_eos` wraps the ids in SOS ... EOS."""
        ids = [self.index.get(tok, UNK) for tok in seq]
        return [SOS, *ids, EOS] if bos_eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids`, without PAD / SOS / EOS (UNK shows as "<unk>")."""
        return [self.tokens[i] for i in ids if i not in (PAD, SOS, EOS)]

    def count_unknown(self, sequences: Iterable[Sequence[str]]) -> int:
        """How many tokens of `sequences` are not in the vocabulary (and would become UNK)."""
        return sum(tok not in self.index for seq in sequences for tok in seq)

    def to_list(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> Vocab:
        return cls(tuple(tokens))
