"""The fast Taylor linear-attention kernels: blockwise over the sequence, recomputing features in backward.

Inputs are flattened to (N, L, D) with N = batch x heads, and values carry the normaliser column:
V' = [V, 1] (N, L, Dv + 1). Nothing of size L x M is ever stored:

- the sequence is cut into blocks of T tokens, small enough that a block's features (N, M, T) stay in cache;
  features are built transposed (one contiguous row per feature, `TaylorFeatureMap.transposed`);
- non-causal: S = sum_blocks Phi(K_b)^T V'_b (N, M, Dv + 1), then every query block reads Phi(Q_b) S;
- causal: each block is cut into chunks of C tokens, processed all at once: per-chunk states, an exclusive
  cumulative sum seeded with the state carried in from the previous blocks, a read of that prefix state and
  a masked C x C block scored from q k^T directly (the truncated series, O(C D) per query instead of O(C M));
- backward recomputes each block's features under autograd (activation checkpointing per block), so
  training memory is O(L D + M Dv) per (batch, head) plus one block, instead of O(L M).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from dllab.attention.feature_map import TaylorFeatureMap

# Elements of one block's features (N x M x T): about 2 MiB of float32, what the 2-core CPU's caches hold.
BLOCK_ELEMENTS = 1 << 19


def block_tokens(batch: int, num_features: int, chunk: int, length: int) -> int:
    """Tokens per block: a multiple of `chunk`, about BLOCK_ELEMENTS / (batch x M), at most `length`."""
    tokens = max(chunk, (BLOCK_ELEMENTS // max(1, batch * num_features)) // chunk * chunk)
    return min(tokens, -(-length // chunk) * chunk)


def _read(phi_q_t: Tensor, state: Tensor) -> Tensor:
    """Phi(Q) S: (..., M, T) features against the state (..., M, Dv + 1) -> (..., T, Dv + 1)."""
    return phi_q_t.transpose(-2, -1) @ state


def _noncausal_state(k: Tensor, v1: Tensor, fm: TaylorFeatureMap, tokens: int) -> Tensor:
    state = None
    for start in range(0, k.shape[-2], tokens):
        kb, vb = k[:, start : start + tokens], v1[:, start : start + tokens]
        part = fm.transposed(kb.transpose(-2, -1)) @ vb  # (N, M, Dv + 1)
        state = part if state is None else state.add_(part)
    return state


def _causal_block(q: Tensor, k: Tensor, v1: Tensor, state: Tensor, fm: TaylorFeatureMap, chunk: int):
    """One block of T = n C tokens: (out (N, T, Dv + 1), the state after the block (N, M, Dv + 1))."""
    n = q.shape[-2] // chunk
    qc = q.unflatten(-2, (n, chunk))  # (N, n, C, D)
    kc = k.unflatten(-2, (n, chunk))
    vc = v1.unflatten(-2, (n, chunk))  # (N, n, C, Dv + 1)
    chunk_states = fm.transposed(kc.transpose(-2, -1)) @ vc  # (N, n, M, Dv + 1)
    running = chunk_states.cumsum(dim=-3) + state.unsqueeze(-3)  # state after each chunk
    before = torch.cat([state.unsqueeze(-3), running[..., :-1, :, :]], dim=-3)  # state before each chunk
    out = _read(fm.transposed(qc.transpose(-2, -1)), before)  # (N, n, C, Dv + 1)
    scores = fm.series(qc @ kc.transpose(-2, -1))  # (N, n, C, C) = phi(q_i)^T phi(k_j)
    mask = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    out = out + scores.masked_fill(~mask, 0.0) @ vc
    return out.flatten(-3, -2), running[..., -1, :, :]


def _vjp(phi: Tensor, x: Tensor, grad_phi: Tensor) -> Tensor:
    """grad_phi^T d phi / d x; zero when phi does not depend on x (K = 1: phi = [1])."""
    if not phi.requires_grad:
        return torch.zeros_like(x)
    return torch.autograd.grad(phi, x, grad_phi)[0]


class TaylorAttention(torch.autograd.Function):
    """(q, k, v1) -> (out (N, Lq, Dv + 1) unnormalised, final state (N, M, Dv + 1)), see above."""

    @staticmethod
    def forward(ctx, q, k, v1, fm: TaylorFeatureMap, causal: bool, chunk: int):
        n, length = q.shape[0], q.shape[-2]
        m = fm.num_features
        if causal:
            chunk = min(chunk, length)
            pad = -length % chunk
            if pad:  # zero rows of V' make padded keys contribute nothing; padded queries are dropped
                q, k, v1 = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v1))
            tokens = block_tokens(n, m, chunk, q.shape[-2])
            state = q.new_zeros(n, m, v1.shape[-1])
            outs, states_in = [], []
            for start in range(0, q.shape[-2], tokens):
                states_in.append(state)
                block = slice(start, start + tokens)
                out, state = _causal_block(q[:, block], k[:, block], v1[:, block], state, fm, chunk)
                outs.append(out)
            out = torch.cat(outs, dim=-2)[:, :length]
            ctx.save_for_backward(q, k, v1, *states_in, state)
        else:
            tokens = block_tokens(n, m, 1, max(q.shape[-2], k.shape[-2]))
            state = _noncausal_state(k, v1, fm, tokens)
            out = torch.cat(
                [
                    _read(fm.transposed(q[:, s : s + tokens].transpose(-2, -1)), state)
                    for s in range(0, q.shape[-2], tokens)
                ],
                dim=-2,
            )
            ctx.save_for_backward(q, k, v1, state)
        ctx.fm, ctx.causal, ctx.chunk, ctx.tokens, ctx.length = fm, causal, chunk, tokens, length
        return out, state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_state):
        fm, tokens = ctx.fm, ctx.tokens
        q, k, v1, *states = ctx.saved_tensors
        final_state = states[-1]
        if grad_out is None:
            grad_out = torch.zeros(q.shape[0], ctx.length, v1.shape[-1], dtype=q.dtype, device=q.device)
        grad_state = torch.zeros_like(final_state) if grad_state is None else grad_state.clone()
        grad_q, grad_k, grad_v1 = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v1)
        if ctx.causal:
            grad_out = F.pad(grad_out, (0, 0, 0, q.shape[-2] - ctx.length))
            starts = list(range(0, q.shape[-2], tokens))
            for start, state_in in zip(reversed(starts), reversed(states[:-1]), strict=True):
                block = slice(start, start + tokens)
                with torch.enable_grad():
                    qb, kb, vb, sb = (
                        t.detach().requires_grad_() for t in (q[:, block], k[:, block], v1[:, block], state_in)
                    )
                    out, state_out = _causal_block(qb, kb, vb, sb, fm, ctx.chunk)
                    gq, gk, gv, gs = torch.autograd.grad(
                        (out, state_out),
                        (qb, kb, vb, sb),
                        (grad_out[:, block], grad_state),
                        materialize_grads=True,  # K = 1: phi is constant, q and k get no gradient
                    )
                grad_q[:, block], grad_k[:, block], grad_v1[:, block], grad_state = gq, gk, gv, gs
            return (
                grad_q[:, : ctx.length],
                grad_k[:, : ctx.length],
                grad_v1[:, : ctx.length],
                None,
                None,
                None,
            )
        state = final_state
        for start in range(0, q.shape[-2], tokens):  # queries: dS += Phi(Q_b)^T dOut_b, dQ_b via Phi
            block = slice(start, start + tokens)
            with torch.enable_grad():
                qb = q[:, block].detach().requires_grad_()
                phi = fm.transposed(qb.transpose(-2, -1))  # (N, M, T)
            g = grad_out[:, block]
            grad_state += phi.detach() @ g
            grad_q[:, block] = _vjp(phi, qb, state @ g.transpose(-2, -1))
        for start in range(0, k.shape[-2], tokens):  # keys and values: S = sum_b Phi(K_b)^T V'_b
            block = slice(start, start + tokens)
            with torch.enable_grad():
                kb = k[:, block].detach().requires_grad_()
                phi = fm.transposed(kb.transpose(-2, -1))
            grad_v1[:, block] = phi.detach().transpose(-2, -1) @ grad_state
            grad_k[:, block] = _vjp(phi, kb, grad_state @ v1[:, block].transpose(-2, -1))
        return grad_q, grad_k, grad_v1, None, None, None


def taylor_attention(q: Tensor, k: Tensor, v1: Tensor, fm: TaylorFeatureMap, causal: bool, chunk: int):
    """Unnormalised output (..., Lq, Dv + 1) and final state (..., M, Dv + 1), any batch shape."""
    batch = q.shape[:-2]
    flat = [t.reshape(-1, *t.shape[-2:]) for t in (q, k, v1)]
    out, state = TaylorAttention.apply(*flat, fm, causal, chunk)
    return out.reshape(*batch, *out.shape[-2:]), state.reshape(*batch, *state.shape[-2:])
