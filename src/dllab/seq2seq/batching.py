"""Padding variable-length id sequences into one tensor: the batching step p2g and asr share.

p2g's `PairData` (dllab.p2g.data) and asr's token batches (dllab.asr.text.pad_tokens) both pad with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dllab.seq2seq.vocab import PAD


def pad_ids(
    seqs: Sequence[Sequence[int]], pad: int = PAD, multiple: int = 1, limit: int | None = None
) -> tuple[Tensor, Tensor]:
    """Lists of ids -> right-padded int64 (N, W) and lengths (N,).

    W is the longest length rounded up to a multiple of `multiple` (fewer distinct batch shapes, which
    oneDNN's bfloat16 kernels want), but the rounding never goes past `limit` (a model's longest sequence).
    """
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    longest = int(lengths.max()) if len(seqs) else 0
    width = -(-longest // multiple) * multiple
    if limit is not None:
        width = max(longest, min(width, limit))
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths
