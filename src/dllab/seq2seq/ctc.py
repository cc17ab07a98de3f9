"""Joint CTC/attention decoding (Watanabe et al. 2017, "Hybrid CTC/attention architecture for end-to-end speech
recognition"; ESPnet's default decoding): every prefix is rescored by its CTC prefix probability.

    JointCTCDecoder(model, ctc_weight, blank, sos, eos)   an `IncrementalDecoder` around a model with a CTC head

The wrapped model gives the attention log-probabilities log p_att(c | h) of the next token c after a prefix h;
its encoder's CTC head gives per-frame log-probabilities, from which the CTC prefix probability p_ctc(h...) (the
probability that the CTC output *starts with* h) is computed. `step` returns, for every next token c,

    (1 - w) log p_att(c | h) + w (log p_ctc(h + c ...) - log p_ctc(h ...))      (c = EOS: log p_ctc(h), the whole)

so a hypothesis's summed score is (1 - w) log p_att(h) + w log p_ctc(h): any strategy of
`dllab.seq2seq.decoding` (greedy, beam search) runs on it unchanged. CTC's monotonic alignment is what stops
the attention decoder's typical failures: a repeated phrase or a skipped one has a tiny CTC probability, and
EOS scores well only once the prefix covers the whole audio.

The prefix probabilities follow the paper's recursion over frames t (r^n_t(h): h has been emitted by frame t
and frame t emits its last token; r^b_t(h): frame t is a blank), here in closed form: each recursion is
linear, so a row's whole time axis is two `logcumsumexp`s, with no Python loop over frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import LongTensor, Tensor

from dllab.seq2seq.decoding import select_rows

State = Any


class CTCIncrementalDecoder(Protocol):
    """An `IncrementalDecoder` whose encoder also has a CTC head."""

    def start_with_ctc(self, src: Any) -> tuple[State, Tensor, Tensor]:
        """`start(src)` plus the CTC log-probabilities (B, T, V) and the frames of each source (B,)."""
        ...

    def step(self, tokens: LongTensor, state: State) -> tuple[Tensor, State]: ...

    def reorder(self, state: State, index: LongTensor) -> State: ...


class CTCFrames:
    """The CTC log-probabilities of a batch's sources, shared by all of their rows (never reordered).

    x:    (B, T, V) float32 log-probabilities; frames past a source's end are 0 (never read: scores stop at
          its last frame, and 0 keeps the cumulative sums finite)
    lens: (B,) frames of each source
    """

    __slots__ = ("lens", "x")

    def __init__(self, logp: Tensor, lens: Tensor):
        T = logp.shape[1]
        valid = torch.arange(T, device=logp.device)[None, :] < lens[:, None]  # (B, T)
        self.x = logp.float().masked_fill(~valid[:, :, None], 0.0)
        self.lens = lens.long()


@dataclass
class JointState:
    """The wrapped model's state plus each row's CTC prefix (batch first: `select_rows` reorders it).

    inner:  the wrapped model's state
    frames: the batch's CTC log-probabilities (`select_rows` leaves it as it is)
    source: (R,) the source (row of `frames`) of each row
    r:      (R, T + 1, 2) float64 log r^n, log r^b of the row's prefix; index 0 is a virtual frame before the
            audio, index t + 1 is frame t
    psi:    (R,) float64 log prefix probability of the row's prefix (0 for the empty one)
    last:   (R,) its last token (-1 for the empty prefix)
    """

    inner: Any
    frames: CTCFrames
    source: Tensor
    r: Tensor
    psi: Tensor
    last: Tensor


def _logcumsumexp(x: Tensor, dim: int) -> Tensor:
    # Where every term so far is -inf the result must be -inf, never NaN.
    out = torch.logcumsumexp(x, dim=dim)
    return out.masked_fill(torch.isnan(out), -torch.inf)


class JointCTCDecoder:
    """Joint CTC/attention next-token scores around `model` (see the module docstring), an IncrementalDecoder.

    ctc_weight w in [0, 1]: 0 gives the model's own log-probabilities, 1 decodes by CTC prefix scores alone.
    blank is the CTC blank id; sos and blank are never emitted (score -inf). Tokens fed to `step` after EOS
    (greedy decoding keeps finished rows for a while) leave a row's prefix as it is.
    The scores are log-probabilities only for w = 0: use greedy or beam search with them, not sampling.
    """

    def __init__(self, model: CTCIncrementalDecoder, ctc_weight: float, blank: int, sos: int, eos: int):
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        self.model = model
        self.weight = float(ctc_weight)
        self.blank, self.sos, self.eos = blank, sos, eos

    def __repr__(self) -> str:
        return f"JointCTCDecoder(ctc_weight={self.weight})"

    def start(self, src: Any) -> JointState:
        inner, logp, lens = self.model.start_with_ctc(src)
        frames = CTCFrames(logp, lens)
        B, T, _ = logp.shape
        r = torch.full((B, T + 1, 2), -torch.inf, dtype=torch.float64, device=logp.device)
        r[:, 0, 1] = 0.0  # before the audio the empty prefix has probability 1 (counted as a blank)
        r[:, 1:, 1] = frames.x[:, :, self.blank].double().cumsum(1)  # then only blanks
        psi = torch.zeros(B, dtype=torch.float64, device=logp.device)
        last = torch.full((B,), -1, dtype=torch.long, device=logp.device)
        return JointState(inner, frames, torch.arange(B, device=logp.device), r, psi, last)

    def reorder(self, state: JointState, index: LongTensor) -> JointState:
        rows = select_rows((state.source, state.r, state.psi, state.last), index)
        return JointState(self.model.reorder(state.inner, index), state.frames, *rows)

    def step(self, tokens: LongTensor, state: JointState) -> tuple[Tensor, JointState]:
        """tokens (R,) the last emitted tokens -> joint scores (R, V) of the next token, the new state."""
        logp, inner = self.model.step(tokens, state.inner)
        x = state.frames.x.index_select(0, state.source)  # (R, T, V)
        lens = state.frames.lens.index_select(0, state.source)  # (R,)
        r, psi, last = state.r, state.psi, state.last
        grow = (tokens != self.sos) & (tokens != self.eos) & (tokens != self.blank)  # (R,) the prefix grows
        if bool(grow.any()):
            new_r, new_psi = self._extend(r, last, tokens, x, lens)
            r = torch.where(grow[:, None, None], new_r, r)
            psi = torch.where(grow, new_psi, psi)
            last = torch.where(grow, tokens, last)
        ctc = (self._candidates(r, last, x, lens) - psi[:, None]).to(logp.dtype)  # (R, V)
        joint = logp if self.weight == 0.0 else (1.0 - self.weight) * logp + self.weight * ctc
        joint = joint.clone()
        joint[:, self.sos] = -torch.inf
        joint[:, self.blank] = -torch.inf
        return joint, JointState(inner, state.frames, state.source, r, psi, last)

    @staticmethod
    def _phi(r: Tensor) -> tuple[Tensor, Tensor]:
        """(R, T) log phi_t twice: the probability that the prefix is complete by frame t-1, so that a token may
        start at frame t; any path (r^n + r^b), and blank-ended paths only (r^b: what a token repeating the
        prefix's last one needs, a blank between the two)."""
        return torch.logaddexp(r[:, :-1, 0], r[:, :-1, 1]), r[:, :-1, 1]

    def _extend(self, r: Tensor, last: Tensor, c: Tensor, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """r (R, T + 1, 2) of prefixes g, their last tokens (R,) -> r (R, T + 1, 2) and the log prefix
        probability (R,) of g + c, c (R,)."""
        R, T = x.shape[:2]
        both, blank_only = self._phi(r)
        phi = torch.where((c == last)[:, None], blank_only, both)  # (R, T)
        xc = x.gather(2, c[:, None, None].expand(R, T, 1)).squeeze(2).double()  # (R, T) log y_t(c)
        xb = x[:, :, self.blank].double()  # (R, T) log y_t(blank)
        zero = torch.zeros(R, 1, dtype=torch.float64, device=r.device)
        C = torch.cat([zero, xc.cumsum(1)], dim=1)  # (R, T + 1): C[t + 1] = sum of log y_u(c), u <= t
        Bl = torch.cat([zero, xb.cumsum(1)], dim=1)
        # r^n_t = (r^n_{t-1} + phi_t) y_t(c), r^n_{-1} = 0  =>  log r^n_t = C_t + logcumsumexp_s(log phi_s - C_{s-1})
        rn = C[:, 1:] + _logcumsumexp(phi - C[:, :-1], dim=1)  # (R, T)
        # r^b_t = (r^b_{t-1} + r^n_{t-1}) y_t(blank), r^b_{-1} = 0: the same form with r^n_{s-1} for phi_s
        rn_before = torch.cat([torch.full_like(zero, -torch.inf), rn[:, :-1]], dim=1)  # (R, T)
        rb = Bl[:, 1:] + _logcumsumexp(rn_before - Bl[:, :-1], dim=1)
        new = torch.full_like(r, -torch.inf)  # at the virtual frame a non-empty prefix has probability 0
        new[:, 1:, 0], new[:, 1:, 1] = rn, rb
        inside = torch.arange(T, device=r.device)[None, :] < lens[:, None]  # (R, T)
        psi = torch.logsumexp((phi + xc).masked_fill(~inside, -torch.inf), dim=1)  # (R,) sum_t phi_t y_t(c)
        return new, psi

    def _candidates(self, r: Tensor, last: Tensor, x: Tensor, lens: Tensor) -> Tensor:
        """(R, V) float64 log prefix probability of prefix + c for every token c (c = EOS: of the prefix as
        a whole, at the source's last frame)."""
        R, T = x.shape[:2]
        both, blank_only = self._phi(r)
        inside = torch.arange(T, device=r.device)[None, :] < lens[:, None]  # (R, T)
        both = both.float().masked_fill(~inside, -torch.inf)
        cand = torch.logsumexp(both[:, :, None] + x, dim=1).double()  # (R, V)
        # c = the prefix's last token: only the paths with a blank before it.
        has_last = last >= 0
        tok = last.clamp(min=0)
        x_last = x.gather(2, tok[:, None, None].expand(R, T, 1)).squeeze(2)  # (R, T)
        same = torch.logsumexp(blank_only.float().masked_fill(~inside, -torch.inf) + x_last, dim=1)  # (R,)
        kept = cand.gather(1, tok[:, None]).squeeze(1)  # (R,)
        cand.scatter_(1, tok[:, None], torch.where(has_last, same.double(), kept)[:, None])
        end = r.gather(1, lens[:, None, None].expand(R, 1, 2)).squeeze(1)  # (R, 2) at frame lens - 1
        cand[:, self.eos] = torch.logaddexp(end[:, 0], end[:, 1])
        return cand
