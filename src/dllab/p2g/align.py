"""Monotone many-to-many alignment of source and target symbols (torch-free), for the transducer speller.

    ChunkAligner.fit(pairs)      learn p(chunk | source symbol) by expectation-maximisation: every source
                                 symbol emits a chunk of 0 to `max_chunk` target symbols, in order
    aligner.align(src, tgt)      the most likely chunks (Viterbi), one per source symbol, or None
    aligner.actions(src, tgt)    the oracle's actions for that alignment (a right-to-left run's too), or None
    to_actions(chunks)           the transducer's oracle actions: each chunk's symbols, then STEP
    ChunkAligner.to_json / from_json

The expectation-maximisation is that of Jiampojamarn et al. (2007, the m2m-aligner) restricted to one source
symbol per chunk, which is what a transducer reading one source symbol at a time needs. The m2m-aligner and
Phonetisaurus are C++ programs; this is the 80 lines the transducer needs, run once per training run (800
words: about 2 s; 4,000 or more: about 30 s).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

STEP = "<step>"  # the transducer's action "move to the next source symbol"

_START = {0: 0.3, 1: 1.0, 2: 0.3, 3: 0.1}  # initial weight of a chunk by its length: one symbol for one is likeliest
_FLOOR = 1e-6  # probability of a (symbol, chunk) never seen in training (so that any pair can be aligned)


class ChunkAligner:
    def __init__(self, table: dict[tuple[str, tuple[str, ...]], float], max_chunk: int = 3):
        self.table, self.max_chunk = table, max_chunk

    def p(self, symbol: str, chunk: tuple[str, ...]) -> float:
        return self.table.get((symbol, chunk), _FLOOR)

    @classmethod
    def fit(cls, pairs: Sequence[tuple[Sequence[str], Sequence[str]]], max_chunk: int = 3,
            iterations: int = 15, max_pairs: int = 4000) -> ChunkAligner:  # fmt: skip
        """EM over the pairs' monotone segmentations (forward-backward on the source x target grid). Past
        `max_pairs` pairs it learns from that many, evenly spread (pure Python: about 1 ms per pair and
        iteration; a sample of 4,000 words holds the chunks of an orthography's regular readings)."""
        pairs = [(tuple(x), tuple(y)) for x, y in pairs if x]
        if len(pairs) > max_pairs:
            pairs = [pairs[i * len(pairs) // max_pairs] for i in range(max_pairs)]
        table: dict = {}
        for x, y in pairs:
            for c in x:
                for j in range(len(y) + 1):
                    for k in range(min(max_chunk, len(y) - j) + 1):
                        table[(c, y[j : j + k])] = _START.get(k, 0.05)
        aligner = cls(table, max_chunk)
        for _ in range(iterations):
            counts: dict = defaultdict(float)
            for x, y in pairs:
                aligner._expect(x, y, counts)
            totals: dict = defaultdict(float)
            for (c, _), v in counts.items():
                totals[c] += v
            aligner = cls({key: v / totals[key[0]] for key, v in counts.items() if v > 1e-4}, max_chunk)
        return aligner

    def _expect(self, x: tuple[str, ...], y: tuple[str, ...], counts: dict) -> None:
        n, m, K = len(x), len(y), self.max_chunk
        fwd = [[0.0] * (m + 1) for _ in range(n + 1)]
        fwd[0][0] = 1.0
        for i in range(1, n + 1):
            for j in range(m + 1):
                fwd[i][j] = sum(fwd[i - 1][j - k] * self.p(x[i - 1], y[j - k : j]) for k in range(min(K, j) + 1))
        total = fwd[n][m]
        if total <= 0:
            return  # no segmentation with chunks of at most K symbols: this pair teaches nothing
        bwd = [[0.0] * (m + 1) for _ in range(n + 1)]
        bwd[n][m] = 1.0
        for i in range(n - 1, -1, -1):
            for j in range(m + 1):
                bwd[i][j] = sum(bwd[i + 1][j + k] * self.p(x[i], y[j : j + k]) for k in range(min(K, m - j) + 1))
        for i in range(1, n + 1):
            for j in range(m + 1):
                for k in range(min(K, j) + 1):
                    chunk = y[j - k : j]
                    v = fwd[i - 1][j - k] * self.p(x[i - 1], chunk) * bwd[i][j] / total
                    if v > 0:
                        counts[(x[i - 1], chunk)] += v

    def align(self, x: Sequence[str], y: Sequence[str]) -> list[tuple[str, ...]] | None:
        """One chunk of `y` per symbol of `x`, in order, their concatenation `y`; None if `y` is longer than
        max_chunk symbols per source symbol."""
        n, m, K = len(x), len(y), self.max_chunk
        y = tuple(y)
        best = [[-math.inf] * (m + 1) for _ in range(n + 1)]
        back = [[0] * (m + 1) for _ in range(n + 1)]
        best[0][0] = 0.0
        for i in range(1, n + 1):
            for j in range(m + 1):
                for k in range(min(K, j) + 1):
                    if best[i - 1][j - k] > -math.inf:
                        v = best[i - 1][j - k] + math.log(self.p(x[i - 1], y[j - k : j]))
                        if v > best[i][j]:
                            best[i][j], back[i][j] = v, k
        if best[n][m] == -math.inf:
            return None
        chunks, j = [], m
        for i in range(n, 0, -1):
            chunks.append(y[j - back[i][j] : j])
            j -= back[i][j]
        return chunks[::-1]

    def actions(self, source: Sequence[str], target: Sequence[str],
                right_to_left: bool = False) -> tuple[str, ...] | None:  # fmt: skip
        """The oracle's actions that write `target` from `source` (`to_actions` of the alignment), or None where
        no alignment covers it. `right_to_left`: a reversed run's transducer, which reads the source from its
        end (its target is already reversed)."""
        chunks = self.align(tuple(source)[::-1] if right_to_left else tuple(source), target)
        return None if chunks is None else to_actions(chunks)

    def to_json(self) -> dict:
        return {"max_chunk": self.max_chunk, "table": [[c, list(ch), p] for (c, ch), p in self.table.items()]}

    @classmethod
    def from_json(cls, obj: dict) -> ChunkAligner:
        return cls({(c, tuple(ch)): p for c, ch, p in obj["table"]}, obj["max_chunk"])


def to_actions(chunks: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The oracle's actions: write each chunk's symbols, then STEP past its source symbol."""
    return tuple(a for chunk in chunks for a in (*chunk, STEP))
