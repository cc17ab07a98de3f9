"""The fast Taylor linear-attention kernels: blockwise over the sequence, features recomputed in backward.

Inputs are flattened to (N, L, D) with N = batch x heads. Nothing of size L x M is ever stored:

- the sequence is cut into blocks of T tokens, small enough that a block's features (N, M, T) stay in
  cache (BLOCK_ELEMENTS; the non-causal forward, which holds nothing else of that size, takes blocks
  twice as long: FORWARD_BLOCK_ELEMENTS); features are built transposed, one contiguous row per feature
  (`TaylorFeatureMap`'s fast path);
- non-causal: S = sum_b Phi(K_b)^T V_b (N, M, Dv) and z = sum_b Phi(K_b)^T 1 (N, M) (for K <= 3, z from
  the moments of K: count, sum and K^T K, see `_key_sums`), then each query block
  reads [S, z]^T Phi(Q_b) (N, Dv + 1, T): numerator and normaliser in one product (the backward's
  gradient of z again from the moments, of Q weighted by the normaliser's gradient). Forward and backward
  are written by hand (no autograd graph), with the products laid out the way MKL runs fastest
  (Dv = 16 columns rather than 17, features as the contiguous operand), and the multinomial weights of the
  features folded into the (M x Dv) states, so each block computes only the bare monomials;
- causal: each block is cut into chunks of C tokens, processed all at once: per-chunk states (kept
  transposed, (Dv + 1) x M, the layout MKL forms fastest), an exclusive cumulative sum (one strictly-lower-
  triangular product) seeded with the state carried in from the previous blocks, a read of that prefix state and a
  masked C x C block scored from q k^T directly (the truncated series: O(C D) per query, not O(C M));
  forward and backward are hand-written too, every intermediate in buffers reused from block to block,
  V and the padding weights read straight into the chunk buffer (no [V, 1] copy of the sequence);
- the scale of exp(scale q^T k) is folded into q and k once (x = sqrt(scale) q), never applied to scores;
- for K <= 3 the input gradient of a block never forms dL/dPhi (N, M, T) (`QuadraticGradient`): a product
  of the state, regathered as (D (D + 1) x Dv), with the output gradient, then a weighted sum against [1, x];
- compiled kernels (`dllab.attention.native`; compact map, K <= 3, CPU float32 / float64, a C compiler):
  every product with the features (`FeatureProducts.read` and `.sum`), the input gradient and the causal
  C x C block run as fused loops that build each tile's features in registers, so no features are built
  at all and the causal kernels read and write the sequence's chunks in place. What is described above is
  their PyTorch twin, kept for the other cases and tested against them;
- backward recomputes each block's features, so training memory is O(L D + M Dv) per (batch, head) plus
  one block, instead of O(L M); the causal path also keeps the forward's states before each chunk,
  M (Dv + 1) / C floats per token (41 for D = 16, C = 64), which spares the backward recomputing them
  (2.41x -> 2.09x the non-causal forward + backward at L = 16,384, one thread, 2026-12-03).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import torch
from torch import Tensor
from torch.nn import functional as F

from dllab.attention import native
from dllab.attention.feature_map import TaylorFeatureMap

# Elements of one block's features (N x M x T): about 2 MiB of float32, what the 2-core CPU's caches hold.
BLOCK_ELEMENTS = 1 << 19
# The non-causal forward keeps only two (M x Dv) states beside a block's features: blocks twice as long
# halve its number of products; its backward holds (D (D + 1) x T) gradients too and keeps BLOCK_ELEMENTS.
FORWARD_BLOCK_ELEMENTS = 1 << 20


def block_tokens(batch: int, num_features: int, chunk: int, length: int, elements: int | None = None) -> int:
    """Tokens per block: a multiple of `chunk`, about `elements` (default BLOCK_ELEMENTS) / (batch x M),
    at most `length`."""
    elements = BLOCK_ELEMENTS if elements is None else elements
    tokens = max(chunk, (elements // max(1, batch * num_features)) // chunk * chunk)
    return min(tokens, -(-length // chunk) * chunk)


def _blocks(length: int, tokens: int):
    return [slice(start, min(start + tokens, length)) for start in range(0, length, tokens)]


# Buffers that outlive a call: building a causal block's (two feature workspaces, the C x C and state
# buffers) took 90-260 us, twice per call and again in the backward, 8% of a causal forward at L = 2,048.
# A few per thread, least recently used dropped, so calls from several threads never share a buffer; each
# holds about 2-10 MiB (blocks are sized by BLOCK_ELEMENTS whatever the batch), `clear_buffers` frees them.
_CACHE_SIZE = 8
_CACHE = threading.local()


def clear_buffers() -> None:
    """Free this thread's cached kernel buffers (they are rebuilt on the next call)."""
    _CACHE.entries = OrderedDict()


def _cached(fm: TaylorFeatureMap, key: tuple, build):
    """The object `build()` made on this thread for a map with fm's (D, K, form, scale), which is all the
    buffers depend on (so a fresh but equal map, as a benchmark makes, reuses them), and `key`."""
    cache = getattr(_CACHE, "entries", None)
    if cache is None:
        cache = _CACHE.entries = OrderedDict()
    key = (fm.dim, fm.order, fm.form, fm.scale, *key)
    entry = cache.get(key)
    if entry is None:
        entry = cache[key] = build()
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return entry


def _quadratic(fm: TaylorFeatureMap, like: Tensor) -> QuadraticGradient | None:
    """The non-causal kernel's cached QuadraticGradient (bare monomials), or None when it does not apply."""
    if not QuadraticGradient.applies(fm):
        return None
    return _cached(fm, ("quadratic", like.dtype, like.device), lambda: QuadraticGradient(fm, like))


class _Workspaces:
    """One FeatureWorkspace per block length (all blocks have T tokens except perhaps the last); those of
    compact maps cached across calls (the generic path's hold the call's tensors)."""

    def __init__(self, fm: TaylorFeatureMap, batch: int, like: Tensor, weighted: bool = True):
        self.fm, self.batch, self.like, self.weighted, self.by_length = fm, batch, like, weighted, {}

    def __call__(self, block: slice):
        length = block.stop - block.start
        if length not in self.by_length:
            fm, like = self.fm, self.like

            def build():
                return fm.workspace(self.batch, length, like, role="block", weighted=self.weighted)

            key = ("features", self.batch, length, self.weighted, like.dtype, like.device)
            self.by_length[length] = _cached(fm, key, build) if fm.form == "compact" else build()
        return self.by_length[length]


def _weights(fm: TaylorFeatureMap, like: Tensor) -> Tensor | None:
    """(M, 1) feature weights to fold into the (M x Dv) states, or None to use weighted features."""
    return fm.feature_weights(like).unsqueeze(-1) if fm.form == "compact" else None


class QuadraticGradient:
    """dL/dx for the bare monomials of a compact map with K <= 3, without forming dL/du.

    The kernels need dL/dx where dL/du = S g, for a (B, M, C) matrix S (a state, weights folded in) and a
    (B, C, T) block g. For K = 3, u = [1, x, x_i x_j (i <= j)], so

        dL/dx_a = sum_c g_c (S[x_a, c] + sum_b B_c[a, b] x_b),   B_c[a, b] = S[x_a x_b, c] (twice on the diagonal)

    On the CPU in float32 / float64 the compiled kernel of `dllab.attention.native` computes that sum tile by
    tile, straight from S (2.1-2.4x faster than the PyTorch path per block). The PyTorch path (without a C
    compiler, on other devices, or with DLLAB_NATIVE=0) forms one product of the (B, D (D + 1), C) matrix
    A = [S[x_a], B[a, :]] with g, then a weighted sum over b against x' = [1, x] (the first D + 1 rows of the
    features): three large operations per block instead of the two per input coordinate that the generic
    `FeatureWorkspace.input_gradient` needs. Use: `a = prepare(S)` once per state, then `gradient(a, g, phi)`.
    """

    def __init__(self, fm: TaylorFeatureMap, like: Tensor, weighted: bool = False, use_native: bool | None = None):
        """weighted: S multiplies the weighted features phi = W u (so dL/du = W S g), not the bare u.
        use_native: None uses the compiled kernel where it applies; False forces the PyTorch path."""
        d = fm.dim
        # for each a: b = 0 pairs with the constant 1 of x' (the degree-1 feature x_a), then the pairs x_a x_b
        rows = torch.arange(1, d + 1).unsqueeze(1)  # (D, 1)
        factors = torch.ones(d, 1, dtype=torch.float64)
        if weighted:
            factors = factors * fm.feature_weights(factors)[rows]
        if fm.order == 3:
            pair_rows, coef = fm.pair_derivatives(weighted)
            rows, factors = torch.cat([rows, pair_rows], dim=1), torch.cat([factors, coef], dim=1)
        factors = factors * fm._root_scale  # dx/d(raw input) = sqrt(scale): folded in, no pass over the result
        self.dim, self.width = d, rows.shape[1]
        self.native = native.supports(like) if use_native is None else use_native and native.supports(like)
        if self.native:  # the kernel's terms, grouped by a: x_a's own row (b = 0), then x_a x_b for b >= a
            starts, index, partners = [0], [], []
            for a in range(d):
                for b in range(self.width):
                    if b == 0 or b - 1 >= a:  # the pair's factor is symmetric: one term serves x_a and x_b
                        index.append(a * self.width + b)
                        partners.append(b - 1)  # -1: the degree-1 row, no partner
                starts.append(len(index))
            picked = torch.tensor(index)
            self.terms = (
                torch.tensor(starts),
                rows.flatten()[picked].contiguous(),
                torch.tensor(partners, dtype=torch.int32),
                factors.flatten()[picked].to(like.dtype).contiguous(),
            )
        self.rows = rows.flatten().to(like.device)
        self.factors = factors.flatten().to(like).unsqueeze(-1)
        self.root = fm._root_scale
        self.buffers: dict[tuple[int, ...], Tensor] = {}  # the (B, D x width, T) products, per shape

    @staticmethod
    def applies(fm: TaylorFeatureMap) -> bool:
        return fm.form == "compact" and 2 <= fm.order <= 3

    def prepare(self, state: Tensor) -> Tensor:
        """A state (B, M, C), any strides -> what `gradient` takes: the state itself for the compiled kernel,
        else A (B, D x width, C)."""
        return state if self.native else state.index_select(1, self.rows).mul_(self.factors)

    def prepare_transposed(self, state_t: Tensor) -> Tensor:
        """`prepare` for a state kept transposed, (B, C, M) contiguous. For the PyTorch path one gather over the
        (B C, M) matrix: index_select on the transposed view instead ran 1.4-1.6x slower."""
        if self.native:
            return state_t.transpose(-2, -1)
        batch, channels, m = state_t.shape
        a_t = state_t.reshape(-1, m).index_select(1, self.rows).view(batch, channels, -1)
        return a_t.mul_(self.factors.T).transpose(-2, -1)

    def gradient(
        self, a: Tensor, g: Tensor, phi: Tensor | None, out: Tensor | None = None, inputs: Tensor | None = None
    ) -> Tensor:
        """`prepare`d state a, g (B, C, T), features phi (B, M, T) of x -> dL/d(raw input) (B, D, T), a new
        tensor or written into `out` (any strides: the sum writes a slice of the whole sequence's gradient
        directly, 60 us against 100 us for a sum and a copy, L = 16,384 blocks). The compiled kernel needs
        only x: `inputs` (B, D, T), the raw inputs, may replace phi (then None)."""
        batch, tokens = g.shape[0], g.shape[-1]
        if self.native:
            out = g.new_empty(batch, self.dim, tokens) if out is None else out
            x, scale = (phi[:, 1 : 1 + self.dim], 1.0) if inputs is None else (inputs, self.root)
            return native.quadratic_gradient(a, g, x, scale, out, *self.terms)
        shape = (batch, a.shape[1], tokens)
        h = self.buffers.get(shape)
        if h is None:
            if len(self.buffers) >= 2:  # a call needs two shapes at most (full blocks, the last one)
                self.buffers.pop(next(iter(self.buffers)))
            h = self.buffers[shape] = a.new_empty(shape)
        h = torch.bmm(a, g, out=h).view(batch, self.dim, self.width, tokens)
        if self.width == 1:  # a copy: h is reused by the next call
            return h.squeeze(2).clone() if out is None else out.copy_(h.squeeze(2))
        h.mul_(phi[:, None, : self.width])
        return torch.sum(h, dim=2, out=out)


class FeatureProducts:
    """Products with the bare monomials u (B, M, T) of x = sqrt(scale) xt, without forming u: the compiled
    kernels of `dllab.attention.native` (compact map, K <= 3, CPU, float32 / float64).

    - `read(A, xt)`: A u, for A (B, C, M): what the queries' features are for (a state read), and the keys'
      in the backward (the gradient of V);
    - `sum(G, xt)`: G u^T, for G (B, C, T): a state sum_t u_t g_t^T kept transposed, or its gradient.

    Where they do not apply (`_products` gives None) the kernels build the features in a `FeatureWorkspace`
    and multiply, `A @ u` and `G @ u^T`: the twins the tests compare them with. With both, the Taylor
    kernels build no features at all.
    """

    def __init__(self, fm: TaylorFeatureMap, like: Tensor, weighted: bool):
        """weighted: the products are with the weighted features phi = W u (the causal kernel's), not u."""
        monomials = fm.monomials()
        self.first = torch.tensor([m[0] if len(m) == 2 else 0 for m in monomials], dtype=torch.int32)
        self.second = torch.tensor([m[1] if len(m) == 2 else 0 for m in monomials], dtype=torch.int32)
        self.weights = fm.feature_weights(like).contiguous() if weighted else None
        self.root = fm._root_scale

    def read(self, a: Tensor, xt: Tensor, out: Tensor) -> Tensor:
        """a (B, C, M), raw inputs xt (B, D, T) -> out (B, C, T); or all three with two batch levels, (B1, B2,
        ...), for chunks read and written in place; any strides."""
        return native.feature_read(a, xt, self.root, out, self.first, self.second, self.weights)

    def sum(self, g: Tensor, xt: Tensor, out: Tensor, add: bool = False) -> Tensor:
        """g (B, C, T), raw inputs xt (B, D, T) -> out (B, C, M) (`add`: out += it); or all three with two batch
        levels, (B1, B2, ...), for chunks read in place; any strides."""
        return native.feature_sum(g, xt, self.root, out, self.first, self.second, self.weights, add)

    def scan(self, g: Tensor, xt: Tensor, out: Tensor, init: Tensor, last: Tensor, reverse: bool = False):
        """Over chunks in order (or in reverse): g (B1, n, C, T), raw inputs xt (B1, n, D, T) -> out (B1, n, C, M),
        init (B1, C, M) plus the sums of the chunks before (after) each one, an exclusive prefix (suffix) sum;
        last = init plus all of them."""
        scan = -1 if reverse else 1
        return native.feature_sum(g, xt, self.root, out, self.first, self.second, self.weights, False, scan, init, last)


def _products(fm: TaylorFeatureMap, like: Tensor, weighted: bool) -> FeatureProducts | None:
    """The cached FeatureProducts for fm, or None where the compiled kernels do not apply."""
    if not (QuadraticGradient.applies(fm) and native.supports(like)):
        return None
    key = ("products", weighted, like.dtype, like.device)
    return _cached(fm, key, lambda: FeatureProducts(fm, like, weighted))


def _key_sums(fm: TaylorFeatureMap, k: Tensor, keep: Tensor | None) -> Tensor | None:
    """sum_j keep_j u(k_j) (N, M) from the moments of k, for compact maps with K <= 3 (else None).

    For K = 3 the degree-2 sums are the entries of X^T X (X the scaled keys): one small product over the whole
    sequence instead of a reduction over every block of features.
    """
    if not QuadraticGradient.applies(fm):
        return None
    x = k * fm._root_scale  # (N, L, D)
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


class NonCausalTaylorAttention(torch.autograd.Function):
    """(q, k, v, keep) -> (out (N, Lq, Dv), S (N, M, Dv), z (N, M)); keep (N, Lk) is 1 for real keys or None."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap):
        n, dv, m = q.shape[0], v.shape[-1], fm.num_features
        tokens = block_tokens(n, m, 1, max(q.shape[-2], k.shape[-2]), FORWARD_BLOCK_ELEMENTS)
        # Bare monomials u with phi = W u: the weights W go on the small states, not on every block.
        weights = _weights(fm, q)
        workspace = _Workspaces(fm, n, q, weighted=weights is None)
        kt, qt = k.transpose(-2, -1), q.transpose(-2, -1)  # (N, D, L) views: each block is read transposed
        kv = q.new_zeros(n, m, dv)  # sum u(k) v^T until the weights are applied
        k_sum = _key_sums(fm, k, keep)  # sum u(k): from the moments of k when K <= 3
        summed = k_sum is None
        if summed:
            k_sum = q.new_zeros(n, m)
        products = _products(fm, q, weighted=False)  # with them, no block of features is built
        for block in _blocks(k.shape[-2], tokens):
            if products:  # k_sum came from the moments (the kernels apply for K <= 3 only)
                vb = v[:, block] if keep is None else v[:, block] * keep[:, block, None]
                products.sum(vb.transpose(-2, -1), kt[..., block], out=kv.transpose(-2, -1), add=True)
                continue
            phi = workspace(block).features(kt[..., block])  # (N, M, T)
            if keep is None:
                kv.baddbmm_(phi, v[:, block])
                if summed:
                    k_sum += phi.sum(-1)
            else:  # padding keys: zero weight in both sums
                kv.baddbmm_(phi, v[:, block] * keep[:, block, None])
                if summed:
                    k_sum.unsqueeze(-1).baddbmm_(phi, keep[:, block, None])
        if weights is not None:
            kv.mul_(weights)
            k_sum.mul_(weights.squeeze(-1))
        state = torch.cat([kv, k_sum.unsqueeze(-1)], dim=-1)  # (N, M, Dv + 1)
        if weights is not None:  # phi(q)^T S = u(q)^T (W S)
            state = state * weights
        state_t = state.transpose(-2, -1).contiguous()  # (N, Dv + 1, M)
        out_t = q.new_empty(n, dv, q.shape[-2])  # returned as its transposed view (see taylor_attention)
        normaliser = q.new_empty(n, q.shape[-2])
        buffers = {}  # per block length: MKL writes a contiguous buffer faster than a strided slice
        for block in _blocks(q.shape[-2], tokens):
            length = block.stop - block.start
            buffer = buffers.get(length)
            if buffer is None:
                buffer = buffers[length] = q.new_empty(n, dv + 1, length)
            if products:  # numerators, normaliser
                products.read(state_t, qt[..., block], out=buffer)
            else:
                torch.bmm(state_t, workspace(block).features(qt[..., block]), out=buffer)
            normaliser[:, block] = buffer[:, dv]
            torch.div(buffer[:, :dv], buffer[:, dv:], out=out_t[..., block])
        out = out_t.transpose(-2, -1)
        ctx.save_for_backward(q, k, v, keep, kv, k_sum, out, normaliser)
        ctx.fm = fm
        return out, kv, k_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_kv, grad_k_sum):
        q, k, v, keep, kv, k_sum, out, normaliser = ctx.saved_tensors
        fm, dv = ctx.fm, v.shape[-1]
        tokens = block_tokens(q.shape[0], fm.num_features, 1, max(q.shape[-2], k.shape[-2]))
        weights = _weights(fm, q)
        workspace = _Workspaces(fm, q.shape[0], q, weighted=weights is None)
        kt, qt = k.transpose(-2, -1), q.transpose(-2, -1)
        grad_kv_u = torch.zeros_like(kv)  # through the outputs, as gradients of sum u(k) v^T (before W)
        grad_k_sum_u = torch.zeros_like(k_sum)
        grad_q_t = (q.new_empty if grad_out is not None else q.new_zeros)(q.shape[0], q.shape[-1], q.shape[-2])
        grad_k_t = k.new_empty(k.shape[0], k.shape[-1], k.shape[-2])
        grad_v_t = v.new_empty(v.shape[0], v.shape[-1], v.shape[-2])  # (N, Dv, Lk)
        if grad_out is not None:
            state = torch.cat([kv, k_sum.unsqueeze(-1)], dim=-1)  # (N, M, Dv + 1)
            if weights is not None:  # d/du(q) = W d/dphi(q)
                state = state * weights
            quadratic = _quadratic(fm, q)
            a = quadratic.prepare(state) if quadratic else None
            products = _products(fm, q, weighted=False) if quadratic and quadratic.native else None
            # [grad kv, grad k_sum] before W; for K <= 3 grad k_sum = sum_t g_den,t u(q_t) comes from the
            # moments of q afterwards, and the blocks' product has Dv columns (MKL: 16 run faster than 17)
            moments = quadratic is not None
            grad_state_u = q.new_zeros(q.shape[0], fm.num_features, dv if moments else dv + 1)
            g_den = q.new_empty(q.shape[0], q.shape[-2]) if moments else None
            out_t, g_buffers = out.transpose(-2, -1), {}  # out is stored transposed (N, Dv, Lq)
            for block in _blocks(q.shape[-2], tokens):  # out = num / den: the gradients of num and den
                length = block.stop - block.start
                g = g_buffers.get(length)
                if g is None:  # [g_num, g_den] transposed, (N, Dv + 1, T)
                    g = g_buffers[length] = q.new_empty(q.shape[0], dv + 1, length)
                torch.div(grad_out[:, block].transpose(-2, -1), normaliser[:, None, block], out=g[:, :dv])
                torch.sum(g[:, :dv] * out_t[..., block], dim=1, out=g[:, dv]).neg_()
                if moments:
                    g_den[:, block] = g[:, dv]
                if products:
                    products.sum(g[:, :dv], qt[..., block], out=grad_state_u.transpose(-2, -1), add=True)
                    quadratic.gradient(a, g, None, out=grad_q_t[..., block], inputs=qt[..., block])
                    continue
                ws = workspace(block)
                phi = ws.features(qt[..., block])  # (N, M, T)
                grad_state_u.baddbmm_(phi, (g[:, :dv] if moments else g).transpose(-2, -1))
                if quadratic:
                    quadratic.gradient(a, g, phi, out=grad_q_t[..., block])
                else:
                    grad_q_t[..., block] = ws.input_gradient(state @ g)  # via (N, M, T)
            if moments:
                grad_kv_u, grad_k_sum_u = grad_state_u, _key_sums(fm, q, g_den)
            else:
                grad_kv_u, grad_k_sum_u = grad_state_u[..., :dv], grad_state_u[..., dv]
        if weights is not None:  # d/dkv = W (u(q) g) through the outputs; d/du(k) = W d/dphi(k) below
            grad_kv_u.mul_(weights)
            grad_k_sum_u.mul_(weights.squeeze(-1))
        grad_kv = grad_kv_u if grad_kv is None else grad_kv_u + grad_kv
        grad_k_sum = grad_k_sum_u if grad_k_sum is None else grad_k_sum_u + grad_k_sum
        if weights is not None:
            grad_kv, grad_k_sum = grad_kv * weights, grad_k_sum * weights.squeeze(-1)
        grad_kv_t = grad_kv.transpose(-2, -1).contiguous()  # (N, Dv, M)
        # d/du(k) = [grad kv, grad k_sum] [V, 1]^T (times keep): the same shape of problem as the queries'
        grad_state = torch.cat([grad_kv, grad_k_sum.unsqueeze(-1)], dim=-1)  # (N, M, Dv + 1)
        v1 = F.pad(v, (0, 1), value=1.0)
        if keep is not None:
            v1 = v1 * keep.unsqueeze(-1)
        quadratic = _quadratic(fm, k)
        a = quadratic.prepare(grad_state) if quadratic else None
        buffers = {}  # per block length: MKL writes a contiguous buffer faster than a strided slice
        products = _products(fm, k, weighted=False) if quadratic and quadratic.native else None
        for block in _blocks(k.shape[-2], tokens):  # kv = sum Phi(K)^T V, k_sum = sum Phi(K)^T 1
            g = v1[:, block].transpose(-2, -1)  # (N, Dv + 1, T)
            if products:
                products.read(grad_kv_t, kt[..., block], out=grad_v_t[..., block])
                quadratic.gradient(a, g, None, out=grad_k_t[..., block], inputs=kt[..., block])
                if keep is not None:
                    grad_v_t[..., block] *= keep[:, None, block]
                continue
            ws = workspace(block)
            phi = ws.features(kt[..., block])
            length = block.stop - block.start
            buffer = buffers.get(length)
            if buffer is None:
                buffer = buffers[length] = grad_v_t.new_empty(grad_v_t.shape[0], dv, length)
            grad_v_t[..., block] = torch.bmm(grad_kv_t, phi, out=buffer)
            if keep is not None:
                grad_v_t[..., block] *= keep[:, None, block]
            if quadratic:
                quadratic.gradient(a, g, phi, out=grad_k_t[..., block])
            else:
                grad_k_t[..., block] = ws.input_gradient(grad_state @ g)
        return grad_q_t.transpose(-2, -1), grad_k_t.transpose(-2, -1), grad_v_t.transpose(-2, -1), None, None


# -- causal --------------------------------------------------------------------------------------------


class _CausalBlock:
    """One block of n chunks of C tokens for N sequences: forward and backward without autograd.

    Every intermediate lives in a buffer owned by this object and reused from block to block. Layouts:
    features (N n, M, C) from two workspaces (queries, keys); values with the normaliser column
    v1c (N n, C, Dv + 1); chunk states, like every state here, transposed (N, n, Dv + 1, M): MKL forms them
    about 20% faster than (M x Dv + 1), and the read takes them as they are; scores (N n, C, C); outputs transposed,
    (N n, Dv + 1, C).
    """

    def __init__(self, fm: TaylorFeatureMap, batch: int, chunks: int, chunk: int, value_dim: int, like: Tensor):
        self.fm, self.n, self.c, self.batch = fm, chunks, chunk, batch
        bn, m, dv1 = batch * chunks, fm.num_features, value_dim + 1
        self.v1c = like.new_empty(bn, chunk, dv1)
        self.v1c[..., value_dim] = 1.0  # the normaliser's column; a block with padding keys overwrites it
        self.ones = True
        self._scratch_before: Tensor | None = None
        self.out_t = like.new_empty(bn, dv1, chunk)
        self.phi_q = self.phi_k = self.x_q = self.x_k = self.qt = self.kt = None  # this call's, see _recompute
        self.quadratic = QuadraticGradient(fm, like, weighted=True) if QuadraticGradient.applies(fm) else None
        # with the compiled kernels no features are built: only the scaled inputs, for the C x C scores
        self.products = _products(fm, like, weighted=True) if self.quadratic and self.quadratic.native else None
        # and the masked C x C block is one compiled loop per chunk, forward and backward (no scores kept)
        self.chunks = self.products is not None and native.causal_chunks_apply(like, fm.dim, fm.order)
        self.ws_q = self.ws_k = self.weights = None
        if self.chunks:  # none of the PyTorch path's buffers (about 5 MiB for a block at D = 16)
            return
        self.ws_q = fm.workspace(bn, chunk, like, role="causal queries")
        self.ws_k = fm.workspace(bn, chunk, like, role="causal keys")
        self.mask = torch.ones(chunk, chunk, dtype=like.dtype, device=like.device).tril()
        self.scores = like.new_empty(bn, chunk, chunk)
        self.weights = like.new_empty(bn, chunk, chunk)
        if self.products:  # the compiled scans give the states before each chunk and their gradients
            return
        self.prefix = self.mask.new_ones(chunks, chunks).tril(-1).expand(batch, -1, -1)  # strictly earlier chunks
        self.suffix = self.mask.new_ones(chunks, chunks).triu(1).expand(batch, -1, -1)  # strictly later chunks
        self.chunk_states = like.new_empty(bn, dv1, m)

    def scratch_before(self) -> Tensor:
        """A (N, n, Dv + 1, M) buffer for the states before each chunk when nothing needs to keep them."""
        if self._scratch_before is None:
            shape = (self.batch, self.n, self.out_t.shape[1], self.fm.num_features)
            self._scratch_before = self.out_t.new_empty(shape)
        return self._scratch_before

    def _chunked(self, t: Tensor) -> Tensor:
        """(N, X, T) transposed block -> (N, n, X, C), its chunks (a view)."""
        return t.unflatten(-1, (self.n, self.c)).transpose(1, 2)

    def _features(self, ws, xt: Tensor) -> tuple[Tensor, Tensor]:
        """xt (N, D, T) block -> its features and scaled inputs per chunk, (N n, M, C) and (N n, D, C); with
        `self.products` only the inputs, in the features' degree-1 rows.

        (Tried: features built as (M, N T) rows and read through strided chunk views. 30% faster
        elementwise products, but 20% slower blocks on 2 threads, 2026-12-03.)"""
        chunked = self._chunked(xt)
        phi = ws.inputs(chunked) if self.products else ws.features(chunked)  # compact: the (N n, M, C) buffer
        phi = phi.reshape(-1, *phi.shape[-2:])
        return phi, phi[:, 1 : 1 + self.fm.dim]

    def _input_gradient(self, ws, grad_phi: Tensor) -> Tensor:
        """dL/dx (N n, D, C) from dL/dphi (N n, M, C), for a map without `QuadraticGradient`."""
        grad = ws.input_gradient(grad_phi.view(self.batch, self.n, *grad_phi.shape[1:]) if not ws.compact else grad_phi)
        return grad.reshape(-1, *grad.shape[-2:])

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

    def _recompute(self, qt, kt, v, keep, state: Tensor | None, before: Tensor):
        """Features, values per chunk, the states before each chunk and the masked C x C weights of one block.

        qt, kt (N, D, T): the block's queries and keys, transposed (views). `before` (N, n, Dv + 1, M): the
        states before each chunk, transposed. The forward passes the incoming `state` (N, Dv + 1, M) and an
        empty `before` to fill (and gets `state_out`); the backward passes state=None and the `before` that
        the forward filled."""
        fm, m = self.fm, self.fm.num_features
        self.qt, self.kt = qt, kt  # the raw inputs, for the compiled kernels (dropped by _release)
        # with the compiled chunk kernel nothing of the features is built: every kernel reads the raw chunks
        self.phi_k, self.x_k = phi_k, x_k = (None, None) if self.chunks else self._features(self.ws_k, kt)
        self._values(v, keep)
        if state is not None and self.products:  # the states before each chunk in one pass over the keys
            v1c_t = self.v1c.transpose(-2, -1).view(self.batch, self.n, -1, self.c)
            self.state_out = torch.empty_like(state)
            self.products.scan(v1c_t, self._chunked(kt), out=before, init=state, last=self.state_out)
        elif state is not None:
            chunk_states = self.chunk_states.view(self.batch, self.n, -1, m)
            torch.bmm(self.v1c.transpose(-2, -1), phi_k.transpose(-2, -1), out=self.chunk_states)
            # the state before each chunk, the incoming one plus the earlier chunks: the exclusive cumulative
            # sum as one strictly-lower-triangular (n x n) product with the incoming state as its bias
            flat, rows = before.view(self.batch, self.n, -1), chunk_states.view(self.batch, self.n, -1)
            torch.baddbmm(state.view(self.batch, 1, -1), self.prefix, rows, out=flat)
            self.state_out = before[:, -1] + chunk_states[:, -1]
        if self.chunks:  # the C x C block is computed by native.causal_chunks
            return
        self.phi_q, self.x_q = self._features(self.ws_q, qt)
        weights = self.weights
        if fm.order >= 2:  # scores from the scaled inputs held in the features' degree-1 rows
            torch.bmm(self.x_q.transpose(-2, -1), x_k, out=self.scores)  # (N n, C, C)
            s, c = self.scores, [1.0 / math.factorial(n) for n in range(fm.order)]
            if fm.order == 3:  # (1 + s + s^2 / 2) masked in two passes: mask + (s + s^2 / 2) mask
                torch.addcmul(s, s, s, value=0.5, out=weights)
                torch.addcmul(self.mask, weights, self.mask, out=weights)
            else:  # Horner: sum_{n<K} c_n s^n
                torch.mul(s, c[-1], out=weights)
                for n in range(fm.order - 2, -1, -1):
                    weights.add_(c[n])
                    if n:
                        weights.mul_(s)
                weights.mul_(self.mask)
        else:
            weights.copy_(self.mask.expand_as(weights))

    def forward(self, qt, kt, v, keep, state: Tensor, before: Tensor) -> tuple[Tensor, Tensor]:
        """-> (out (N n, Dv + 1, C): numerators and normaliser, the state after the block (N, Dv + 1, M)).

        qt, kt (N, D, T), v (N, T, Dv), keep (N, T) or None; `before` (N, n, Dv + 1, M) receives the states
        before each chunk (for the backward). The output lives in a buffer that the next call overwrites.
        """
        self._recompute(qt, kt, v, keep, state, before)
        m = self.fm.num_features
        if self.products:  # (N n, Dv + 1, C), the queries read in place
            self.products.read(before.view(-1, before.shape[-2], m), self._chunked(qt), out=self.out_t)
        else:
            torch.bmm(before.view(-1, before.shape[-2], m), self.phi_q, out=self.out_t)
        if self.chunks:  # the masked C x C block, from the raw chunks (N, n, C, D)
            raw = (self._chunked(qt).transpose(-2, -1), self._chunked(kt).transpose(-2, -1))
            native.causal_chunks(*raw, self.v1c, self.fm.scale, self.fm.order, out=self.out_t)
        else:
            self.out_t.baddbmm_(self.v1c.transpose(-2, -1), self.weights.transpose(-2, -1))
        self._release()
        return self.out_t, self.state_out

    def backward(self, qt, kt, v, keep, before, grad_out_t, grad_state_out, dest, block: slice) -> Tensor:
        """Writes the block's grads of q, k and v into `dest` = (grad_q (N, D, L), grad_k (N, D, L), grad_v
        (N, Dv, L)) (transposed, at `block`; grad_v before the padding weights) and returns the grad of the
        incoming state (N, Dv + 1, M).

        `before`: the states before each chunk (N, n, Dv + 1, M) as the forward computed them."""
        fm, batch, m = self.fm, self.batch, self.fm.num_features
        self._recompute(qt, kt, v, keep, None, before)
        phi_q, phi_k, v1c, weights = self.phi_q, self.phi_k, self.v1c, self.weights
        dv1 = v1c.shape[-1]
        before_t = before.view(-1, dv1, m)
        before = before_t.transpose(-2, -1)  # (N n, M, Dv + 1) views
        # out_t = before^T Phi(Q_c) + V1_c^T W^T; before_c = state + sum_{c' < c} S_c', state_out = state +
        # sum_c S_c: so dS_c = dstate_out + sum_{c' > c} dbefore_c', and dstate = dstate_out + sum_c dbefore_c
        if self.products:  # in one reverse pass over the queries' chunks
            grad_chunk_states_t = grad_out_t.new_empty(batch, self.n, dv1, m)
            grad_state = torch.empty_like(grad_state_out)
            g = grad_out_t.view(batch, self.n, dv1, -1)
            self.products.scan(g, self._chunked(qt), grad_chunk_states_t, grad_state_out, grad_state, reverse=True)
        else:  # the suffix sums as one strictly-upper-triangular product (as the forward's prefix sums)
            rows = torch.bmm(grad_out_t, phi_q.transpose(-2, -1)).view(batch, self.n, -1)  # dbefore_c
            grad_chunk_states_t = torch.baddbmm(grad_state_out.view(batch, 1, -1), self.suffix, rows)
            grad_state = (grad_chunk_states_t[:, 0] + rows[:, 0]).view_as(grad_state_out)
        grad_chunk_states_t = grad_chunk_states_t.view(-1, dv1, m)
        grad_chunk_states = grad_chunk_states_t.transpose(-2, -1)  # (N n, M, Dv + 1) views
        if self.chunks:  # every kernel writes (or adds) straight into the sequence's gradients
            grad_q, grad_k, grad_v = (self._chunked(t[..., block]) for t in dest)  # (N, n, X, C) views
            quadratic, qc, kc = self.quadratic, self._chunked(qt), self._chunked(kt)
            self.products.read(grad_chunk_states_t[:, : dv1 - 1], kc, out=grad_v)
            quadratic.gradient(quadratic.prepare_transposed(before_t), grad_out_t, None, out=grad_q, inputs=qc)
            a_k = quadratic.prepare_transposed(grad_chunk_states_t)
            quadratic.gradient(a_k, v1c.transpose(-2, -1), None, out=grad_k, inputs=kc)
            raw = (qc.transpose(-2, -1), kc.transpose(-2, -1))  # (N, n, C, D)
            native.causal_chunks(*raw, v1c, fm.scale, fm.order, g=grad_out_t, grads=(grad_q, grad_k, grad_v))
            self._release()
            return grad_state
        # S_c = Phi(K_c) V1_c and the masked C x C block: the gradient of V1 (N n, Dv + 1, C)
        if self.products:
            grad_v1_t = torch.empty_like(grad_out_t)
            self.products.read(grad_chunk_states_t, self._chunked(kt), out=grad_v1_t)
            grad_v1_t.baddbmm_(grad_out_t, weights)
        else:
            grad_v1_t = torch.bmm(grad_out_t, weights).baddbmm_(grad_chunk_states_t, phi_k)
        if self.quadratic:  # grad_phi_q = before grad_out_t, grad_phi_k = grad_chunk_states v1c^T, never formed
            quadratic = self.quadratic
            grad_q = quadratic.gradient(quadratic.prepare_transposed(before_t), grad_out_t, phi_q)  # (N n, D, C)
            a_k = quadratic.prepare_transposed(grad_chunk_states_t)
            grad_k = quadratic.gradient(a_k, v1c.transpose(-2, -1), phi_k)
        else:
            grad_q = self._input_gradient(self.ws_q, torch.bmm(before, grad_out_t))
            grad_k = self._input_gradient(self.ws_k, torch.bmm(grad_chunk_states, v1c.transpose(-2, -1)))
        if fm.order >= 2:  # W = series(s) masked, s = x_q^T x_k with x = sqrt(scale) q
            # the masked slope d series / ds = sum_{n<K-1} s^n / n!, in place of the scores
            slope, mask = self.scores, self.mask
            if fm.order == 2:
                slope = mask
            elif fm.order == 3:  # (1 + s) masked in one pass
                torch.addcmul(mask, slope, mask, out=slope)
            else:
                c = [1.0 / math.factorial(n) for n in range(fm.order - 1)]
                s = slope.clone()
                slope.mul_(c[-1])
                for n in range(fm.order - 3, -1, -1):
                    slope.add_(c[n])
                    if n:
                        slope.mul_(s)
                slope.mul_(mask)
            grad_scores = torch.bmm(grad_out_t.transpose(-2, -1), v1c.transpose(-2, -1))  # (N n, C, C)
            grad_scores.mul_(slope)
            root = fm._root_scale
            grad_q.baddbmm_(self.x_k, grad_scores.transpose(-2, -1), alpha=root)
            grad_k.baddbmm_(self.x_q, grad_scores, alpha=root)
        self._release()
        for t, value in zip(dest, (grad_q, grad_k, grad_v1_t[:, : dv1 - 1]), strict=True):
            _from_chunks(t, block, value, batch)
        return grad_state

    def _release(self) -> None:
        """Drop what refers to this call's tensors (the generic feature path's inputs and features): a
        cached block keeps only its own buffers."""
        self.phi_q = self.phi_k = self.x_q = self.x_k = self.qt = self.kt = None
        for ws in (self.ws_q, self.ws_k):
            if ws is not None and not ws.compact:
                ws.xt = ws.phi = None


def _causal_block(fm: TaylorFeatureMap, batch: int, chunks: int, chunk: int, value_dim: int, like: Tensor):
    key = ("causal", batch, chunks, chunk, value_dim, like.dtype, like.device)
    return _cached(fm, key, lambda: _CausalBlock(fm, batch, chunks, chunk, value_dim, like))


def _to_chunks(t: Tensor, block: slice, chunks: int, chunk: int) -> Tensor:
    """(N, X, L) transposed tensor -> its block as (N n, X, C) (a copy)."""
    part = t[..., block].unflatten(-1, (chunks, chunk)).transpose(1, 2)  # (N, n, X, C)
    return part.reshape(-1, t.shape[1], chunk)


def _from_chunks(dest: Tensor, block: slice, value: Tensor, batch: int) -> None:
    """Write (N n, X, C) into the block of the transposed (N, X, L) tensor `dest`."""
    chunks, x, chunk = value.shape[0] // batch, value.shape[1], value.shape[2]
    dest[..., block].view(batch, x, chunks, chunk).copy_(value.view(batch, chunks, x, chunk).transpose(1, 2))


class CausalTaylorAttention(torch.autograd.Function):
    """(q, k, v, keep) -> (out (N, L, Dv), S (N, M, Dv), z (N, M)) with query i seeing keys j <= i."""

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
        tokens = block_tokens(n, m, chunk, padded)
        state = q.new_zeros(n, dv + 1, m)  # transposed, as the blocks keep it
        out_t = q.new_empty(n, dv, padded)  # returned as its transposed view (see taylor_attention)
        normaliser = q.new_empty(n, padded)
        befores = []  # per block, the states before each chunk (the first is the state entering the block)
        for block in _blocks(padded, tokens):
            chunks = (block.stop - block.start) // chunk
            runner = _causal_block(fm, n, chunks, chunk, dv, q)
            # kept for the backward: M (Dv + 1) / C floats per token
            before = q.new_empty(n, chunks, dv + 1, m) if for_backward else runner.scratch_before()
            block_keep = None if keep is None else keep[:, block]
            block_out, state = runner.forward(qt[..., block], kt[..., block], v[:, block], block_keep, state, before)
            if for_backward:
                befores.append(before)
            block_out = block_out.view(n, chunks, dv + 1, chunk)  # numerators and normaliser per chunk
            normaliser[:, block].view(n, chunks, chunk).copy_(block_out[:, :, dv])
            dest = out_t[..., block].unflatten(-1, (chunks, chunk)).transpose(1, 2)  # (N, n, Dv, C)
            torch.div(block_out[:, :, :dv], block_out[:, :, dv:], out=dest)
        out, normaliser = out_t[..., :length].transpose(-2, -1), normaliser[:, :length]
        ctx.save_for_backward(qt, kt, v, keep, out, normaliser, *befores)
        ctx.fm, ctx.chunk, ctx.tokens, ctx.length = fm, chunk, tokens, length
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
        blocks = _blocks(padded, ctx.tokens)
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


def taylor_attention(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, fm: TaylorFeatureMap, causal: bool, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised output (..., Lq, Dv) and final state kv (..., M, Dv), k_sum (..., M), for any batch shape.

    keep: (B, Lk) float, 1 for real keys and 0 for padding, or None; q is then (B, ..., Lq, D).

    The output is a transposed view of (..., Dv, Lq) storage, not contiguous: the blocks' products come out
    as (Dv + 1, T), and dividing them by the normaliser into that layout took 20 us per block against 75-90
    us for a strided (T, Dv) destination (a tenth of the non-causal forward at L = 16,384, 2026-12-03).
    """
    batch = q.shape[:-2]
    flat = [t.reshape(-1, *t.shape[-2:]) for t in (q, k, v)]
    if keep is not None:
        per_key = keep.reshape(keep.shape[0], *([1] * (len(batch) - 1)), keep.shape[-1])
        keep = per_key.expand(*batch, keep.shape[-1]).reshape(-1, keep.shape[-1]).to(q.dtype)
    if causal:
        for_backward = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        out, kv, k_sum = CausalTaylorAttention.apply(*flat, keep, fm, chunk, for_backward)
    else:
        out, kv, k_sum = NonCausalTaylorAttention.apply(*flat, keep, fm)
    return out.reshape(*batch, *out.shape[-2:]), kv.reshape(*batch, *kv.shape[-2:]), k_sum.reshape(*batch, -1)
