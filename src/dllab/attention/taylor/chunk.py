"""Linear attention in plain PyTorch: the chunked algorithm, blockwise over the sequence, backward by hand.

This is the path every feature map, device and dtype can take; where the fused kernels apply
(`dllab.attention.taylor.fused`) they compute the same thing faster, and the tests hold them to it.

Inputs are flattened to (N, L, D) with N = batch x heads, and the values carry a column of ones,
v1 = [V, 1] (N, L, Dv + 1), so that one product gives the numerators and the normaliser together (a padding
key has a zero row of v1: no weight in either). Both autograd Functions return unnormalised outputs
(N, Lq, Dv + 1) and the state; `chunked_attention` divides.

- non-causal: the state S = Phi(K)^T V1 (N, M, Dv + 1), summed block by block; then out = Phi(Q) S.
- causal, in chunks of C tokens: each chunk's own state S_c = Phi(K_c)^T V1_c; the state before it, the
  incoming one plus the earlier chunks' (an exclusive cumulative sum); then
      out_c = Phi(Q_c) before_c + tril(W_c) V1_c,
  with the C x C weights W_c = Phi(Q_c) Phi(K_c)^T scored from q k^T directly for a Taylor map
  (W = series(q k^T): O(C D) per query instead of O(C M)).

Memory: nothing of size L x M is stored. The sequence is cut into blocks of T tokens (`block_tokens`: about
BLOCK_ELEMENTS features at a time); the forward keeps the inputs and the state entering each block, and the
backward recomputes each block's features. Training memory is O(L (D + Dv) + M Dv) per head plus one block,
instead of O(L M).

Layout: features are built transposed, Phi^T (N, M, T) with one contiguous row per feature, and every
gradient of them is formed in that layout too (`_features`): the map's products, and the backward through
them, ran 2-3x slower on strided (T, M) views.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from dllab.attention.taylor.feature_map import TaylorFeatureMap

FeatureMap = Callable[[Tensor], Tensor]

# Elements of one block's features (N x T x M): about 2 MiB of float32, what the 2-core CPU's caches hold.
BLOCK_ELEMENTS = 1 << 19
# The non-causal forward keeps only the (M x Dv) state beside a block's features: blocks twice as long halve
# its number of products (the backward holds gradients too and keeps BLOCK_ELEMENTS).
FORWARD_BLOCK_ELEMENTS = 1 << 20


def block_tokens(batch: int, num_features: int, chunk: int, length: int, elements: int | None = None) -> int:
    """Tokens per block: a multiple of `chunk`, about `elements` (default BLOCK_ELEMENTS) / (batch x M),
    at most `length` rounded up to a chunk."""
    elements = BLOCK_ELEMENTS if elements is None else elements
    tokens = max(chunk, (elements // max(1, batch * num_features)) // chunk * chunk)
    return min(tokens, -(-length // chunk) * chunk)


def blocks(length: int, tokens: int) -> list[slice]:
    return [slice(start, min(start + tokens, length)) for start in range(0, length, tokens)]


def _features(fm: FeatureMap, x: Tensor) -> Tensor:
    """x (..., T, D) -> Phi(x)^T (..., M, T)."""
    if isinstance(fm, TaylorFeatureMap):
        return fm.transposed(x.transpose(-2, -1))
    return fm(x).transpose(-2, -1)


def _features_and_vjp(fm: FeatureMap, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Phi(x)^T (..., M, T) for x (..., T, D), and the function taking dL/dPhi^T to dL/dx (the map's own
    backward, through autograd)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_()
        phi_t = _features(fm, x)

    def vjp(grad_phi_t: Tensor) -> Tensor:
        if not phi_t.requires_grad:  # K = 1: constant features
            return torch.zeros_like(x)
        return torch.autograd.grad(phi_t, x, grad_phi_t)[0]

    return phi_t.detach(), vjp


def _num_features(fm: FeatureMap, like: Tensor) -> int:
    m = getattr(fm, "num_features", None)
    return m if m is not None else fm(like[:1, :1]).shape[-1]


# -- non-causal ----------------------------------------------------------------------------------------


class NonCausal(torch.autograd.Function):
    """(q (N, Lq, D), k (N, Lk, D), v1 (N, Lk, Dv + 1), fm) -> (out (N, Lq, Dv + 1), S (N, M, Dv + 1))."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v1: Tensor, fm: FeatureMap):
        n, m, longest = q.shape[0], _num_features(fm, q), max(q.shape[1], k.shape[1])
        tokens = block_tokens(n, m, 1, longest, FORWARD_BLOCK_ELEMENTS)
        state = q.new_zeros(n, m, v1.shape[-1])
        for b in blocks(k.shape[1], tokens):
            state += _features(fm, k[:, b]) @ v1[:, b]
        out = q.new_empty(n, q.shape[1], v1.shape[-1])
        for b in blocks(q.shape[1], tokens):
            out[:, b] = _features(fm, q[:, b]).transpose(-2, -1) @ state
        ctx.save_for_backward(q, k, v1, state)
        ctx.fm, ctx.tokens = fm, block_tokens(n, m, 1, longest)
        ctx.set_materialize_grads(False)  # an unused result's gradient arrives as None: its pass is skipped
        return out, state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor | None, grad_state: Tensor | None):
        q, k, v1, state = ctx.saved_tensors
        fm, tokens = ctx.fm, ctx.tokens
        grad_state = torch.zeros_like(state) if grad_state is None else grad_state.clone()
        grad_q = torch.zeros_like(q)
        if grad_out is not None:
            for b in blocks(q.shape[1], tokens):  # out = Phi(Q) S
                phi_t, vjp = _features_and_vjp(fm, q[:, b])
                grad_state += phi_t @ grad_out[:, b]
                grad_q[:, b] = vjp(state @ grad_out[:, b].transpose(-2, -1))
        grad_k, grad_v1 = torch.empty_like(k), torch.empty_like(v1)
        for b in blocks(k.shape[1], tokens):  # S = sum_b Phi(K_b)^T V1_b
            phi_t, vjp = _features_and_vjp(fm, k[:, b])
            grad_v1[:, b] = phi_t.transpose(-2, -1) @ grad_state
            grad_k[:, b] = vjp(grad_state @ v1[:, b].transpose(-2, -1))
        return grad_q, grad_k, grad_v1, None


# -- causal --------------------------------------------------------------------------------------------


def _exclusive_cumsum(x: Tensor, reverse: bool = False) -> Tensor:
    """Over the chunks, dim 1: the sum of those before each one (after it, with `reverse`)."""
    if reverse:
        return _exclusive_cumsum(x.flip(1)).flip(1)
    return F.pad(x.cumsum(1)[:, :-1], (0, 0, 0, 0, 1, 0))


class _CausalBlock:
    """One block of n chunks of C tokens, q, k (N, n C, D), v1 (N, n C, Dv + 1), entering with `state`
    (N, M, Dv + 1) or None for zeros: its chunks' states and C x C weights (built again by the backward)."""

    def __init__(self, fm: FeatureMap, q, k, v1, state: Tensor | None, chunk: int, backward: bool = False):
        self.fm, self.taylor = fm, isinstance(fm, TaylorFeatureMap)
        self.qc, self.kc, self.vc = (t.unflatten(1, (-1, chunk)) for t in (q, k, v1))  # (N, n, C, X)
        if backward:
            (self.phi_q, self.vjp_q), (self.phi_k, self.vjp_k) = (_features_and_vjp(fm, x) for x in (self.qc, self.kc))
        else:
            self.phi_q, self.phi_k = _features(fm, self.qc), _features(fm, self.kc)  # (N, n, M, C)
        chunk_states = self.phi_k @ self.vc  # (N, n, M, Dv + 1)
        self.before = _exclusive_cumsum(chunk_states)  # the state before each chunk
        if state is not None:
            self.before += state.unsqueeze(1)
        self.after = self.before[:, -1] + chunk_states[:, -1]  # (N, M, Dv + 1)
        self.mask = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
        if self.taylor:  # phi(q)^T phi(k) is the truncated series of q^T k
            self.scores = self.qc @ self.kc.transpose(-2, -1)  # (N, n, C, C)
            weights = fm.series(self.scores)
        else:
            weights = self.phi_q.transpose(-2, -1) @ self.phi_k
        self.weights = weights.masked_fill(~self.mask, 0.0)

    def output(self) -> Tensor:
        """(N, n C, Dv + 1): each chunk reads the state before it, plus its own masked C x C block."""
        out = self.phi_q.transpose(-2, -1) @ self.before + self.weights @ self.vc  # (N, n, C, Dv + 1)
        return out.flatten(1, 2)

    def backward(self, grad_out: Tensor, grad_after: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(dL/dout (N, n C, Dv + 1), dL/d(state after)) -> dL/d(q, k, v1, incoming state)."""
        g = grad_out.unflatten(1, (-1, self.qc.shape[2]))  # (N, n, C, Dv + 1)
        # before_c = state + sum_{c' < c} S_c' and after = state + sum_c S_c: the gradient of S_c is
        # d after plus those of every later chunk's before, and the incoming state gets all of them
        grad_before = self.phi_q @ g  # (N, n, M, Dv + 1)
        grad_chunk_states = grad_after.unsqueeze(1) + _exclusive_cumsum(grad_before, reverse=True)
        grad_state = grad_after + grad_before.sum(1)
        grad_weights = (g @ self.vc.transpose(-2, -1)).masked_fill_(~self.mask, 0.0)  # (N, n, C, C)
        grad_v = self.weights.transpose(-2, -1) @ g + self.phi_k.transpose(-2, -1) @ grad_chunk_states
        grad_phi_q = self.before @ g.transpose(-2, -1)  # (N, n, M, C), as the features are laid out
        grad_phi_k = grad_chunk_states @ self.vc.transpose(-2, -1)
        if self.taylor:  # W = series(q k^T)
            grad_scores = grad_weights * self.fm.series_slope(self.scores)
            grad_q = self.vjp_q(grad_phi_q) + grad_scores @ self.kc
            grad_k = self.vjp_k(grad_phi_k) + grad_scores.transpose(-2, -1) @ self.qc
        else:  # W = Phi(Q) Phi(K)^T
            grad_q = self.vjp_q(grad_phi_q + self.phi_k @ grad_weights.transpose(-2, -1))
            grad_k = self.vjp_k(grad_phi_k + self.phi_q @ grad_weights)
        return grad_q.flatten(1, 2), grad_k.flatten(1, 2), grad_v.flatten(1, 2), grad_state


class Causal(torch.autograd.Function):
    """(q, k (N, L, D), v1 (N, L, Dv + 1), fm, C) -> (out (N, L, Dv + 1), the final state (N, M, Dv + 1)),
    query i seeing keys j <= i; L a multiple of C (the caller pads)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v1: Tensor, fm: FeatureMap, chunk: int):
        out = q.new_empty(*q.shape[:2], v1.shape[-1])
        tokens = block_tokens(q.shape[0], _num_features(fm, q), chunk, q.shape[1])
        state, entering = None, []  # the state entering each block, kept for the backward
        for b in blocks(q.shape[1], tokens):
            entering.append(state)
            block = _CausalBlock(fm, q[:, b], k[:, b], v1[:, b], state, chunk)
            out[:, b], state = block.output(), block.after
        ctx.save_for_backward(q, k, v1, *entering[1:])  # the first block starts from zeros
        ctx.fm, ctx.chunk, ctx.tokens = fm, chunk, tokens
        ctx.set_materialize_grads(False)  # an unused result's gradient arrives as None: its pass is skipped
        return out, state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor | None, grad_state: Tensor | None):
        q, k, v1, *entering = ctx.saved_tensors
        grad_q, grad_k, grad_v1 = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v1)
        grad_out = q.new_zeros(*q.shape[:2], v1.shape[-1]) if grad_out is None else grad_out
        for b, state in zip(reversed(blocks(q.shape[1], ctx.tokens)), reversed([None, *entering]), strict=True):
            block = _CausalBlock(ctx.fm, q[:, b], k[:, b], v1[:, b], state, ctx.chunk, backward=True)
            grad_after = torch.zeros_like(block.after) if grad_state is None else grad_state
            grad_q[:, b], grad_k[:, b], grad_v1[:, b], grad_state = block.backward(grad_out[:, b], grad_after)
        return grad_q, grad_k, grad_v1, None, None


def chunked_attention(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: FeatureMap, causal: bool, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised output (N, Lq, Dv) and the final state kv (N, M, Dv), k_sum (N, M).

    q (N, Lq, D), k (N, Lk, D), v (N, Lk, Dv); keep (N, Lk): 1 for real keys, 0 for padding, or None."""
    v1 = F.pad(v, (0, 1), value=1.0)  # (N, Lk, Dv + 1)
    if keep is not None:
        v1 = v1 * keep.unsqueeze(-1)
    if causal:
        length = q.shape[1]
        chunk = min(chunk, length)
        pad = -length % chunk  # zero rows of v1: padded keys weigh nothing; padded queries are dropped
        out, state = Causal.apply(*(F.pad(t, (0, 0, 0, pad)) for t in (q, k, v1)), fm, chunk)
        out = out[:, :length]
    else:
        out, state = NonCausal.apply(q, k, v1, fm)
    return out[..., :-1] / out[..., -1:], state[..., :-1], state[..., -1]
