"""The phoneme-to-spelling models: an LSTM encoder-decoder with optional Bahdanau (additive) attention, as in
the 2024-25 homework (Q3), and an ensemble of them.

    encoder   embedding -> dropout -> bidirectional LSTM (H/2 per direction) over packed sequences
              -> dropout; the two directions' final (h, c) are concatenated to initialise the decoder
    decoder   embedding -> dropout -> LSTM (H) -> [Bahdanau attention] -> dropout -> linear -> logits

With `layers` > 1 (beyond the homework) both LSTMs are stacked, dropout between layers, and decoder layer
l starts from encoder layer l's final states.

Bahdanau attention at decoder step t over encoder outputs h_i (padding masked):
    e_ti = vᵀ tanh(W_s s_t + W_h h_i),  a_t = softmax_i(e_t),  c_t = Σ_i a_ti h_i,
    s̃_t = tanh(W_out [c_t; s_t])

Training runs the decoder LSTM over the whole (teacher-forced) target at once; since the attention output
does not feed back into the LSTM, the attention for all steps is computed in one batched op. Decoding uses
the `IncrementalDecoder` methods start / step / reorder (dllab.seq2seq.decoding).

    LSTMSeq2Seq       the model (LSTMConfig in the torch-free `dllab.p2g.config`)
    EnsembleDecoder   several models decoded together: the mean of their next-letter distributions
    build_model       the model a P2GConfig describes (this LSTM, or dllab.p2g.transformer's Transformer)
    sequence_loss     the teacher-forced cross-entropy, padding ignored
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dllab.p2g.cells import lstm_cell, tanh
from dllab.p2g.config import LSTMConfig, P2GConfig
from dllab.seq2seq.decoding import IncrementalDecoder
from dllab.seq2seq.vocab import PAD, Vocab


class BahdanauAttention(nn.Module):
    """e_ti = vᵀ tanh(W_s s_t + W_h h_i), computed as 2vᵀσ(2 W_s s_t + 2 W_h h_i): the two differ by the constant
    Σv, which cancels in the softmax over i, and the sigmoid form skips torch's slow CPU tanh (see `tanh`)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.w_h = nn.Linear(hidden, hidden, bias=False)  # applied once per source: see `keys`
        self.w_s = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.w_out = nn.Linear(2 * hidden, hidden)

    def keys(self, enc: Tensor) -> Tensor:
        """2 W_h h_i for all source positions (the factor of the sigmoid form): (B, L, H) -> (B, L, H)."""
        return self.w_h(enc) * 2

    def forward(self, s: Tensor, enc: Tensor, keys: Tensor, pad: Tensor) -> tuple[Tensor, Tensor]:
        """s (B, T, H) decoder states, enc (B, L, H), keys (B, L, H) from `keys`, pad (B, L) True at padding.

        Returns s̃ (B, T, H) and the attention weights (B, T, L) (exactly 0 at padding)."""
        query = self.w_s(s) * 2  # (B, T, H)
        hidden = torch.sigmoid(query[:, :, None] + keys[:, None])  # (B, T, L, H): (tanh(W_s s + W_h h) + 1) / 2
        scores = F.linear(hidden, self.v.weight * 2).squeeze(-1)  # (B, T, L) = vᵀtanh(...) + Σv
        scores = scores.masked_fill(pad[:, None], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, L)
        context = weights @ enc  # (B, T, H)
        return tanh(self.w_out(torch.cat([context, s], dim=-1))), weights


@dataclass
class LSTMState:
    """Decoding state: encoder outputs / keys / padding (batch first) and the decoder LSTM's (h, c)."""

    enc: Tensor  # (B, L, H)
    keys: Tensor | None  # (B, L, H) W_h h_i, None without attention
    pad: Tensor  # (B, L) bool, True at padding
    h: Tensor  # (layers, B, H)
    c: Tensor  # (layers, B, H)
    gates: Tensor | None = None  # (V, 4H) eval-mode lookup of the first decoder layer's input gates


class LSTMSeq2Seq(nn.Module):
    """Batch of sources (src (B, Ls) ids, src_len (B,)) -> next-token logits over the target vocabulary."""

    def __init__(self, src_vocab: int, tgt_vocab: int, cfg: LSTMConfig):
        super().__init__()
        if cfg.hidden % 2:
            raise ValueError(f"hidden must be even (two encoder directions), got {cfg.hidden}")
        if cfg.layers < 1:
            raise ValueError(f"layers must be at least 1, got {cfg.layers}")
        H = cfg.hidden
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab, H, padding_idx=PAD)
        between = cfg.dropout if cfg.layers > 1 else 0.0
        self.encoder = nn.LSTM(H, H // 2, cfg.layers, batch_first=True, bidirectional=True, dropout=between)
        self.tgt_embed = nn.Embedding(tgt_vocab, H, padding_idx=PAD)
        self.decoder = nn.LSTM(H, H, cfg.layers, batch_first=True, dropout=between)
        self.attention = BahdanauAttention(H) if cfg.attn else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.generator = nn.Linear(H, tgt_vocab)

    # -- encoder ---------------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_len: Tensor) -> LSTMState:
        """src (B, L) ids, src_len (B,) -> state with enc (B, L, H) and the decoder's initial (h, c)."""
        emb = self.dropout(self.src_embed(src))  # (B, L, H)
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.encoder(packed)  # h, c: (2 layers, B, H/2), per layer forward then backward
        enc, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, L, H)
        enc = self.dropout(enc)
        h = torch.cat([h[0::2], h[1::2]], dim=-1)  # (layers, B, H)
        c = torch.cat([c[0::2], c[1::2]], dim=-1)
        keys = self.attention.keys(enc) if self.attention is not None else None
        return LSTMState(enc, keys, src == PAD, h, c)

    # -- decoder ---------------------------------------------------------------------------------------
    def _decode(self, tokens: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """tokens (B, T) -> logits (B, T, V) and the state after the last token."""
        emb = self.dropout(self.tgt_embed(tokens))  # (B, T, H)
        s, (h, c) = self.decoder(emb, (state.h, state.c))  # (B, T, H)
        if self.attention is not None:
            assert state.keys is not None
            s, _ = self.attention(s, state.enc, state.keys, state.pad)
        logits = self.generator(self.dropout(s))  # (B, T, V)
        return logits, LSTMState(state.enc, state.keys, state.pad, h, c)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: tgt_in (B, T) = SOS y_1 ... (targets shifted right) -> logits (B, T, V)."""
        logits, _ = self._decode(tgt_in, self.encode(src, src_len))
        return logits

    def attention_weights(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """The attention weights (B, T, Ls) under teacher forcing (for tests and plots)."""
        if self.attention is None:
            raise ValueError("this model has no attention (attn=False)")
        state = self.encode(src, src_len)
        s, _ = self.decoder(self.dropout(self.tgt_embed(tgt_in)), (state.h, state.c))
        return self.attention(s, state.enc, state.keys, state.pad)[1]

    # -- IncrementalDecoder ----------------------------------------------------------------------------
    def start(self, src: tuple[Tensor, Tensor]) -> LSTMState:
        state = self.encode(*src)
        if not self.training:
            # Without dropout the first layer's input gates depend on the token alone: W_ih E[y] + b_ih + b_hh
            # for every target symbol, once per decode, turns that matmul into a row lookup per step.
            state.gates = torch.addmm(
                self.decoder.bias_ih_l0 + self.decoder.bias_hh_l0, self.tgt_embed.weight, self.decoder.weight_ih_l0.t()
            )  # (V, 4H)
        return state

    def _cells(self, tokens: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, Tensor]:
        """One eval-mode decoder LSTM step as explicit cells (the torch.nn.LSTM equations, gates i f g o),
        the first layer's input gates looked up in `state.gates`: tokens (B,) -> s (B, H), h, c (layers, B, H)."""
        hs, cs = [], []
        x = None
        for layer in range(self.cfg.layers):
            w_hh = getattr(self.decoder, f"weight_hh_l{layer}")
            if layer == 0:
                gates = torch.addmm(state.gates.index_select(0, tokens), state.h[0], w_hh.t())  # (B, 4H)
            else:
                bias = getattr(self.decoder, f"bias_ih_l{layer}") + getattr(self.decoder, f"bias_hh_l{layer}")
                gates = torch.addmm(bias, x, getattr(self.decoder, f"weight_ih_l{layer}").t())
                gates = gates.addmm_(state.h[layer], w_hh.t())
            x, c = lstm_cell(gates, state.c[layer])
            hs.append(x)
            cs.append(c)
        return x, torch.stack(hs), torch.stack(cs)

    def step(self, tokens: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """tokens (B,) -> log-probs (B, V), one LSTM step (the prefix is in (h, c))."""
        if state.gates is None or self.training:
            logits, state = self._decode(tokens[:, None], state)
            return F.log_softmax(logits[:, 0].float(), dim=-1), state
        s, h, c = self._cells(tokens, state)  # (B, H)
        if self.attention is not None:
            assert state.keys is not None
            s = self.attention(s[:, None], state.enc, state.keys, state.pad)[0][:, 0]
        logits = self.generator(s)  # eval mode: no dropout
        return F.log_softmax(logits.float(), dim=-1), LSTMState(state.enc, state.keys, state.pad, h, c, state.gates)

    def reorder(self, state: LSTMState, index: Tensor) -> LSTMState:
        keys = state.keys.index_select(0, index) if state.keys is not None else None
        return LSTMState(
            state.enc.index_select(0, index),
            keys,
            state.pad.index_select(0, index),
            state.h.index_select(1, index),
            state.c.index_select(1, index),
            state.gates,
        )


def sequence_loss(logits: Tensor, gold: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over non-PAD target tokens: logits (B, T, V), gold (B, T)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=PAD, label_smoothing=label_smoothing
    )


def build_model(cfg: P2GConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> nn.Module:
    """The LSTM speller (`cfg.model`), the Transformer (`cfg.arch == "transformer"`, `cfg.transformer`) or the
    hard-attention transducer (`cfg.arch == "transducer"`, `cfg.model`; its target vocabulary holds STEP)."""
    if cfg.arch == "transformer":
        from dllab.p2g.transformer import TransformerSeq2Seq

        return TransformerSeq2Seq(len(src_vocab), len(tgt_vocab), cfg.transformer)
    if cfg.arch == "transducer":
        from dllab.p2g.transducer import HardAttentionTransducer

        return HardAttentionTransducer(len(src_vocab), tgt_vocab, cfg.model, right_to_left=cfg.data.reverse)
    return LSTMSeq2Seq(len(src_vocab), len(tgt_vocab), cfg.model)


# An ensemble of IncrementalDecoders is itself an IncrementalDecoder: the mean of the members' next-token
# distributions, so every decoding strategy works on it unchanged.


class EnsembleDecoder:
    """log p(y | prefix) = log mean_m p_m(y | prefix) over the member models (same target vocabulary)."""

    def __init__(self, members: Sequence[IncrementalDecoder]):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    def start(self, src: Any) -> list[Any]:
        return [m.start(src) for m in self.members]

    def step(self, tokens: Tensor, state: list[Any]) -> tuple[Tensor, list[Any]]:
        logps, states = [], []
        for member, s in zip(self.members, state, strict=True):
            logp, s = member.step(tokens, s)  # (B, V)
            logps.append(logp)
            states.append(s)
        return torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(logps)), states

    def reorder(self, state: list[Any], index: Tensor) -> list[Any]:
        return [m.reorder(s, index) for m, s in zip(self.members, state, strict=True)]
