"""Decoding strategies shared by every sequence-to-sequence model in dllab (style of whisper's decoding.py).

A model plugs in by implementing `IncrementalDecoder`:

    state = model.start(src)                  encode the source once
    logp, state = model.step(tokens, state)   tokens (B,) last emitted token per row -> log-probs (B, V)
    state = model.reorder(state, index)       keep / repeat / reorder rows: index (B',) of rows of `state`

The strategies below are batched over examples: every step runs ONE `model.step` for all unfinished
rows; rows that emit EOS are dropped from the state with `reorder` (greedy and sampling drop them in
groups, once a quarter of the rows has finished), so late steps cost only what is still alive. Each
sequence stops at EOS or after `max_len` steps.

    GreedyDecoder()                              argmax at every step
    NucleusSampler(top_p, generator)             Holtzman et al. (2020) top-p sampling
    BeamSearchDecoder(beam_size, length_penalty) beam search, hypotheses ranked by score / length**penalty

Wrappers that are themselves IncrementalDecoders change what the strategies see, not how they search:
`LengthLimited(model, limits, eos)` gives each source its own maximum length, and
`dllab.seq2seq.ctc.JointCTCDecoder` adds CTC prefix scores (joint CTC/attention decoding).

`decode(model, src, strategy, sos, eos, max_len)` returns token ids without SOS / EOS (for beam search the
best hypothesis); `decode_n_best` the n best hypotheses of beam search with their scores (for rescoring);
`sample_k` draws k samples per source while encoding each source once.
Decoding runs under `torch.no_grad()`; putting the model in eval() mode is the caller's job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import LongTensor, Tensor

State = Any


@runtime_checkable
class IncrementalDecoder(Protocol):
    """What any seq2seq model exposes to the decoding strategies (p2g LSTM, ASR LSTM / Transformer...)."""

    def start(self, src: Any) -> State:
        """Encode the source once; State holds encoder outputs, masks, recurrent state or KV cache."""
        ...

    def step(self, tokens: LongTensor, state: State) -> tuple[Tensor, State]:
        """tokens (B,) -> log-probs (B, V) of the next token and the updated state (no prefix rerun)."""
        ...

    def reorder(self, state: State, index: LongTensor) -> State:
        """Select / repeat / reorder batch rows: row i of the result is row index[i] of `state`."""
        ...


def select_rows(tree: Any, index: LongTensor) -> Any:
    """`index_select(0, index)` on every tensor of a nested tuple / list / dict / dataclass (batch-first).

    A convenience for `reorder` when every tensor of a model's state has the batch on dim 0."""
    if isinstance(tree, Tensor):
        return tree.index_select(0, index.to(tree.device))
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(
            tree, **{f.name: select_rows(getattr(tree, f.name), index) for f in dataclasses.fields(tree)}
        )
    if isinstance(tree, tuple | list):
        return type(tree)(select_rows(t, index) for t in tree)
    if isinstance(tree, dict):
        return {k: select_rows(v, index) for k, v in tree.items()}
    return tree


def batch_size_of(src: Any) -> int:
    """Rows in a source batch: a tensor's dim 0, the first tensor of a tuple / list / dict, or `len(src)`."""
    if isinstance(src, Tensor):
        return src.shape[0]
    if isinstance(src, tuple | list) and src and isinstance(src[0], Tensor):
        return src[0].shape[0]
    if isinstance(src, dict):
        first = next((v for v in src.values() if isinstance(v, Tensor)), None)
        if first is not None:
            return first.shape[0]
    if hasattr(src, "__len__"):
        return len(src)
    raise TypeError(f"cannot tell the batch size of a {type(src).__name__}: pass batch_size=")


def _check_len(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")


# -- token-by-token strategies (greedy, sampling) -----------------------------------------------------------


class _TokenByToken:
    """A strategy that picks one next token per row from that row's log-probabilities."""

    def choose(self, logp: Tensor) -> LongTensor:  # (B, V) -> (B,)
        raise NotImplementedError

    def search(self, model: IncrementalDecoder, state: State, batch: int, sos: int, eos: int, max_len: int):
        _check_len(max_len)
        if batch == 0:
            return []
        device = _device_of(state)
        tokens = torch.full((batch,), sos, dtype=torch.long, device=device)  # (b,) last token of live rows
        out = torch.full((batch, max_len), eos, dtype=torch.long, device=device)  # emitted tokens
        lengths = torch.full((batch,), max_len, dtype=torch.long, device=device)  # no EOS: max_len
        alive = torch.arange(batch, device=device)  # original row of each row of `state`
        running = torch.ones(batch, dtype=torch.bool, device=device)  # rows of `state` yet to emit EOS
        for t in range(max_len):
            logp, state = model.step(tokens, state)  # (b, V)
            nxt = self.choose(logp)  # (b,)
            out[alive, t] = nxt  # a finished row's later tokens land after its EOS and are cut off
            done = (nxt == eos) & running
            if bool(done.any()):  # the one host sync per step
                lengths[alive[done]] = t
                running &= ~done
                left = int(running.sum())
                if left == 0:
                    break
                # Finished rows leave the state only once they are a quarter of it: each `reorder` copies
                # the whole state, and a few finished rows cost less to carry than that copy every step.
                if left <= 0.75 * running.numel():
                    keep = running.nonzero().squeeze(1)
                    state = model.reorder(state, keep)
                    alive, nxt, running = alive[keep], nxt[keep], running[keep]
            tokens = nxt
        rows = out.cpu().tolist()
        return [row[:n] for row, n in zip(rows, lengths.cpu().tolist(), strict=True)]


def _device_of(state: State) -> torch.device:
    """The device of the first tensor found in `state` (CPU when it holds none)."""
    stack = [state]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            return item.device
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return torch.device("cpu")


class GreedyDecoder(_TokenByToken):
    """The most probable token at every step."""

    def choose(self, logp: Tensor) -> LongTensor:
        return logp.argmax(dim=-1)

    def __repr__(self) -> str:
        return "GreedyDecoder()"


def nucleus_mask(logp: Tensor, top_p: float) -> Tensor:
    """True for the tokens of each row's nucleus: the smallest set, taken in order of decreasing
    probability, whose cumulative probability is >= top_p (always at least the most probable token).

    logp (B, V) log-probabilities -> bool (B, V)."""
    probs = logp.float().exp()
    sorted_p, order = probs.sort(dim=-1, descending=True)  # (B, V)
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p  # probability mass of the more probable tokens
    keep_sorted = mass_before < top_p  # a token is needed while the mass before it is still short of p
    keep_sorted[:, 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


class NucleusSampler(_TokenByToken):
    """Top-p (nucleus) sampling (Holtzman et al., 2020): sample from the nucleus, renormalised.

    top_p in (0, 1]; p = 1 is plain ancestral sampling, a tiny p keeps only the most probable token (greedy).
    `generator` makes the samples reproducible (it must live on the model's device)."""

    def __init__(self, top_p: float, generator: torch.Generator | None = None):
        if not (0.0 < top_p <= 1.0) or math.isnan(top_p):
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p = float(top_p)
        self.generator = generator

    def choose(self, logp: Tensor) -> LongTensor:
        logp = logp.float()
        if self.top_p < 1.0:
            logp = logp.masked_fill(~nucleus_mask(logp, self.top_p), -math.inf)
        probs = torch.softmax(logp, dim=-1)  # renormalise over the nucleus
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def __repr__(self) -> str:
        return f"NucleusSampler(top_p={self.top_p})"


# -- beam search --------------------------------------------------------------------------------------------


class BeamSearchDecoder:
    """Batched beam search with length normalisation.

    Each source keeps `beam_size` live hypotheses. At every step the 2K best extensions are ranked; those
    ending in EOS (ranked before the K-th live one) become finished hypotheses scored
    `sum log p / length ** length_penalty` (length counts the EOS), the K best others stay live. A source
    is done when it has K finished hypotheses and the best of them scores at least as well as every live
    beam does now, or after `max_len` steps, when its live hypotheses are scored too.
    The result is the finished hypothesis with the best normalised score.
    `length_penalty=0` ranks by raw log-probability (favours short outputs), 1 by mean log-probability."""

    def __init__(self, beam_size: int, length_penalty: float = 1.0):
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.beam_size = int(beam_size)
        self.length_penalty = float(length_penalty)

    def __repr__(self) -> str:
        return f"BeamSearchDecoder(beam_size={self.beam_size}, length_penalty={self.length_penalty})"

    def search(self, model: IncrementalDecoder, state: State, batch: int, sos: int, eos: int, max_len: int):
        return self._search(model, state, batch, sos, eos, max_len, None)

    def search_n_best(
        self, model: IncrementalDecoder, state: State, batch: int, sos: int, eos: int, max_len: int, n: int
    ) -> list[list[tuple[list[int], float]]]:
        """Per source, the n best hypotheses the search finished (tokens, normalised score), best first:
        every hypothesis that ended in EOS while ranked among the beams, plus the live beams if `max_len`
        cut the search. Fewer than n when the search finished fewer."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        collect: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        self._search(model, state, batch, sos, eos, max_len, collect)
        return [[(seq, score) for score, seq in sorted(c, key=lambda x: -x[0])[:n]] for c in collect]

    def _search(self, model, state, batch: int, sos: int, eos: int, max_len: int, collect: list | None):
        _check_len(max_len)
        if batch == 0:
            return []
        K = self.beam_size
        device = _device_of(state)
        state = model.reorder(state, torch.arange(batch, device=device).repeat_interleave(K))
        scores = torch.full((batch, K), -math.inf, device=device)  # (b, K) summed log-probs of live beams
        scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not repeat it K times
        tokens = torch.full((batch * K,), sos, dtype=torch.long, device=device)
        history = torch.zeros((batch * K, 0), dtype=torch.long, device=device)  # (b*K, t) live tokens
        best_score = torch.full((batch,), -math.inf, device=device)
        best_tokens = torch.full((batch, max_len), eos, dtype=torch.long, device=device)
        best_len = torch.zeros(batch, dtype=torch.long, device=device)
        n_finished = torch.zeros(batch, dtype=torch.long, device=device)
        alive = torch.arange(batch, device=device)  # original source of each live row block

        for t in range(1, max_len + 1):
            b = alive.numel()
            logp, state = model.step(tokens, state)  # (b*K, V)
            V = logp.shape[-1]
            total = (scores.reshape(-1, 1) + logp.float()).reshape(b, K * V)
            top_s, top_i = total.topk(min(2 * K, K * V), dim=1)  # (b, 2K)
            origin, tok = top_i // V, top_i % V
            is_eos = tok == eos

            # Finished hypotheses: EOS candidates ranked before the K-th live candidate.
            live_before = (~is_eos).long().cumsum(1) - (~is_eos).long()
            ended = is_eos & (live_before < K) & torch.isfinite(top_s)
            norm = torch.where(ended, top_s / t**self.length_penalty, torch.full_like(top_s, -math.inf))
            cand, j = norm.max(dim=1)  # (b,)
            self._keep_best(cand, origin.gather(1, j[:, None]).squeeze(1), t - 1, alive, history, K,
                            best_score, best_tokens, best_len)
            if collect is not None and bool(ended.any()):
                rows, cols = ended.nonzero(as_tuple=True)
                ended_seqs = history.index_select(0, rows * K + origin[rows, cols]).tolist()
                for r, score, seq in zip(alive[rows].tolist(), norm[rows, cols].tolist(), ended_seqs, strict=True):
                    collect[r].append((score, seq))
            n_finished[alive] += ended.sum(1)

            # The K best candidates that do not end become the live beams.
            sel_s, sel = top_s.masked_fill(is_eos, -math.inf).topk(K, dim=1)  # (b, K)
            src_rows = (torch.arange(b, device=device)[:, None] * K + origin.gather(1, sel)).reshape(-1)
            new_tok = tok.gather(1, sel).reshape(-1)  # (b*K,)
            scores = sel_s
            history = torch.cat([history.index_select(0, src_rows), new_tok[:, None]], dim=1)
            state = model.reorder(state, src_rows)
            tokens = new_tok

            if t == max_len:  # out of steps: the live beams compete as they are
                norm = scores / t**self.length_penalty
                if collect is not None:
                    live = torch.isfinite(norm).nonzero(as_tuple=True)
                    live_seqs = history.index_select(0, live[0] * K + live[1]).tolist()
                    for r, score, seq in zip(alive[live[0]].tolist(), norm[live].tolist(), live_seqs, strict=True):
                        collect[r].append((score, seq))
                cand, j = norm.max(dim=1)
                self._keep_best(cand, j, t, alive, history, K, best_score, best_tokens, best_len)
                break
            # Done: K finished hypotheses, the best of which beats every live beam's current normalised
            # score (exact for length_penalty 0, where scores only fall; a heuristic otherwise, as in
            # Hugging Face's default beam search).
            live_best = scores.max(dim=1).values / t**self.length_penalty
            done = (n_finished[alive] >= K) & (best_score[alive] >= live_best)
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                rows = (keep[:, None] * K + torch.arange(K, device=device)).reshape(-1)
                state = model.reorder(state, rows)
                alive, scores = alive[keep], scores[keep]
                history, tokens = history[rows], tokens[rows]

        out = best_tokens.cpu().tolist()
        return [row[:n] for row, n in zip(out, best_len.cpu().tolist(), strict=True)]

    @staticmethod
    def _keep_best(cand, beam, length, alive, history, K, best_score, best_tokens, best_len) -> None:
        """Where `cand` (b,) beats the best so far, store beam `beam` (b,) of history (its first `length`)."""
        better = cand > best_score[alive]
        if not bool(better.any()):
            return
        rows = better.nonzero().squeeze(1)
        dest = alive[rows]
        best_score[dest] = cand[rows]
        best_len[dest] = length
        if length:
            best_tokens[dest, :length] = history.index_select(0, rows * K + beam[rows])[:, :length]


# -- a length limit per source ------------------------------------------------------------------------------


@dataclasses.dataclass
class LimitedState:
    """inner: the wrapped model's state; limits (R,): tokens each row may emit before its EOS; steps: tokens fed
    so far (SOS included), the same for every row (every strategy steps all live rows together)."""

    inner: Any
    limits: Tensor
    steps: int = 0


class LengthLimited:
    """An `IncrementalDecoder` around `model` that ends each source's output after that source's own number of
    tokens: once a row has emitted `limits[i]` tokens, EOS is its only possible next token (log-prob 0).

    `limits` (B,) belongs to one batch of sources. Every strategy runs on it unchanged; pass
    `max_len >= limits.max() + 1` so that the forced EOS fits. Speech, for example, caps each utterance by its
    duration, so that a decoder that starts repeating itself stops near the end of the audio."""

    def __init__(self, model: IncrementalDecoder, limits: Tensor, eos: int):
        if bool((limits < 0).any()):
            raise ValueError("limits must be >= 0")
        self.model, self.limits, self.eos = model, limits.long(), eos

    def start(self, src: Any) -> LimitedState:
        state = self.model.start(src)
        return LimitedState(state, self.limits.to(_device_of(state)), 0)

    def step(self, tokens: LongTensor, state: LimitedState) -> tuple[Tensor, LimitedState]:
        logp, inner = self.model.step(tokens, state.inner)
        # Step k (k = state.steps tokens fed, SOS first) chooses output token k + 1: past the limit only EOS.
        full = state.limits <= state.steps  # (R,)
        if bool(full.any()):
            forced = torch.full_like(logp, -math.inf)
            forced[:, self.eos] = 0.0
            logp = torch.where(full[:, None], forced, logp)
        return logp, LimitedState(inner, state.limits, state.steps + 1)

    def reorder(self, state: LimitedState, index: LongTensor) -> LimitedState:
        return LimitedState(self.model.reorder(state.inner, index), select_rows(state.limits, index), state.steps)


# -- entry points -------------------------------------------------------------------------------------------

Strategy = GreedyDecoder | NucleusSampler | BeamSearchDecoder


@torch.no_grad()
def decode(
    model: IncrementalDecoder,
    src: Any,
    strategy: Strategy,
    sos: int,
    eos: int,
    max_len: int,
    batch_size: int | None = None,
) -> list[list[int]]:
    """Decode a batch of sources: one list of token ids per source, without SOS and EOS.

    `batch_size` defaults to `batch_size_of(src)` (dim 0 of a tensor or of the first tensor of a tuple)."""
    batch = batch_size if batch_size is not None else batch_size_of(src)
    state = model.start(src)
    return strategy.search(model, state, batch, sos, eos, max_len)


@torch.no_grad()
def decode_n_best(
    model: IncrementalDecoder,
    src: Any,
    beam: BeamSearchDecoder,
    n: int,
    sos: int,
    eos: int,
    max_len: int,
    batch_size: int | None = None,
) -> list[list[tuple[list[int], float]]]:
    """The n best hypotheses of beam search per source: (token ids without SOS / EOS, normalised score)."""
    batch = batch_size if batch_size is not None else batch_size_of(src)
    return beam.search_n_best(model, model.start(src), batch, sos, eos, max_len, n)


@torch.no_grad()
def sample_k(
    model: IncrementalDecoder,
    src: Any,
    sampler: NucleusSampler,
    k: int,
    sos: int,
    eos: int,
    max_len: int,
    batch_size: int | None = None,
) -> list[list[list[int]]]:
    """k samples per source (for WER@k): encodes once, repeats each row k times with `reorder`.

    Returns samples[i][j], the j-th sample of source i."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batch = batch_size if batch_size is not None else batch_size_of(src)
    state = model.start(src)
    state = model.reorder(state, torch.arange(batch, device=_device_of(state)).repeat_interleave(k))
    flat = sampler.search(model, state, batch * k, sos, eos, max_len)
    return [flat[i * k : (i + 1) * k] for i in range(batch)]


def strip_special(ids: Sequence[int], specials: Sequence[int]) -> list[int]:
    """Token ids without the given special ids (e.g. PAD / SOS / EOS of a reference row)."""
    drop = set(specials)
    return [i for i in ids if i not in drop]
