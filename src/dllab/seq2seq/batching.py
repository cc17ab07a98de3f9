"""Variable-length sequence pairs held as padded tensors in memory, batched by index.

`PairData` is the seq2seq counterpart of `data.images.TensorData`: the engine's `fit` asks it for
`batch(idx)`, which gathers rows with one indexing op per tensor and trims the padding to the longest
sequence of the batch. Nothing iterates over examples in Python during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dllab.seq2seq.vocab import PAD


def pad_ids(seqs: Sequence[Sequence[int]], pad: int = PAD) -> tuple[Tensor, Tensor]:
    """Lists of ids -> padded int64 (N, L_max) and lengths (N,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


class PairData:
    """Source / target id sequences: src (N, Ls) + src_len (N,), tgt (N, Lt) + tgt_len (N,), PAD-padded.

    `batch(idx)` -> (src (B, ls), src_len (B,), tgt (B, lt), tgt_len (B,)) with ls, lt the batch maxima."""

    def __init__(self, src: Tensor, src_len: Tensor, tgt: Tensor, tgt_len: Tensor):
        if not (len(src) == len(src_len) == len(tgt) == len(tgt_len)):
            raise ValueError("src, src_len, tgt and tgt_len need the same number of rows")
        self.src, self.src_len, self.tgt, self.tgt_len = src, src_len, tgt, tgt_len

    @classmethod
    def from_ids(cls, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]) -> PairData:
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} sources but {len(tgt)} targets")
        if any(len(s) == 0 for s in src):
            raise ValueError("empty source sequence")
        return cls(*pad_ids(src), *pad_ids(tgt))

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        src_len, tgt_len = self.src_len[idx], self.tgt_len[idx]
        ls, lt = int(src_len.max()), int(tgt_len.max())
        return self.src[idx, :ls], src_len, self.tgt[idx, :lt], tgt_len

    def length_keys(self) -> Tensor:
        """(N,) the sort key of `fit`'s length buckets: target length, then source length."""
        return self.tgt_len * (int(self.src_len.max()) + 1) + self.src_len

    def subset(self, n: int) -> PairData:
        """The first `n` pairs."""
        return PairData(self.src[:n], self.src_len[:n], self.tgt[:n], self.tgt_len[:n])
