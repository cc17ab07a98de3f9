"""The fused Taylor kernels: the algorithm of `dllab.attention.taylor.chunk` on the compiled loops of
`native.c`, which build each tile's features in registers, so no features are stored at all.

They apply to a compact map with K = 2 or 3, on the CPU in float32 / float64, when the loops compiled
(`applies`; causal also needs D <= 32 and Dv <= 32). Inputs are flattened to (N, L, D), N = batch x heads.

- non-causal: S = sum_b u(K_b)^T V_b and z = sum_b u(K_b) from the moments of K (count, sum, K^T K:
  `_key_sums`), with u the bare monomials (phi = W u: the weights W go on the small states, not on every
  block); then each query block reads [S, z] (`read`), numerators and normaliser in one pass. The backward's
  input gradient never forms dL/dPhi (`gradient`, from the state and the output gradient).
- causal: blocks of n chunks of C tokens. A scan over the keys' chunks gives the state before each chunk,
  the queries read it, and one loop per chunk adds the masked C x C block; the backward runs the scan in
  reverse and writes every gradient into the sequence's in place. The states before each chunk,
  M (Dv + 1) / C floats per token (41 for D = 16, C = 64), are kept, which spares the backward recomputing
  them (2.41x -> 2.09x the non-causal forward + backward at L = 16,384, one thread, 2026-12-03).

Layouts (why the code is shaped so):
- states kept transposed, (Dv + 1, M): the loops read and write them with the features along the rows;
- the loops take any strides and two batch levels, so chunks are read in place from (N, D, L) views of the
  inputs and gradients are written straight into the sequence's;
- the outputs are written token-major, (T, Dv + 1) per block, so that the division by the normaliser writes
  the public (N, L, Dv) layout directly;
- buffers outlive a call (`_cached`): building a causal block's took 90-260 us, twice per call and again in
  the backward, 8% of a causal forward at L = 2,048. A few per thread, least recently used dropped, so calls
  from several threads never share one; `clear_buffers` frees them (the benchmark does, to measure a first
  call's peak memory).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import torch
from torch import Tensor
from torch.nn import functional as F

from dllab.attention.taylor import chunk as plain
from dllab.attention.taylor.feature_map import TaylorFeatureMap
from dllab.attention.taylor.fused import native

_CACHE_SIZE = 8
_CACHE = threading.local()


def applies(fm: TaylorFeatureMap, like: Tensor, value_dim: int, causal: bool) -> bool:
    """Whether the fused kernels take this map and inputs like `like` with values of `value_dim`."""
    if not (fm.form == "compact" and 2 <= fm.order <= 3 and native.supports(like)):
        return False
    return not causal or (native.causal_chunks_apply(like, fm.dim, fm.order) and value_dim + 1 <= 33)


def clear_buffers() -> None:
    """Free this thread's cached kernel buffers (they are rebuilt on the next call)."""
    _CACHE.entries = OrderedDict()


def _cached(fm: TaylorFeatureMap, key: tuple, build):
    """The object `build()` made on this thread for a map with fm's (D, K, scale), which is all the buffers
    depend on (so a fresh but equal map, as a benchmark makes, reuses them), and `key`."""
    cache = getattr(_CACHE, "entries", None)
    if cache is None:
        cache = _CACHE.entries = OrderedDict()
    key = (fm.dim, fm.order, fm.scale, *key)
    entry = cache.get(key)
    if entry is None:
        entry = cache[key] = build()
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return entry


class Kernels:
    """The compiled loops for one map: products with its monomials u of x = sqrt(scale) xt, never formed.

    weighted: the products are with the weighted features phi = W u (the causal kernel's), not u.
    - `read(a, xt, out)`: A u, for A (B, C, M): a state read by the queries, or by the keys in the backward;
    - `sum(g, xt, out)`: G u^T, for G (B, C, T): a state sum_t u_t g_t^T kept transposed, or its gradient;
      `scan` gives the states before each chunk (in reverse: their gradients);
    - `gradient(state, g, xt, out)`: dL/dxt where dL/du = S g, for S (B, M, C), without forming dL/du.
    xt are raw inputs (B, D, T), any strides; with two batch levels (B1, B2, ...) chunks are read in place.
    """

    def __init__(self, fm: TaylorFeatureMap, like: Tensor, weighted: bool):
        monomials = fm.monomials()
        self.first = torch.tensor([m[0] if len(m) == 2 else 0 for m in monomials], dtype=torch.int32)
        self.second = torch.tensor([m[1] if len(m) == 2 else 0 for m in monomials], dtype=torch.int32)
        weights = fm.feature_weights(torch.zeros((), dtype=torch.float64))
        self.weights = weights.to(like).contiguous() if weighted else None
        self.root = math.sqrt(fm.scale)
        self.terms = self._gradient_terms(fm, weights if weighted else None, like.dtype)

    def _gradient_terms(self, fm: TaylorFeatureMap, weights: Tensor | None, dtype: torch.dtype) -> tuple:
        """The input gradient's terms for native.c: u = [1, x, x_i x_j (i <= j)], so
            dL/dx_a = sum_c g_c (S[x_a, c] + sum_b B_c[a, b] x_b),   B_c[a, b] = S[x_a x_b, c] (twice if a = b);
        grouped by a: x_a's own row (partner -1), then the pairs x_a x_b, b >= a (one term serves both)."""
        d = fm.dim
        row = {m: r for r, m in enumerate(fm.monomials())}
        starts, rows, partners, factors = [0], [], [], []
        for a in range(d):
            for b in [-1, *range(a, d if fm.order == 3 else a)]:
                r = row[(a,)] if b < 0 else row[(a, b)]
                rows.append(r)
                partners.append(b)
                coef = 2.0 if a == b else 1.0  # d x_a^2 / d x_a = 2 x_a
                factors.append(coef * (1.0 if weights is None else float(weights[r])) * self.root)
            starts.append(len(rows))
        return (
            torch.tensor(starts),
            torch.tensor(rows),
            torch.tensor(partners, dtype=torch.int32),
            torch.tensor(factors, dtype=dtype),
        )

    def read(self, a: Tensor, xt: Tensor, out: Tensor) -> Tensor:
        return native.feature_read(a, xt, self.root, out, self.first, self.second, self.weights)

    def sum(self, g: Tensor, xt: Tensor, out: Tensor, add: bool = False) -> Tensor:
        return native.feature_sum(g, xt, self.root, out, self.first, self.second, self.weights, add)

    def scan(self, g: Tensor, xt: Tensor, out: Tensor, init: Tensor, last: Tensor, reverse: bool = False):
        """Over chunks in order (or in reverse): g (B1, n, C, T), xt (B1, n, D, T) -> out (B1, n, C, M), init
        (B1, C, M) plus the sums of the chunks before (after) each one; last = init plus all of them."""
        scan = -1 if reverse else 1
        return native.feature_sum(g, xt, self.root, out, self.first, self.second, self.weights, False, scan, init, last)

    def gradient(self, state: Tensor, g: Tensor, xt: Tensor, out: Tensor) -> Tensor:
        """state (B, M, C), g (B, C, T), raw inputs xt (B, D, T) -> out (B, D, T) = dL/dxt."""
        return native.quadratic_gradient(state, g, xt, self.root, out, *self.terms)


def _kernels(fm: TaylorFeatureMap, like: Tensor, weighted: bool) -> Kernels:
    return _cached(fm, ("kernels", weighted, like.dtype), lambda: Kernels(fm, like, weighted))


def _key_sums(fm: TaylorFeatureMap, k: Tensor, keep: Tensor | None) -> Tensor:
    """sum_j keep_j u(k_j) (N, M) from the moments of k: for K = 3 the degree-2 sums are the entries of X^T X
    (X the scaled keys), one small product over the whole sequence instead of a reduction per block."""
    x = k * math.sqrt(fm.scale)  # (N, L, D)
    weighted = x if keep is None else x * keep.unsqueeze(-1)
    count = weighted.new_full((k.shape[0], 1), k.shape[-2]) if keep is None else keep.sum(-1, keepdim=True)
    parts = [count, weighted.sum(1)]
    if fm.order == 3:
        d = fm.dim
        flat = [i * d + j for i, j in (m for m in fm.monomials() if len(m) == 2)]
        second = torch.bmm(weighted.transpose(-2, -1), x).flatten(1)  # (N, D D)
        parts.append(second[:, torch.tensor(flat, device=k.device)])
    return torch.cat(parts, dim=-1)


# -- non-causal ----------------------------------------------------------------------------------------


class NonCausal(torch.autograd.Function):
    """(q, k, v, keep, fm) -> (out (N, Lq, Dv), S (N, M, Dv), z (N, M)); keep (N, Lk) is 1 for real keys or
    None."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap):
        n, dv, m = q.shape[0], v.shape[-1], fm.num_features
        tokens = plain.block_tokens(n, m, 1, max(q.shape[-2], k.shape[-2]), plain.FORWARD_BLOCK_ELEMENTS)
        weights = fm.feature_weights(q).unsqueeze(-1)  # (M, 1): phi = W u
        kernels = _kernels(fm, q, weighted=False)
        kt, qt = k.transpose(-2, -1), q.transpose(-2, -1)  # (N, D, L) views: the loops read tokens along rows
        kv = q.new_zeros(n, m, dv)  # sum u(k) v^T until the weights are applied
        for block in plain.blocks(k.shape[-2], tokens):
            vb = v[:, block] if keep is None else v[:, block] * keep[:, block, None]
            kernels.sum(vb.transpose(-2, -1), kt[..., block], out=kv.transpose(-2, -1), add=True)
        kv.mul_(weights)
        k_sum = _key_sums(fm, k, keep).mul_(weights.squeeze(-1))
        state_t = (torch.cat([kv, k_sum.unsqueeze(-1)], dim=-1) * weights).transpose(-2, -1).contiguous()
        out = q.new_empty(n, q.shape[-2], dv)
        normaliser = q.new_empty(n, q.shape[-2])
        buffers = {}  # per block length, [numerators, normaliser] token-major (N, T, Dv + 1)
        for block in plain.blocks(q.shape[-2], tokens):
            length = block.stop - block.start
            if length not in buffers:
                buffers[length] = q.new_empty(n, length, dv + 1)
            buffer = buffers[length]
            kernels.read(state_t, qt[..., block], out=buffer.transpose(-2, -1))
            normaliser[:, block] = buffer[..., dv]
            torch.div(buffer[..., :dv], buffer[..., dv:], out=out[:, block])
        ctx.save_for_backward(q, k, v, keep, kv, k_sum, out, normaliser)
        ctx.fm = fm
        ctx.set_materialize_grads(False)  # an unused result's gradient arrives as None: its pass is skipped
        return out, kv, k_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_kv, grad_k_sum):
        q, k, v, keep, kv, k_sum, out, normaliser = ctx.saved_tensors
        fm, dv = ctx.fm, v.shape[-1]
        tokens = plain.block_tokens(q.shape[0], fm.num_features, 1, max(q.shape[-2], k.shape[-2]))
        weights = fm.feature_weights(q).unsqueeze(-1)
        kernels = _kernels(fm, q, weighted=False)
        kt, qt = k.transpose(-2, -1), q.transpose(-2, -1)
        grad_q_t = (q.new_empty if grad_out is not None else q.new_zeros)(q.shape[0], q.shape[-1], q.shape[-2])
        grad_k_t = k.new_empty(k.shape[0], k.shape[-1], k.shape[-2])
        grad_v_t = v.new_empty(v.shape[0], v.shape[-1], v.shape[-2])  # (N, Dv, Lk)
        grad_kv_u, grad_k_sum_u = torch.zeros_like(kv), torch.zeros_like(k_sum)  # before W, through the outputs
        if grad_out is not None:
            state = torch.cat([kv, k_sum.unsqueeze(-1)], dim=-1) * weights  # (N, M, Dv + 1), d/du(q) = W d/dphi
            g_den = q.new_empty(q.shape[0], q.shape[-2])
            g_buffers = {}
            for block in plain.blocks(q.shape[-2], tokens):  # out = num / den: the gradients of num and den
                length = block.stop - block.start
                if length not in g_buffers:  # [g_num, g_den] transposed, (N, Dv + 1, T)
                    g_buffers[length] = q.new_empty(q.shape[0], dv + 1, length)
                g = g_buffers[length]
                torch.div(grad_out[:, block].transpose(-2, -1), normaliser[:, None, block], out=g[:, :dv])
                torch.sum(g[:, :dv] * out[:, block].transpose(-2, -1), dim=1, out=g[:, dv]).neg_()
                g_den[:, block] = g[:, dv]
                # grad kv = sum_t u(q_t) g_num,t; grad k_sum from the moments of q afterwards (Dv columns
                # here rather than Dv + 1: MKL-shaped loops run 16 faster than 17)
                kernels.sum(g[:, :dv], qt[..., block], out=grad_kv_u.transpose(-2, -1), add=True)
                kernels.gradient(state, g, qt[..., block], out=grad_q_t[..., block])
            grad_k_sum_u = _key_sums(fm, q, g_den)
        grad_kv_u.mul_(weights)  # kv = W sum u(k) v^T: through the outputs, d/dkv = W sum u(q) g_num
        grad_k_sum_u.mul_(weights.squeeze(-1))
        if grad_kv is not None:
            grad_kv_u += grad_kv
        if grad_k_sum is not None:
            grad_k_sum_u += grad_k_sum
        # d/du(k) = W [grad kv, grad k_sum] [V, 1]^T (times keep): the same shape of problem as the queries'
        grad_state = torch.cat([grad_kv_u, grad_k_sum_u.unsqueeze(-1)], dim=-1) * weights  # (N, M, Dv + 1)
        grad_kv_t = grad_state[..., :dv].transpose(-2, -1).contiguous()  # (N, Dv, M)
        v1 = F.pad(v, (0, 1), value=1.0)
        if keep is not None:
            v1 = v1 * keep.unsqueeze(-1)
        for block in plain.blocks(k.shape[-2], tokens):
            kernels.read(grad_kv_t, kt[..., block], out=grad_v_t[..., block])
            kernels.gradient(grad_state, v1[:, block].transpose(-2, -1), kt[..., block], out=grad_k_t[..., block])
            if keep is not None:
                grad_v_t[..., block] *= keep[:, None, block]
        return grad_q_t.transpose(-2, -1), grad_k_t.transpose(-2, -1), grad_v_t.transpose(-2, -1), None, None


# -- causal --------------------------------------------------------------------------------------------


class _CausalBlock:
    """One block of n chunks of C tokens for N sequences: forward and backward, every intermediate in a
    buffer owned by this object and reused from block to block and call to call.

    Layouts: values with the normaliser's column per chunk v1c (N n, C, Dv + 1); states transposed,
    (N, n, Dv + 1, M); the output token-major, (N n, C, Dv + 1), written by the loops through its transpose.
    """

    def __init__(self, fm: TaylorFeatureMap, batch: int, chunks: int, chunk: int, value_dim: int, like: Tensor):
        self.fm, self.n, self.c, self.batch = fm, chunks, chunk, batch
        bn, dv1 = batch * chunks, value_dim + 1
        self.v1c = like.new_empty(bn, chunk, dv1)
        self.v1c[..., value_dim] = 1.0  # the normaliser's column; a block with padding keys overwrites it
        self.ones = True
        self.out = like.new_empty(bn, chunk, dv1)
        self._scratch_before: Tensor | None = None
        self.kernels = _kernels(fm, like, weighted=True)

    def scratch_before(self) -> Tensor:
        """A (N, n, Dv + 1, M) buffer for the states before each chunk when nothing needs to keep them."""
        if self._scratch_before is None:
            shape = (self.batch, self.n, self.out.shape[-1], self.fm.num_features)
            self._scratch_before = self.out.new_empty(shape)
        return self._scratch_before

    def _chunked(self, t: Tensor) -> Tensor:
        """(N, X, T) transposed block -> (N, n, X, C), its chunks (a view)."""
        return t.unflatten(-1, (self.n, self.c)).transpose(1, 2)

    def _values(self, v: Tensor, keep: Tensor | None) -> None:
        """v1c = [V, 1] per chunk, times keep (N, T) when given (padding keys: zero weight in both sums)."""
        dv = v.shape[-1]
        v1c = self.v1c.view(self.batch, self.n, self.c, dv + 1)
        if keep is None:
            v1c[..., :dv].copy_(v.unflatten(1, (self.n, self.c)))
            if not self.ones:
                v1c[..., dv] = 1.0
                self.ones = True
        else:
            keep = keep.unflatten(1, (self.n, self.c))
            torch.mul(v.unflatten(1, (self.n, self.c)), keep.unsqueeze(-1), out=v1c[..., :dv])
            v1c[..., dv].copy_(keep)
            self.ones = False

    def forward(self, qt, kt, v, keep, state: Tensor, before: Tensor) -> tuple[Tensor, Tensor]:
        """-> (out (N, n, C, Dv + 1): numerators and normaliser, the state after the block (N, Dv + 1, M)).

        qt, kt (N, D, T), v (N, T, Dv), keep (N, T) or None; `before` (N, n, Dv + 1, M) receives the states
        before each chunk (for the backward). The output lives in a buffer that the next call overwrites.
        """
        self._values(v, keep)
        qc, kc = self._chunked(qt), self._chunked(kt)  # (N, n, D, C) views
        state_out = torch.empty_like(state)
        v1c_t = self.v1c.transpose(-2, -1).view(self.batch, self.n, -1, self.c)
        self.kernels.scan(v1c_t, kc, out=before, init=state, last=state_out)
        out_t = self.out.transpose(-2, -1)  # (N n, Dv + 1, C) view
        self.kernels.read(before.view(-1, *before.shape[-2:]), qc, out=out_t)
        raw = (qc.transpose(-2, -1), kc.transpose(-2, -1))  # (N, n, C, D)
        native.causal_chunks(*raw, self.v1c, self.fm.scale, self.fm.order, out=out_t)  # the masked C x C block
        return self.out.view(self.batch, self.n, self.c, -1), state_out

    def backward(self, qt, kt, v, keep, before, grad_out_t, grad_state_out, dest, block: slice) -> Tensor:
        """Writes the block's grads of q, k and v into `dest` = (grad_q (N, D, L), grad_k (N, D, L), grad_v
        (N, Dv, L)) (transposed, at `block`; grad_v before the padding weights) and returns the grad of the
        incoming state (N, Dv + 1, M).

        grad_out_t (N n, Dv + 1, C); `before`: the states before each chunk (N, n, Dv + 1, M) as the forward
        computed them."""
        self._values(v, keep)
        batch, dv1, m = self.batch, self.v1c.shape[-1], self.fm.num_features
        qc, kc = self._chunked(qt), self._chunked(kt)
        # out = before^T u(Q_c) + V1_c^T W^T; before_c = state + sum_{c' < c} S_c', state_out = state + sum_c S_c:
        # so dS_c = dstate_out + sum_{c' > c} dbefore_c', and dstate = dstate_out + sum_c dbefore_c (a reverse scan)
        grad_chunk_states_t = grad_out_t.new_empty(batch, self.n, dv1, m)
        grad_state = torch.empty_like(grad_state_out)
        g = grad_out_t.view(batch, self.n, dv1, -1)
        self.kernels.scan(g, qc, grad_chunk_states_t, grad_state_out, grad_state, reverse=True)
        grad_chunk_states_t = grad_chunk_states_t.view(-1, dv1, m)
        # every loop writes (or adds) straight into the sequence's gradients, (N, n, X, C) views
        grad_q, grad_k, grad_v = (self._chunked(t[..., block]) for t in dest)
        self.kernels.read(grad_chunk_states_t[:, : dv1 - 1], kc, out=grad_v)
        self.kernels.gradient(before.view(-1, dv1, m).transpose(-2, -1), grad_out_t, qc, out=grad_q)
        self.kernels.gradient(grad_chunk_states_t.transpose(-2, -1), self.v1c.transpose(-2, -1), kc, out=grad_k)
        raw = (qc.transpose(-2, -1), kc.transpose(-2, -1))  # (N, n, C, D)
        native.causal_chunks(*raw, self.v1c, self.fm.scale, self.fm.order, g=grad_out_t, grads=(grad_q, grad_k, grad_v))
        return grad_state


def _causal_block(fm: TaylorFeatureMap, batch: int, chunks: int, chunk: int, value_dim: int, like: Tensor):
    key = ("causal", batch, chunks, chunk, value_dim, like.dtype)
    return _cached(fm, key, lambda: _CausalBlock(fm, batch, chunks, chunk, value_dim, like))


def _to_chunks(t: Tensor, block: slice, chunks: int, chunk: int) -> Tensor:
    """(N, X, L) transposed tensor -> its block as (N n, X, C) (a copy)."""
    part = t[..., block].unflatten(-1, (chunks, chunk)).transpose(1, 2)  # (N, n, X, C)
    return part.reshape(-1, t.shape[1], chunk)


class Causal(torch.autograd.Function):
    """(q, k, v, keep, fm, C) -> (out (N, L, Dv), S (N, M, Dv), z (N, M)) with query i seeing keys j <= i."""

    @staticmethod
    def forward(ctx, q, k, v, keep: Tensor | None, fm: TaylorFeatureMap, chunk: int, for_backward: bool = True):
        """for_backward=False (no input needs a gradient): the states before each chunk go to one buffer
        reused by every block instead of being kept, M (Dv + 1) / C floats per token fewer to allocate."""
        n, length, m, dv = q.shape[0], q.shape[-2], fm.num_features, v.shape[-1]
        chunk = min(chunk, length)
        pad = -length % chunk
        if pad:  # padded keys get zero weight in both sums (keep = 0); padded queries are dropped
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            keep = F.pad(q.new_ones(n, length) if keep is None else keep, (0, pad))
        padded = q.shape[-2]
        qt, kt = q.transpose(-2, -1), k.transpose(-2, -1)  # (N, D, L) views
        tokens = plain.block_tokens(n, m, chunk, padded)
        state = q.new_zeros(n, dv + 1, m)  # transposed, as the blocks keep it
        out = q.new_empty(n, length, dv)  # the public layout, contiguous
        normaliser = q.new_empty(n, length)
        befores = []  # per block, the states before each chunk (the first is the state entering the block)
        for block in plain.blocks(padded, tokens):
            chunks = (block.stop - block.start) // chunk
            runner = _causal_block(fm, n, chunks, chunk, dv, q)
            # kept for the backward: M (Dv + 1) / C floats per token
            before = q.new_empty(n, chunks, dv + 1, m) if for_backward else runner.scratch_before()
            block_keep = None if keep is None else keep[:, block]
            block_out, state = runner.forward(qt[..., block], kt[..., block], v[:, block], block_keep, state, before)
            if for_backward:
                befores.append(before)
            block_out, real = block_out.flatten(1, 2), slice(block.start, min(block.stop, length))
            block_out = block_out[:, : real.stop - real.start]  # without the padded queries
            normaliser[:, real] = block_out[..., dv]
            torch.div(block_out[..., :dv], block_out[..., dv:], out=out[:, real])
        ctx.save_for_backward(qt, kt, v, keep, out, normaliser, *befores)
        ctx.fm, ctx.chunk, ctx.tokens, ctx.length = fm, chunk, tokens, length
        ctx.set_materialize_grads(False)  # an unused result's gradient arrives as None: its pass is skipped
        return out, state[:, :dv].transpose(-2, -1).contiguous(), state[:, dv].contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_kv, grad_k_sum):
        qt, kt, v, keep, out, normaliser, *befores = ctx.saved_tensors
        fm, length, chunk = ctx.fm, ctx.length, ctx.chunk
        n, padded, dv = qt.shape[0], qt.shape[-1], v.shape[-1]
        grad_state = torch.zeros_like(befores[0][:, 0])  # (N, Dv + 1, M)
        if grad_kv is not None:
            grad_state[:, :dv] = grad_kv.transpose(-2, -1)
        if grad_k_sum is not None:
            grad_state[:, dv] = grad_k_sum
        grad_out_t = qt.new_zeros(n, dv + 1, padded)  # gradients of the numerators and the normaliser
        if grad_out is not None:
            g_num_t = grad_out_t[:, :dv, :length]
            torch.div(grad_out.transpose(-2, -1), normaliser.unsqueeze(1), out=g_num_t)
            torch.sum(g_num_t * out.transpose(-2, -1), dim=1, out=grad_out_t[:, dv, :length]).neg_()
        grad_q_t = qt.new_empty(n, qt.shape[1], padded)
        grad_k_t = kt.new_empty(n, kt.shape[1], padded)
        grad_v_t = v.new_empty(n, dv, padded)
        blocks = plain.blocks(padded, ctx.tokens)
        for block, before in zip(reversed(blocks), reversed(befores), strict=True):
            chunks = (block.stop - block.start) // chunk
            runner = _causal_block(fm, n, chunks, chunk, dv, qt)
            g_block = _to_chunks(grad_out_t, block, chunks, chunk)
            block_keep = None if keep is None else keep[:, block]
            grad_state = runner.backward(
                qt[..., block], kt[..., block], v[:, block], block_keep, before, g_block, grad_state,
                (grad_q_t, grad_k_t, grad_v_t), block,
            )  # fmt: skip
        grad_v = grad_v_t[..., :length].transpose(-2, -1)
        if keep is not None:
            grad_v = grad_v * keep[:, :length].unsqueeze(-1)
        grad_q, grad_k = grad_q_t[..., :length].transpose(-2, -1), grad_k_t[..., :length].transpose(-2, -1)
        return grad_q, grad_k, grad_v, None, None, None, None


def fused_attention(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap, causal: bool, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised output (N, Lq, Dv), contiguous, and the final state kv (N, M, Dv), k_sum (N, M).

    q (N, Lq, D), k (N, Lk, D), v (N, Lk, Dv); keep (N, Lk): 1 for real keys, 0 for padding, or None.
    The caller checks `applies` first."""
    if causal:
        for_backward = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        return Causal.apply(q, k, v, keep, fm, chunk, for_backward)
    return NonCausal.apply(q, k, v, keep, fm)
