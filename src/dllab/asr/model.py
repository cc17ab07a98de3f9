"""The notebook's speech recogniser: an audio Transformer encoder and three interchangeable decoders.

    log-mel (B, T, 80) -> conv1d k3 -> GELU -> conv1d k3 s2 -> GELU -> + sinusoids
                       -> pre-norm residual self-attention blocks -> LayerNorm = xa (B, S, 200), S = ceil(T/2)
    decoder "lstm":        embed -> LayerNorm -> LSTM -> cross-attention block -> LayerNorm -> logits
    decoder "transformer": embed + learned positions -> [causal self-attention, cross-attention, MLP] x N
    decoder "taylor":      as "transformer" with Taylor linear attention (dllab.attention) for the causal
                           self-attention, decoded with its constant-size recurrent state

Every attention is a `dllab.attention.MultiHeadAttention` (softmax ones as the notebook's: no key bias).
Every `ASRModel` implements `dllab.seq2seq.decoding.IncrementalDecoder`: `start` encodes the audio once and
computes each cross-attention block's keys and values once (`MultiHeadAttention.kv`); `step` consumes one
token per row, extending the self-attention KV cache (transformer), the LSTM's (h, c), or the Taylor state
(M x D and M sums) through `MultiHeadAttention.step`, so no step re-runs the prefix. `forward` (teacher
forcing) is what training uses and what the cache tests compare to.
`ModelConfig` and `DecoderKind` live in the torch-free `dllab.asr.config` and are re-exported here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dllab.asr import text as vocab
from dllab.asr.config import DecoderKind, ModelConfig  # noqa: F401 (DecoderKind re-exported)
from dllab.attention import MultiHeadAttention
from dllab.seq2seq.decoding import select_rows


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> Tensor:
    """(length, channels) sinusoidal position embeddings (sin in the first half, cos in the second)."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


def attention(dim: int, heads: int, causal: bool = False) -> MultiHeadAttention:
    """The notebook's (whisper's) softmax attention: q, k, v and output projections, the key without a bias."""
    return MultiHeadAttention(dim, heads, causal=causal, key_bias=False)


def mlp(dim: int, ff: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim))


class EncoderBlock(nn.Module):
    """Pre-norm residual self-attention + MLP."""

    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.attn_ln, self.attn = nn.LayerNorm(dim), attention(dim, heads)
        self.mlp_ln, self.mlp = nn.LayerNorm(dim), mlp(dim, ff)

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        x = x + self.attn(self.attn_ln(x), key_padding_mask=pad)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """conv1 (k3, stride 1, or 2 with `subsample` 4) -> conv2 (k3, stride 2) -> sinusoids -> blocks -> norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.subsample not in (2, 4):
            raise ValueError(f"subsample: expected 2 or 4, got {cfg.subsample!r}")
        self.stride1 = cfg.subsample // 2
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.hidden, kernel_size=3, stride=self.stride1, padding=1)
        self.conv2 = nn.Conv1d(cfg.hidden, cfg.hidden, kernel_size=3, stride=2, padding=1)
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg.hidden, cfg.heads, cfg.ff) for _ in range(cfg.encoder_layers)
        )
        self.ln_post = nn.LayerNorm(cfg.hidden)

    def forward(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, T, n_mels), feat_lens (B,) -> xa (B, S, E), pad (B, S) bool True = padding;
        S = ceil(T / 2), or ceil(ceil(T / 2) / 2) with `subsample` 4."""
        T = feats.shape[1]
        valid = torch.arange(T, device=feats.device)[None, :] < feat_lens[:, None]  # (B, T)
        # Zeroing padded frames before and after conv1 makes an utterance's encoding independent of its batch.
        x = (feats * valid[:, :, None]).transpose(1, 2)  # (B, n_mels, T)
        x = F.gelu(self.conv1(x))  # (B, E, T1), T1 = T or ceil(T / 2)
        lens = feat_lens if self.stride1 == 1 else (feat_lens - 1) // 2 + 1
        x = x * (torch.arange(x.shape[-1], device=x.device)[None, :] < lens[:, None])[:, None, :]
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, E)
        S = x.shape[1]
        x = x + sinusoids(S, x.shape[-1]).to(x)
        lens = (lens - 1) // 2 + 1  # conv2 (k 3, stride 2, padding 1) output lengths
        pad = torch.arange(S, device=x.device)[None, :] >= lens[:, None]  # (B, S)
        for block in self.blocks:
            x = block(x, pad)
        return self.ln_post(x), pad


class CrossBlock(nn.Module):
    """Pre-norm residual cross-attention to the audio + MLP; the audio keys/values are computed once."""

    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.cross_ln, self.cross = nn.LayerNorm(dim), attention(dim, heads)
        self.mlp_ln, self.mlp = nn.LayerNorm(dim), mlp(dim, ff)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], pad: Tensor) -> Tensor:
        x = x + self.cross(self.cross_ln(x), key_padding_mask=pad, kv=kv)
        return x + self.mlp(self.mlp_ln(x))


# -- decoder states (batch first everywhere, so `select_rows` reorders them) ------------------------------


@dataclass
class DecoderState:
    """What a decoder remembers between steps, for B rows.

    pad:    (B, S) audio padding mask
    cross:  per cross block, the audio keys and values (B, H, S, D), computed once per utterance
    memory: per decoder layer, the self-attention memory: a (k, v) cache (B, H, t, D) (transformer), a
            TaylorState (kv (B, H, M, D), k_sum (B, H, M)) (taylor), or (h, c) (B, 1, E) (lstm)
    steps:  tokens consumed so far (the next token's position)
    """

    pad: Tensor
    cross: list[tuple[Tensor, Tensor]]
    memory: list
    steps: int = 0


class LSTMDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab.VOCAB_SIZE, cfg.hidden)
        self.embed_ln = nn.LayerNorm(cfg.hidden)
        self.lstm = nn.LSTM(cfg.hidden, cfg.hidden, batch_first=True)
        self.blocks = nn.ModuleList([CrossBlock(cfg.hidden, cfg.heads, cfg.ff)])
        self.ln = nn.LayerNorm(cfg.hidden)

    def forward(self, tokens: Tensor, xa: Tensor, pad: Tensor) -> Tensor:
        x, _ = self.lstm(self.embed_ln(self.embed(tokens)))  # (B, L, E)
        for block in self.blocks:
            x = block(x, block.cross.kv(xa), pad)
        return self.ln(x)

    def start(self, xa: Tensor, pad: Tensor) -> DecoderState:
        B, E = xa.shape[0], xa.shape[-1]
        zeros = xa.new_zeros(B, 1, E)
        return DecoderState(pad, [b.cross.kv(xa) for b in self.blocks], [(zeros, zeros)], 0)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        h, c = state.memory[0]  # (B, 1, E) each
        x = self.embed_ln(self.embed(tokens[:, None]))  # (B, 1, E)
        x, (h, c) = self.lstm(x, (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()))
        for block, kv in zip(self.blocks, state.cross, strict=True):
            x = block(x, kv, state.pad)
        memory = [(h.transpose(0, 1), c.transpose(0, 1))]
        return self.ln(x[:, 0]), DecoderState(state.pad, state.cross, memory, state.steps + 1)


class SelfBlock(nn.Module):
    """Pre-norm residual causal self-attention: softmax with a KV cache, or Taylor with its recurrent state."""

    def __init__(self, cfg: ModelConfig, taylor: bool):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.hidden)
        if taylor:
            self.attn = MultiHeadAttention(
                cfg.hidden, cfg.taylor_heads, kind="taylor", causal=True, order=cfg.taylor_order
            )
        else:
            self.attn = attention(cfg.hidden, cfg.heads, causal=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.ln(x))

    def step(self, x: Tensor, memory) -> tuple[Tensor, object]:
        """x (B, 1, E) the newest position; memory: (k, v) (B, H, t, D), a TaylorState, or None at the start."""
        y, memory = self.attn.step(self.ln(x)[:, 0], memory)  # (B, E)
        return x + y[:, None], memory


class TransformerDecoder(nn.Module):
    """Token embedding + positions -> [causal self-attention, cross-attention + MLP] x N -> norm.

    Positions are learned (the notebook's) or sinusoidal, `cfg.max_tokens` of them: the config's longest
    token sequence (SOS and EOS included)."""

    def __init__(self, cfg: ModelConfig, taylor: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab.VOCAB_SIZE, cfg.hidden)
        if cfg.positions == "learned":
            self.positions = nn.Parameter(torch.randn(cfg.max_tokens, cfg.hidden) * 0.02)
        elif cfg.positions == "sinusoidal":
            self.register_buffer("positions", sinusoids(cfg.max_tokens, cfg.hidden), persistent=False)
        else:
            raise ValueError(f"positions: expected learned or sinusoidal, got {cfg.positions!r}")
        self.self_blocks = nn.ModuleList(SelfBlock(cfg, taylor) for _ in range(cfg.decoder_layers))
        self.blocks = nn.ModuleList(
            CrossBlock(cfg.hidden, cfg.heads, cfg.ff) for _ in range(cfg.decoder_layers)
        )
        self.ln = nn.LayerNorm(cfg.hidden)

    def forward(self, tokens: Tensor, xa: Tensor, pad: Tensor) -> Tensor:
        L = tokens.shape[1]
        if L > self.positions.shape[0]:
            raise ValueError(f"tokens: {L} positions, the decoder has {self.positions.shape[0]}")
        x = self.embed(tokens) + self.positions[:L]  # (B, L, E)
        for self_block, block in zip(self.self_blocks, self.blocks, strict=True):
            x = block(self_block(x), block.cross.kv(xa), pad)
        return self.ln(x)

    def start(self, xa: Tensor, pad: Tensor) -> DecoderState:
        return DecoderState(pad, [b.cross.kv(xa) for b in self.blocks], [None] * len(self.blocks), 0)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        position = min(state.steps, self.positions.shape[0] - 1)
        x = self.embed(tokens[:, None]) + self.positions[position]  # (B, 1, E)
        memory = []
        for self_block, block, kv, mem in zip(
            self.self_blocks, self.blocks, state.cross, state.memory, strict=True
        ):
            x, mem = self_block.step(x, mem)
            x = block(x, kv, state.pad)
            memory.append(mem)
        return self.ln(x[:, 0]), DecoderState(state.pad, state.cross, memory, state.steps + 1)


# Before asr used dllab.attention.MultiHeadAttention its own attention class named the projections
# query / key / value / out: checkpoints saved then load under the new names (the same weights, the same maths).
_OLD_PROJECTION = re.compile(r"\.(?:attn|cross)\.(query|key|value|out)\.(?:weight|bias)$")
_NEW_PROJECTION = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}


def _rename_old_projections(module, state_dict, prefix, *args) -> None:
    """A load_state_dict pre-hook: old projection names -> MultiHeadAttention's, in place."""
    for name in [k for k in state_dict if k.startswith(prefix)]:
        match = _OLD_PROJECTION.search(name)
        if match:
            start, end = match.span(1)
            state_dict[name[:start] + _NEW_PROJECTION[match[1]] + name[end:]] = state_dict.pop(name)


class ASRModel(nn.Module):
    """Encoder + decoder; teacher-forced `forward` and the `IncrementalDecoder` methods.

    A source batch is a dict with "feats" (B, T, n_mels) and "feat_lens" (B,) (as `SpeechData.batch` makes).
    """

    def __init__(self, cfg: ModelConfig = ModelConfig()):  # noqa: B008 (a frozen dataclass)
        super().__init__()
        if cfg.max_tokens < 3:
            raise ValueError(
                f"max_tokens: expected >= 3 (SOS, a character, EOS), got {cfg.max_tokens} "
                "(0 means 'derived from the data': dllab.asr.experiment.resolve_lengths fills it in)"
            )
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg)
        if cfg.decoder == "lstm":
            self.decoder: LSTMDecoder | TransformerDecoder = LSTMDecoder(cfg)
        elif cfg.decoder in ("transformer", "taylor"):
            self.decoder = TransformerDecoder(cfg, taylor=cfg.decoder == "taylor")
        else:
            raise ValueError(f"decoder: expected lstm, transformer or taylor, got {cfg.decoder!r}")
        self.head = nn.Linear(cfg.hidden, vocab.VOCAB_SIZE)
        if not 0.0 <= cfg.ctc_weight < 1.0:
            raise ValueError(f"ctc_weight: expected a value in [0, 1), got {cfg.ctc_weight}")
        # Joint CTC-attention (Kim, Hori & Watanabe 2017): a CTC head on the encoder, PAD as the blank.
        self.ctc_head = nn.Linear(cfg.hidden, vocab.VOCAB_SIZE) if cfg.ctc_weight > 0 else None
        self.register_load_state_dict_pre_hook(_rename_old_projections)

    def forward(self, feats: Tensor, feat_lens: Tensor, tokens: Tensor, with_ctc: bool = False):
        """Teacher forcing: tokens (B, L) inputs (from `<`) -> logits (B, L, V) of the next tokens.

        With `with_ctc` (and a CTC head) also the encoder's CTC log-probabilities (S, B, V) and lengths (B,).
        """
        xa, pad = self.encoder(feats, feat_lens)
        logits = self.head(self.decoder(tokens, xa, pad))
        if not with_ctc or self.ctc_head is None:
            return logits
        ctc = F.log_softmax(self.ctc_head(xa).float(), dim=-1).transpose(0, 1)  # (S, B, V)
        return logits, ctc, (~pad).sum(dim=1)

    # -- IncrementalDecoder --------------------------------------------------------------------------------
    def start(self, src: dict[str, Tensor]) -> DecoderState:
        xa, pad = self.encoder(src["feats"], src["feat_lens"])
        return self.decoder.start(xa, pad)

    def start_with_ctc(self, src: dict[str, Tensor]) -> tuple[DecoderState, Tensor, Tensor]:
        """`start` plus the CTC head's log-probabilities (B, S, V) float32 and frame counts (B,), from one
        pass of the encoder (for `dllab.seq2seq.ctc.JointCTCDecoder`). Needs a CTC head."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (it was trained with model.ctc_weight = 0)")
        xa, pad = self.encoder(src["feats"], src["feat_lens"])
        ctc = F.log_softmax(self.ctc_head(xa).float(), dim=-1)  # (B, S, V)
        return self.decoder.start(xa, pad), ctc, (~pad).sum(dim=1)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        h, state = self.decoder.step(tokens, state)
        return F.log_softmax(self.head(h).float(), dim=-1), state  # (B, V)

    def reorder(self, state: DecoderState, index: Tensor) -> DecoderState:
        return select_rows(state, index)


def loss_fn(
    model: ASRModel, batch: dict[str, Tensor], label_smoothing: float = 0.1, ctc_weight: float = 0.0
) -> Tensor:
    """Label-smoothed next-token cross-entropy, padding ignored (the notebook scored padding too).

    With `ctc_weight` w > 0 (the model needs a CTC head: `ModelConfig.ctc_weight` > 0) the loss is
    (1 - w) CE + w CTC, the CTC loss of the encoder's frames against the transcript (no `<` or `>`), each
    utterance's loss divided by its length and averaged, as `F.ctc_loss` does.
    """
    tokens = batch["tokens"]
    if ctc_weight <= 0:
        logits = model(batch["feats"], batch["feat_lens"], tokens[:, :-1])  # (B, L-1, V)
    else:
        logits, ctc_logp, ctc_lens = model(batch["feats"], batch["feat_lens"], tokens[:, :-1], with_ctc=True)
    ce = F.cross_entropy(
        logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=vocab.PAD, label_smoothing=label_smoothing
    )
    if ctc_weight <= 0:
        return ce
    targets = tokens[:, 1:]
    target_lens = (targets != vocab.PAD).sum(dim=1) - 1  # drop EOS
    targets = targets.masked_fill((targets == vocab.EOS) | (targets == vocab.PAD), vocab.PAD)
    ctc = F.ctc_loss(ctc_logp, targets, ctc_lens, target_lens, blank=vocab.PAD, zero_infinity=True)
    return (1 - ctc_weight) * ce + ctc_weight * ctc


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
