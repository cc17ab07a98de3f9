"""A hard-monotonic-attention transducer speller (`--arch transducer`), after Aharoni & Goldberg (2017) and
the neural transducer of Makarov & Clematide (2018) that is SIGMORPHON 2021 Task 1's baseline.

The decoder reads the source one symbol at a time. At each step it sees the previous action and the encoder
state of the symbol under its pointer, and it chooses an action: write a target symbol, or STEP to the next
source symbol. Once the pointer has passed the last source symbol the output ends. Training follows the
static oracle of `dllab.p2g.align`: the actions that spell the training word's expectation-maximisation
alignment. Where the soft-attention speller has to learn where to look from 800 words, this one is told, so it
learns more from few words (SIGMORPHON low, one model, greedy, dev WER: ice 0.18 against 0.36).

    HardAttentionTransducer(src_vocab, tgt_vocab, cfg)   forward(src, src_len, tgt_in) -> logits, and the
                                                         IncrementalDecoder start / step / reorder

Its target vocabulary holds STEP (`dllab.p2g.align.STEP`) beside the target symbols; `to_text` drops it. A
right-to-left transducer (`--data.reverse`, for `rerank_both_directions`) reads the source from its end, so
that it writes the reversed target monotonically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dllab.p2g.align import STEP
from dllab.p2g.cells import lstm_cell
from dllab.p2g.config import LSTMConfig
from dllab.seq2seq.vocab import EOS, PAD, SOS, UNK, Vocab

_NEG = -1e4  # a masked action's logit: exp(-1e4) is 0 in float32, and the loss stays finite


@dataclass
class TransducerState:
    enc: Tensor  # (B, L + 1, H): the encoder states, then each row's end-of-source vector at its length
    src_len: Tensor  # (B,)
    ptr: Tensor  # (B,) the source position under the pointer
    h: Tensor  # (1, B, H)
    c: Tensor  # (1, B, H)


class HardAttentionTransducer(nn.Module):
    """Batch of sources (src (B, L) ids, src_len (B,)) -> next-action logits over the target vocabulary."""

    emits_steps = True  # its outputs hold one STEP per source symbol: decoding allows for them in max_len

    def __init__(self, src_vocab: int, tgt_vocab: Vocab, cfg: LSTMConfig, right_to_left: bool = False):
        super().__init__()
        self.right_to_left = right_to_left  # read the source from its last symbol (a --data.reverse run)
        if cfg.hidden % 2:
            raise ValueError(f"hidden must be even (two encoder directions), got {cfg.hidden}")
        if STEP not in tgt_vocab.index:
            raise ValueError(f"the transducer's target vocabulary needs the {STEP} action")
        H, E = cfg.hidden, cfg.hidden // 2
        self.cfg, self.step_id = cfg, tgt_vocab.index[STEP]
        self.src_embed = nn.Embedding(src_vocab, E, padding_idx=PAD)
        self.encoder = nn.LSTM(E, H // 2, batch_first=True, bidirectional=True)
        self.end = nn.Parameter(torch.zeros(H))  # what the pointer sees past the last source symbol
        self.tgt_embed = nn.Embedding(len(tgt_vocab), E, padding_idx=PAD)
        self.decoder = nn.LSTM(E + H, H, batch_first=True)
        self.generator = nn.Linear(2 * H, len(tgt_vocab))
        self.dropout = nn.Dropout(cfg.dropout)
        never = torch.zeros(len(tgt_vocab), dtype=torch.bool)
        never[[PAD, SOS, UNK, EOS]] = True
        self.register_buffer("inside", never, persistent=False)  # actions masked before the end: all specials
        self.register_buffer("at_end", torch.ones_like(never).index_fill_(0, torch.tensor([EOS]), False),
                             persistent=False)  # fmt: skip  # past the end: everything but EOS

    def encode(self, src: Tensor, src_len: Tensor) -> Tensor:
        """src (B, L) ids -> (B, L + 1, H): the encoder states, then each row's end vector at its length."""
        if self.right_to_left:  # each row's symbols reversed, padding left where it is
            at = src_len[:, None] - 1 - torch.arange(src.shape[1], device=src.device)[None, :]
            src = src.gather(1, at.clamp(min=0)).masked_fill(at < 0, PAD)
        emb = self.dropout(self.src_embed(src))
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        enc, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        enc = self.dropout(torch.cat([enc, enc.new_zeros(enc.shape[0], 1, enc.shape[2])], 1))  # (B, L + 1, H)
        at_end = torch.arange(enc.shape[1], device=src.device)[None, :] == src_len[:, None]
        return torch.where(at_end[..., None], self.end.to(enc.dtype), enc)

    def _mask(self, logits: Tensor, ptr: Tensor, src_len: Tensor) -> Tensor:
        done = (ptr >= src_len)[..., None]  # (..., 1)
        return logits.masked_fill(torch.where(done, self.at_end, self.inside), _NEG)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: tgt_in (B, T) = SOS a_1 ... (the oracle's actions shifted right) -> logits (B, T, V).
        The pointer at step t counts the STEPs among the actions before it."""
        enc = self.encode(src, src_len)
        ptr = torch.minimum((tgt_in == self.step_id).cumsum(1), src_len[:, None])  # (B, T)
        seen = enc.gather(1, ptr[..., None].expand(-1, -1, enc.shape[2]))  # (B, T, H)
        s, _ = self.decoder(torch.cat([self.dropout(self.tgt_embed(tgt_in)), seen], -1))
        logits = self.generator(self.dropout(torch.cat([s, seen], -1)))
        return self._mask(logits, ptr, src_len[:, None])

    # -- IncrementalDecoder ----------------------------------------------------------------------------
    def start(self, src: tuple[Tensor, Tensor]) -> TransducerState:
        tokens, src_len = src
        enc = self.encode(tokens, src_len)
        B, H = enc.shape[0], self.cfg.hidden
        zeros = enc.new_zeros(1, B, H)
        return TransducerState(enc, src_len, torch.zeros_like(src_len), zeros, zeros)

    def step(self, tokens: Tensor, state: TransducerState) -> tuple[Tensor, TransducerState]:
        """tokens (B,): the previous actions (SOS first) -> log-probs (B, V) of the next."""
        ptr = torch.minimum(state.ptr + (tokens == self.step_id).long(), state.src_len)
        seen = state.enc[torch.arange(len(ptr), device=ptr.device), ptr]  # (B, H)
        x = torch.cat([self.dropout(self.tgt_embed(tokens)), seen], -1)
        d = self.decoder
        gates = F.linear(x, d.weight_ih_l0, d.bias_ih_l0) + F.linear(state.h[0], d.weight_hh_l0, d.bias_hh_l0)
        h, c = lstm_cell(gates, state.c[0])
        logits = self._mask(self.generator(self.dropout(torch.cat([h, seen], -1))), ptr, state.src_len)
        return F.log_softmax(logits.float(), dim=-1), TransducerState(state.enc, state.src_len, ptr, h[None], c[None])

    def reorder(self, state: TransducerState, index: Tensor) -> TransducerState:
        return TransducerState(
            state.enc.index_select(0, index), state.src_len.index_select(0, index), state.ptr.index_select(0, index),
            state.h.index_select(1, index), state.c.index_select(1, index),
        )  # fmt: skip
