"""A Transformer encoder-decoder speller (`--arch transformer`), the architecture of the strong systems of
SIGMORPHON 2020-21 (Wu et al., 2021, "Applying the Transformer to character-level transduction"): pre-norm
layers, sinusoidal positions, embeddings scaled by sqrt(d), the target embedding tied to the output layer.

    encoder   embedding * sqrt(d) + positions -> dropout -> N pre-norm self-attention / feed-forward layers
              -> layer norm
    decoder   embedding * sqrt(d) + positions -> dropout -> M pre-norm causal self-attention / cross-
              attention / feed-forward layers -> layer norm -> logits (the embedding matrix, transposed)

Decoding (the `IncrementalDecoder` methods start / step / reorder of dllab.seq2seq.decoding) reruns the
decoder over the prefix at every step: words are short (at most ~40 symbols), so the quadratic cost is small
next to the bookkeeping a key/value cache would add to this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dllab.p2g.config import TransformerConfig
from dllab.seq2seq.vocab import PAD


def sinusoids(length: int, dim: int) -> Tensor:
    """(length, dim) sinusoidal position encodings (Vaswani et al., 2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(position * freq)
    out[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return out


@dataclass
class TransformerState:
    """Decoding state: encoder memory (B, L, d), its padding (B, L) and the emitted prefix (B, t)."""

    memory: Tensor
    pad: Tensor
    prefix: Tensor


class TransformerSeq2Seq(nn.Module):
    """Batch of sources (src (B, Ls) ids, src_len (B,)) -> next-token logits over the target vocabulary."""

    max_positions = 256

    def __init__(self, src_vocab: int, tgt_vocab: int, cfg: TransformerConfig):
        super().__init__()
        if cfg.d_model % cfg.heads:
            raise ValueError(f"d_model ({cfg.d_model}) must be a multiple of heads ({cfg.heads})")
        d = cfg.d_model
        self.cfg = cfg
        self.scale = math.sqrt(d)
        self.src_embed = nn.Embedding(src_vocab, d, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, d, padding_idx=PAD)
        nn.init.normal_(self.src_embed.weight, std=d**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=d**-0.5)
        self.register_buffer("positions", sinusoids(self.max_positions, d), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        enc_layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        dec_layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True, norm_first=True)
        # enable_nested_tensor=False: the fast path's nested tensors warn with norm_first and save nothing here
        self.encoder = nn.TransformerEncoder(enc_layer, cfg.encoder_layers, nn.LayerNorm(d), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.decoder_layers, nn.LayerNorm(d))

    def _embed(self, embed: nn.Embedding, ids: Tensor) -> Tensor:
        if ids.shape[1] > self.max_positions:
            raise ValueError(f"sequences longer than {self.max_positions} symbols")
        return self.dropout(embed(ids) * self.scale + self.positions[: ids.shape[1]])  # (B, T, d)

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, L), src_len (B,) -> memory (B, L, d) and padding (B, L) True at padding."""
        pad = src == PAD
        return self.encoder(self._embed(self.src_embed, src), src_key_padding_mask=pad), pad

    def _decode(self, tgt_in: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        """tgt_in (B, T) -> logits (B, T, V), each position seeing the prefix up to itself."""
        T = tgt_in.shape[1]
        causal = torch.triu(torch.ones((T, T), dtype=torch.bool, device=tgt_in.device), diagonal=1)  # True: hidden
        out = self.decoder(self._embed(self.tgt_embed, tgt_in), memory, tgt_mask=causal,
                           tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=pad)  # fmt: skip
        return F.linear(out, self.tgt_embed.weight)  # (B, T, V), tied to the target embedding

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: tgt_in (B, T) = SOS y_1 ... (targets shifted right) -> logits (B, T, V)."""
        return self._decode(tgt_in, *self.encode(src, src_len))

    # -- IncrementalDecoder ----------------------------------------------------------------------------
    def start(self, src: tuple[Tensor, Tensor]) -> TransformerState:
        memory, pad = self.encode(*src)
        return TransformerState(memory, pad, torch.zeros((memory.shape[0], 0), dtype=torch.long, device=memory.device))

    def step(self, tokens: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """tokens (B,) -> log-probs (B, V) of the next token (the decoder reruns over the prefix)."""
        prefix = torch.cat([state.prefix, tokens[:, None]], dim=1)  # (B, t + 1)
        logits = self._decode(prefix, state.memory, state.pad)[:, -1]
        return F.log_softmax(logits.float(), dim=-1), TransformerState(state.memory, state.pad, prefix)

    def reorder(self, state: TransformerState, index: Tensor) -> TransformerState:
        return TransformerState(state.memory.index_select(0, index), state.pad.index_select(0, index),
                                state.prefix.index_select(0, index))  # fmt: skip
