"""The fast Taylor linear-attention kernels: blockwise over the sequence, features recomputed in backward.

Inputs are flattened to (N, L, D) with N = batch x heads. Nothing of size L x M is ever stored:

- the sequence is cut into blocks of T tokens, small enough that a block's features (N, M, T) stay in
  cache; features are built transposed, one contiguous row per feature (`TaylorFeatureMap`'s fast path);
- non-causal: S = sum_b Phi(K_b)^T V_b (N, M, Dv) and z = sum_b Phi(K_b)^T 1 (N, M), then each query block
  reads [S, z]^T Phi(Q_b) (N, Dv + 1, T): numerator and normaliser in one product. Forward and backward
  are written by hand (no autograd graph), with the products laid out the way MKL runs fastest
  (Dv = 16 columns rather than 17, features as the contiguous operand);
- causal: each block is cut into chunks of C tokens, processed all at once: per-chunk states, an exclusive
  cumulative sum seeded with the state carried in from the previous blocks, a read of that prefix state and
  a masked C x C block scored from q k^T directly (the truncated series: O(C D) per query, not O(C M));
  its backward recomputes one block at a time under autograd;
- training memory is O(L D + M Dv) per (batch, head) plus one block's features, instead of O(L M).
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


def _blocks(length: int, tokens: int):
    return [slice(start, min(start + tokens, length)) for start in range(0, length, tokens)]


def _key_features(fm: TaylorFeatureMap, k: Tensor, keep: Tensor | None, block: slice):
    """(scaled input, Phi(K_b) (N, M, T)) with the columns of padding keys zeroed."""
    xs, phi = fm.features_and_input(k[:, block].transpose(-2, -1))
    if keep is not None:
        phi = phi * keep[:, None, block]
    return xs, phi


# -- non-causal ----------------------------------------------------------------------------------------


class NonCausalTaylorAttention(torch.autograd.Function):
    """(q, k, v, keep) -> (out (N, Lq, Dv), S (N, M, Dv), z (N, M)); keep (N, Lk) is 1 for real keys or None."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap):
        n, dv, m = q.shape[0], v.shape[-1], fm.num_features
        tokens = block_tokens(n, m, 1, max(q.shape[-2], k.shape[-2]))
        kv = q.new_zeros(n, m, dv)
        k_sum = q.new_zeros(n, m)
        for block in _blocks(k.shape[-2], tokens):
            _, phi = _key_features(fm, k, keep, block)  # (N, M, T)
            kv.baddbmm_(phi, v[:, block])
            k_sum += phi.sum(-1)
        state_t = torch.cat([kv, k_sum.unsqueeze(-1)], dim=-1).transpose(-2, -1).contiguous()  # (N, Dv + 1, M)
        out_t = q.new_empty(n, dv + 1, q.shape[-2])  # numerator rows, then the normaliser
        for block in _blocks(q.shape[-2], tokens):
            _, phi = fm.features_and_input(q[:, block].transpose(-2, -1))
            out_t[:, :, block] = state_t @ phi
        normaliser = out_t[:, dv]  # (N, Lq)
        out = (out_t[:, :dv] / normaliser.unsqueeze(1)).transpose(-2, -1)  # (N, Lq, Dv)
        ctx.save_for_backward(q, k, v, keep, kv, k_sum, out, normaliser)
        ctx.fm, ctx.tokens = fm, tokens
        return out, kv, k_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_kv, grad_k_sum):
        q, k, v, keep, kv, k_sum, out, normaliser = ctx.saved_tensors
        fm, tokens = ctx.fm, ctx.tokens
        grad_kv = torch.zeros_like(kv) if grad_kv is None else grad_kv.clone()
        grad_k_sum = torch.zeros_like(k_sum) if grad_k_sum is None else grad_k_sum.clone()
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.empty_like(k), torch.empty_like(v)
        if grad_out is not None:
            state = torch.cat([kv, k_sum.unsqueeze(-1)], dim=-1)  # (N, M, Dv + 1)
            for block in _blocks(q.shape[-2], tokens):  # out = num / den: the gradients of num and den
                g, den = grad_out[:, block], normaliser[:, block].unsqueeze(-1)  # (N, T, Dv), (N, T, 1)
                g_num = g / den
                g_den = -(g_num * out[:, block]).sum(-1, keepdim=True)  # (N, T, 1)
                xs, phi = fm.features_and_input(q[:, block].transpose(-2, -1))  # (N, M, T)
                grad_kv.baddbmm_(phi, g_num)
                grad_k_sum.unsqueeze(-1).baddbmm_(phi, g_den)
                grad_phi = state @ torch.cat([g_num, g_den], dim=-1).transpose(-2, -1)  # (N, M, T)
                grad_q[:, block] = fm.input_gradient(xs, phi, grad_phi).transpose(-2, -1)
        grad_kv_t = grad_kv.transpose(-2, -1).contiguous()  # (N, Dv, M)
        for block in _blocks(k.shape[-2], tokens):  # kv = sum Phi(K)^T V, k_sum = sum Phi(K)^T 1
            xs, phi = _key_features(fm, k, keep, block)
            grad_v[:, block] = (grad_kv_t @ phi).transpose(-2, -1)
            grad_phi = torch.baddbmm(grad_k_sum.unsqueeze(-1), grad_kv, v[:, block].transpose(-2, -1))
            if keep is not None:
                grad_phi = grad_phi * keep[:, None, block]
            grad_k[:, block] = fm.input_gradient(xs, phi, grad_phi).transpose(-2, -1)
        return grad_q, grad_k, grad_v, None, None


# -- causal --------------------------------------------------------------------------------------------


def _causal_block(q: Tensor, k: Tensor, v1: Tensor, state: Tensor, fm: TaylorFeatureMap, chunk: int):
    """One block of T = n C tokens: (out (N, T, Dv + 1), the state after the block (N, M, Dv + 1)).

    v1 = [V, 1] with the rows of padding keys zeroed; state and output carry the normaliser as last column.
    """
    n = q.shape[-2] // chunk
    qc = q.unflatten(-2, (n, chunk))  # (N, n, C, D)
    kc = k.unflatten(-2, (n, chunk))
    vc = v1.unflatten(-2, (n, chunk))  # (N, n, C, Dv + 1)
    chunk_states = fm.transposed(kc.transpose(-2, -1)) @ vc  # (N, n, M, Dv + 1)
    running = chunk_states.cumsum(dim=-3) + state.unsqueeze(-3)  # state after each chunk
    before = torch.cat([state.unsqueeze(-3), running[..., :-1, :, :]], dim=-3)  # state before each chunk
    out = fm.transposed(qc.transpose(-2, -1)).transpose(-2, -1) @ before  # (N, n, C, Dv + 1)
    scores = fm.series(qc @ kc.transpose(-2, -1))  # (N, n, C, C) = phi(q_i)^T phi(k_j)
    mask = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    out = out + scores.masked_fill(~mask, 0.0) @ vc
    return out.flatten(-3, -2), running[..., -1, :, :]


class CausalTaylorAttention(torch.autograd.Function):
    """(q, k, v, keep) -> (out (N, L, Dv), S (N, M, Dv), z (N, M)) with query i seeing keys j <= i."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap, chunk: int):
        n, length, m, dv = q.shape[0], q.shape[-2], fm.num_features, v.shape[-1]
        chunk = min(chunk, length)
        v1 = F.pad(v, (0, 1), value=1.0)
        if keep is not None:
            v1 = v1 * keep.unsqueeze(-1)
        pad = -length % chunk
        if pad:  # zero rows of V' make padded keys contribute nothing; padded queries are dropped
            q, k, v1 = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v1))
        tokens = block_tokens(n, m, chunk, q.shape[-2])
        state = q.new_zeros(n, m, dv + 1)
        outs, states_in = [], []
        for block in _blocks(q.shape[-2], tokens):
            states_in.append(state)
            out, state = _causal_block(q[:, block], k[:, block], v1[:, block], state, fm, chunk)
            outs.append(out)
        out1 = torch.cat(outs, dim=-2)[:, :length]  # (N, L, Dv + 1)
        normaliser = out1[..., dv]
        out = out1[..., :dv] / normaliser.unsqueeze(-1)
        ctx.save_for_backward(q, k, v1, keep, out, normaliser, *states_in)
        ctx.fm, ctx.chunk, ctx.tokens, ctx.length = fm, chunk, tokens, length
        return out, state[..., :dv], state[..., dv]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_kv, grad_k_sum):
        q, k, v1, keep, out, normaliser, *states_in = ctx.saved_tensors
        fm, length = ctx.fm, ctx.length
        dv = v1.shape[-1] - 1
        grad_state = torch.zeros_like(states_in[0])
        if grad_kv is not None:
            grad_state[..., :dv] = grad_kv
        if grad_k_sum is not None:
            grad_state[..., dv] = grad_k_sum
        grad_out1 = torch.zeros(q.shape[0], q.shape[-2], dv + 1, dtype=q.dtype, device=q.device)
        if grad_out is not None:
            den = normaliser.unsqueeze(-1)
            grad_out1[:, :length, :dv] = grad_out / den
            grad_out1[:, :length, dv] = -(grad_out1[:, :length, :dv] * out).sum(-1)
        grad_q, grad_k, grad_v1 = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v1)
        blocks = _blocks(q.shape[-2], ctx.tokens)
        for block, state_in in zip(reversed(blocks), reversed(states_in), strict=True):
            with torch.enable_grad():
                qb, kb, vb, sb = (
                    t.detach().requires_grad_() for t in (q[:, block], k[:, block], v1[:, block], state_in)
                )
                out_b, state_out = _causal_block(qb, kb, vb, sb, fm, ctx.chunk)
                gq, gk, gv, gs = torch.autograd.grad(
                    (out_b, state_out),
                    (qb, kb, vb, sb),
                    (grad_out1[:, block], grad_state),
                    materialize_grads=True,  # K = 1: phi is constant, q and k get no gradient
                )
            grad_q[:, block], grad_k[:, block], grad_v1[:, block], grad_state = gq, gk, gv, gs
        grad_v = grad_v1[:, :length, :dv]
        if keep is not None:
            grad_v = grad_v * keep.unsqueeze(-1)
        return grad_q[:, :length], grad_k[:, :length], grad_v, None, None, None


def taylor_attention(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap, causal: bool, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised output (..., Lq, Dv) and final state kv (..., M, Dv), k_sum (..., M), for any batch shape.

    keep: (B, Lk) float, 1 for real keys and 0 for padding, or None; q is then (B, ..., Lq, D).
    """
    batch = q.shape[:-2]
    flat = [t.reshape(-1, *t.shape[-2:]) for t in (q, k, v)]
    if keep is not None:
        per_key = keep.reshape(keep.shape[0], *([1] * (len(batch) - 1)), keep.shape[-1])
        keep = per_key.expand(*batch, keep.shape[-1]).reshape(-1, keep.shape[-1]).to(q.dtype)
    if causal:
        out, kv, k_sum = CausalTaylorAttention.apply(*flat, keep, fm, chunk)
    else:
        out, kv, k_sum = NonCausalTaylorAttention.apply(*flat, keep, fm)
    return out.reshape(*batch, *out.shape[-2:]), kv.reshape(*batch, *kv.shape[-2:]), k_sum.reshape(*batch, -1)
