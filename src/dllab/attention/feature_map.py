"""Taylor feature maps: phi(q)^T phi(k) = sum_{n<K} (s q^T k)^n / n!, exactly, for a K-term series.

Two forms of the same kernel:

- compact (the default): one feature per monomial x^a of degree |a| = n < K, weighted by 1/sqrt(a!).
  The multinomial theorem gives (q^T k)^n / n! = sum_{|a|=n} q^a k^a / a!, so the dot product of two
  feature vectors is the truncated series. There are C(n+D-1, n) monomials of degree n in D variables, so

      M(D, K) = sum_{n<K} C(n+D-1, n)       (K = 3: 1 + D + D(D+1)/2; D = 16 -> 153)

- outer: the degree-n block is the flattened n-fold outer product x⊗...⊗x / sqrt(n!), which lists each
  monomial once per ordering: M = sum_{n<K} D^n (K = 3: 1 + D + D^2; D = 16 -> 273). Same kernel, more
  features; kept for comparison and as a test oracle.

Feature order (compact): degree 0, degree 1, then each higher degree built from the one below in
colexicographic order (D products per degree); for K = 3 with D a power of two the degree-2 block is the
D squares then the cross products by recursive halving (log2 D + 1 products). `monomials()` lists it.

Input scaling. Softmax attention in transformers uses exp(q^T k / sqrt(D)); the homework writes exp(q^T k).
`scale` is the multiplier s of q^T k: None means 1/sqrt(D) (what torch's SDPA and `softmax_attention`
use by default), 1.0 gives the homework's exp(q^T k). The map multiplies its input by sqrt(s), so q and k
go through the same map and phi(q)^T phi(k) = sum_{n<K} (s q^T k)^n / n! (the scale is folded into the
inputs, never applied to the L x L scores).

Sign. The K-term series is a polynomial of degree K-1. For odd K (even degree: K = 1, 3, 5) it is positive
for every t (1 + t + t^2/2 >= 1/2, attained at t = -1), so the normaliser of linear attention is positive.
For even K (odd degree) it has a real root (K = 2: t = -1; K = 4: t ~ -1.596) and is negative below it:
rows whose scores fall there can get a normaliser near zero or negative and the output is then unbounded.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
from typing import Literal

import torch
from torch import Tensor, nn

# Past this many features per token the index tables alone get large; an explicit limit gives a clear
# error instead of a long stall. Raise it through `max_features` if you really want more.
DEFAULT_MAX_FEATURES = 1 << 22


def feature_dim(dim: int, order: int) -> int:
    """M(D, K) = sum_{n<K} C(n+D-1, n): features of the compact K-term Taylor map of D-dimensional inputs."""
    _check_dim_order(dim, order)
    return sum(math.comb(n + dim - 1, n) for n in range(order))


def outer_feature_dim(dim: int, order: int) -> int:
    """sum_{n<K} D^n: features of the outer-product form (every ordering of each monomial)."""
    _check_dim_order(dim, order)
    return sum(dim**n for n in range(order))


def _check_dim_order(dim: int, order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order: the number of Taylor terms K must be an integer >= 1, got {order!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: the input dimension D must be an integer >= 1, got {dim!r}")


@functools.lru_cache(maxsize=32)
def _degree_tables(dim: int, order: int) -> tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]:
    """How the compact map builds degree n from degree n - 1, for n = 2 .. K-1.

    Monomials x_{i1}...x_{in} (i1 <= ... <= in) are listed in colexicographic order, grouped by their largest
    index j. Degree-(n-1) monomials with largest index <= j then form a leading block of `counts[j]` rows, so
    the degree-n group of j is that block times x_j: D slice products, each writing contiguous rows.
    Weights 1/sqrt(a!) follow along: appending j to a monomial already holding c copies of j multiplies a!
    by c + 1, so each new row is scaled by `factors[row]` = 1/sqrt(c + 1) (c + 1 = the trailing run of j).
    """
    tables = []
    largest = torch.arange(dim)  # degree 1: x_i has largest index i, a trailing run of 1
    run = torch.ones(dim, dtype=torch.long)
    for _ in range(2, order):
        counts = torch.searchsorted(largest, torch.arange(dim), right=True).tolist()
        new_largest, new_run = [], []
        for j, count in enumerate(counts):
            new_largest.append(torch.full((count,), j))
            new_run.append(torch.where(largest[:count] == j, run[:count], 0) + 1)
        largest, run = torch.cat(new_largest), torch.cat(new_run)
        tables.append((tuple(counts), tuple((1.0 / run.double().sqrt()).tolist())))
    return tuple(tables)


def _halving_pairs(dim: int) -> list[tuple[int, int]]:
    """The degree-2 monomials of a K = 3 map with D a power of two, in the order `FeatureWorkspace` builds them.

    First the D squares x_i^2 (one product), then the cross products by recursive halving: at level l the
    inputs split into 2^(l-1) groups of two halves of h = D / 2^l, and one broadcast product writes every
    x_a x_b with a in a group's first half and b in its second. log2(D) + 1 products build the whole block
    (the colexicographic construction needs D), and each pair i < j appears exactly once.
    """
    pairs = [(i, i) for i in range(dim)]
    groups, half = 1, dim // 2
    while half >= 1:
        for g in range(groups):
            base = 2 * half * g
            pairs.extend((base + a, base + half + b) for a in range(half) for b in range(half))
        groups, half = groups * 2, half // 2
    return pairs


class _CompactFeatures(torch.autograd.Function):
    """Raw xt (N, D, T) -> phi (N, M, T) through a FeatureWorkspace of its own, and its hand-written VJP."""

    @staticmethod
    def forward(ctx, xt: Tensor, fm: TaylorFeatureMap) -> Tensor:
        ctx.workspace = fm.workspace(xt.shape[0], xt.shape[-1], xt)
        return ctx.workspace.features(xt)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        return ctx.workspace.input_gradient(grad), None


class TaylorFeatureMap(nn.Module):
    """phi: R^D -> R^M with phi(q)^T phi(k) = sum_{n<K} (scale * q^T k)^n / n! (see the module docstring).

    Args:
        dim: D, the size of the last axis of q and k.
        order: K >= 1, the number of series terms (K = 3: 1 + t + t^2/2, the homework's map).
        scale: multiplier of q^T k; None -> 1/sqrt(D) (matches softmax_attention), 1.0 -> exp(q^T k).
        form: "compact" (monomials with multinomial weights, M = sum C(n+D-1, n)) or "outer"
            (flattened outer products, M = sum D^n); both give the same kernel.
        max_features: refuse maps with more features than this (ValueError naming `order`).

    forward(x): (..., D) -> (..., M). transposed(xt): (..., D, T) -> (..., M, T), the same map with tokens
    along the last axis, which the linear-attention kernels use: every feature is then one contiguous row.
    Features are ordered by degree: [1, x (D), degree 2, ...]; the compact degree-2 block lists x_i x_j
    for i <= j with weight 1/sqrt(2) on the squares, so phi(q)^T phi(k) has every cross term q_i q_j k_i k_j.
    """

    def __init__(
        self,
        dim: int,
        order: int = 3,
        scale: float | None = None,
        form: Literal["compact", "outer"] = "compact",
        max_features: int = DEFAULT_MAX_FEATURES,
    ):
        super().__init__()
        _check_dim_order(dim, order)
        if form not in ("compact", "outer"):
            raise ValueError(f"form: expected 'compact' or 'outer', got {form!r}")
        if scale is not None and not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: expected a finite number > 0 or None, got {scale!r}")
        m = feature_dim(dim, order) if form == "compact" else outer_feature_dim(dim, order)
        if m > max_features:
            raise ValueError(
                f"order: a {form} Taylor map with D={dim}, K={order} has M={m:,} features per token, "
                f"more than max_features={max_features:,}; use a smaller order (K) or head dimension (D)"
            )
        self.dim, self.order, self.form, self.num_features = dim, order, form, m
        self.scale = 1.0 / math.sqrt(dim) if scale is None else float(scale)
        self._root_scale = math.sqrt(self.scale)
        # K = 3 with D a power of two: the degree-2 block by recursive halving (log2(D) + 1 products per block);
        # otherwise degree n from degree n - 1 in colexicographic order (D products per degree).
        self._halving = form == "compact" and order == 3 and dim >= 2 and dim & (dim - 1) == 0
        self._tables = _degree_tables(dim, order) if form == "compact" and not self._halving else ()
        for n, (_, factors) in enumerate(self._tables, start=2):
            factors = torch.tensor(factors, dtype=torch.float64).unsqueeze(-1)  # (rows, 1)
            self.register_buffer(f"factors{n}", factors, persistent=False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, order={self.order}, scale={self.scale:.4g}, form={self.form}, M={self.num_features}"

    def series(self, t: Tensor) -> Tensor:
        """The truncated series sum_{n<K} (scale * t)^n / n! of raw scores t = q^T k, elementwise (Horner)."""
        t = t * self.scale
        out = torch.full_like(t, 1.0 / math.factorial(self.order - 1))
        for n in range(self.order - 2, -1, -1):
            out = out * t + 1.0 / math.factorial(n)
        return out

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 1:
            return self.transposed(x.unsqueeze(-1)).squeeze(-1)
        return self.transposed(x.transpose(-1, -2)).transpose(-1, -2)

    def transposed(self, xt: Tensor) -> Tensor:
        """(..., D, T) -> (..., M, T): the features of T vectors stored as columns."""
        if xt.shape[-2] != self.dim:
            raise ValueError(f"x: expected feature dimension {self.dim} (the map's dim), got shape {tuple(xt.shape)}")
        if not xt.is_floating_point():
            raise ValueError(f"x: expected a floating-point tensor, got {xt.dtype}")
        if self.form == "compact":
            batch = xt.shape[:-2]
            phi = _CompactFeatures.apply(xt.reshape(-1, *xt.shape[-2:]), self)
            return phi.reshape(*batch, *phi.shape[-2:])
        xt = xt * self._root_scale  # (..., D, T), one row per input coordinate
        blocks = [torch.ones_like(xt[..., :1, :])]
        if self.order >= 2:
            blocks.append(xt)
        power = xt
        for n in range(2, self.order):
            power = (power.unsqueeze(-2) * xt.unsqueeze(-3)).flatten(-3, -2)  # (..., D^n, T)
            blocks.append(power / math.sqrt(math.factorial(n)))
        return torch.cat(blocks, dim=-2)

    def workspace(
        self, batch: int, tokens: int, like: Tensor, role: str | None = None, weighted: bool = True
    ) -> FeatureWorkspace:
        """Reusable buffers for the features of blocks of `tokens` tokens (the kernels' fast path).

        weighted=False gives the bare monomials x^a (compact form only): phi = feature_weights() * them, and a
        kernel that folds the weights into its (M x Dv) states saves a pass over every block of features.

        With a `role`, the workspace is kept for the next call with the same role, shape, dtype, device and
        thread (the last few are kept), which saves building it again: the kernels use it for buffers whose
        contents live only within one call. Without a role, a new workspace.
        """
        if role is None:
            return FeatureWorkspace(self, batch, tokens, like, weighted)
        key = (role, weighted, batch, tokens, like.dtype, like.device, threading.get_ident())
        cache = self.__dict__.setdefault("_workspaces", collections.OrderedDict())
        if key in cache:
            cache.move_to_end(key)
        else:
            cache[key] = FeatureWorkspace(self, batch, tokens, like, weighted)
            while len(cache) > 8:
                cache.popitem(last=False)
        return cache[key]

    def monomials(self) -> list[tuple[int, ...]]:
        """The input indices multiplied by each compact feature, in feature order: (), (0,), ..., (i, j), ...

        Degree 0, then degree 1 (x_0 ... x_{D-1}), then each higher degree. Degree 2 of a K = 3 map with D a
        power of two lists the squares, then the cross products by recursive halving (`_halving_pairs`);
        otherwise every degree is colexicographic (grouped by the largest index: x_0^2, x_0 x_1, x_1^2, ...).
        """
        if self.form != "compact":
            raise ValueError("form: monomials() describes the compact form")
        out: list[tuple[int, ...]] = [()]
        if self.order >= 2:
            out += [(i,) for i in range(self.dim)]
        if self._halving:
            return out + _halving_pairs(self.dim)
        previous = out[1:]
        for counts, _ in self._tables:
            degree = [previous[i] + (j,) for j, count in enumerate(counts) for i in range(count)]
            out += degree
            previous = degree
        return out

    def feature_weights(self, like: Tensor) -> Tensor:
        """(M,) the weight 1/sqrt(a!) of each compact feature: phi = weights * (the bare monomials x^a)."""
        cached = self.__dict__.get("_weights64")
        if cached is None:
            cached = torch.tensor(
                [1.0 / math.sqrt(math.prod(math.factorial(c) for c in collections.Counter(m).values()))
                 for m in self.monomials()], dtype=torch.float64,
            )  # fmt: skip
            self.__dict__["_weights64"] = cached
        return cached.to(like)

    def pair_rows(self) -> list[list[int]]:
        """K = 3: the (D, D) table of the feature row holding x_min(a,b) x_max(a,b)."""
        if self.order != 3 or self.form != "compact":
            raise ValueError("order: pair_rows() needs a compact map with K = 3")
        rows = {m: r for r, m in enumerate(self.monomials()) if len(m) == 2}
        return [[rows[(min(a, b), max(a, b))] for b in range(self.dim)] for a in range(self.dim)]

    def pair_derivatives(self, weighted: bool) -> tuple[Tensor, Tensor]:
        """K = 3: (rows (D, D) long, coef (D, D) float64) with d f_rows[a, b] / d x_a = coef[a, b] x_b.

        f is the bare monomial x_a x_b (coef 2 on the diagonal: d x_a^2 / dx_a = 2 x_a), or with `weighted`
        the feature w x_a x_b, so that sum_b coef[a, b] x_b dL/df_rows[a, b] is the degree-2 part of dL/dx_a.
        """
        key = f"_pair_derivatives_{bool(weighted)}"  # built once: the kernels ask on every call
        cached = self.__dict__.get(key)
        if cached is None:
            rows = torch.tensor(self.pair_rows())
            coef = torch.ones(self.dim, self.dim, dtype=torch.float64).fill_diagonal_(2.0)
            if weighted:
                coef = coef * self.feature_weights(coef)[rows]
            cached = self.__dict__[key] = (rows, coef)
        return cached

    def _blocks(self, like: Tensor):
        """((offset, rows) of degree n - 1, (offset, rows) of degree n, counts, factors) for n = 2 .. K-1."""
        offset, rows = 1, self.dim
        for n, (counts, _) in enumerate(self._tables, start=2):
            previous = (offset, rows)
            offset, rows = offset + rows, sum(counts)
            yield previous, (offset, rows), counts, getattr(self, f"factors{n}").to(like)


class FeatureWorkspace:
    """The features of one block of T tokens at a time, in buffers reused from block to block.

    `features(xt)` maps raw inputs xt (N, D, T), any strides, to phi (N, M, T) — the returned buffer is
    overwritten by the next call. `input_gradient(grad_phi)` is dL/dxt given dL/dphi for the features of the
    last call. The compact form runs on precomputed views (no slicing or allocation per block); the outer
    form falls back to autograd.
    """

    def __init__(self, fm: TaylorFeatureMap, batch: int, tokens: int, like: Tensor, weighted: bool = True):
        self.fm, self.weighted = fm, weighted
        self.phi = like.new_empty(batch, fm.num_features, tokens)
        self.phi[:, 0] = 1.0
        self.x = self.phi[:, 1 : 1 + fm.dim]  # the scaled input lives in the degree-1 rows
        # sqrt(scale) as a 0-dim tensor: a Python float made torch.mul wrap and convert it on every call
        # (4.4-4.9 us against 1.7-2.5 us for a small block)
        self.root = torch.tensor(fm._root_scale, dtype=like.dtype, device=like.device)
        self.compact = fm.form == "compact"
        self.degrees = []  # per degree n >= 2: (slice products, its rows, their weights)
        self.backward_steps: list | None = None  # built on the first input_gradient call
        if not (self.compact or weighted):
            raise ValueError("weighted=False needs the compact form")
        self.halving = []  # K = 3, D a power of two: (left, right, dest) broadcast products after the squares
        if fm._halving:
            d, off = fm.dim, 1 + fm.dim
            self.squares = self.phi[:, off : off + d]
            self.square_weight = 1.0 / math.sqrt(2.0) if weighted else 1.0
            self.zero = torch.zeros((), dtype=like.dtype, device=like.device)
            pos, groups, half = off + d, 1, d // 2
            while half >= 1:
                halves = self.x.view(batch, groups, 2, half, tokens)
                dest = self.phi[:, pos : pos + groups * half * half].view(batch, groups, half, half, tokens)
                self.halving.append((halves[:, :, 0, :, None, :], halves[:, :, 1, None, :, :], dest))
                pos, groups, half = pos + groups * half * half, groups * 2, half // 2
        self.quadratic = None  # K <= 3: input_gradient through the (D, D) pair table (see _quadratic_gradient)
        if self.compact and fm.order == 3:
            rows, coef = fm.pair_derivatives(weighted)
            self.quadratic = (rows.flatten().to(like.device), coef.flatten().to(like).unsqueeze(-1))
        if self.compact and not fm._halving:
            for (p_off, _), (off, rows), counts, factors in fm._blocks(like):
                pos, products = off, []
                for j, count in enumerate(counts):
                    products.append((self.phi[:, p_off : p_off + count], self.phi[:, 1 + j : 2 + j],
                                     self.phi[:, pos : pos + count]))  # fmt: skip
                    pos += count
                self.degrees.append((products, self.phi[:, off : off + rows], factors))

    def features(self, xt: Tensor) -> Tensor:
        fm = self.fm
        if not self.compact:
            self.xt = xt
            with torch.no_grad():
                self.phi = fm.transposed(xt)
            return self.phi
        if fm.order >= 2:  # xt may be (N, D, T) or any view that splits N, e.g. (B, chunks, D, C)
            torch.mul(xt, self.root, out=self.x.view(xt.shape))
        if self.halving:
            if self.square_weight != 1.0:  # w x^2 in one pass: 0 + w x x
                torch.addcmul(self.zero, self.x, self.x, value=self.square_weight, out=self.squares)
            else:
                torch.mul(self.x, self.x, out=self.squares)
            for left, right, dest in self.halving:
                torch.mul(left, right, out=dest)
        for products, rows, factors in self.degrees:  # degree n is built from the weighted degree n - 1
            for previous, x_j, dest in products:
                torch.mul(previous, x_j, out=dest)
            if self.weighted:
                rows.mul_(factors)
        return self.phi

    def inputs(self, xt: Tensor) -> Tensor:
        """Only the scaled inputs x = sqrt(scale) xt, in the buffer's degree-1 rows (row 0 holds the constant 1),
        where compiled kernels build the higher degrees themselves (`dllab.attention.chunk.FeatureProducts`)
        but the C x C scores still take x: compact form, K >= 2. Returns the buffer; rows past 1 + D are stale."""
        if not self.compact or self.fm.order < 2:
            raise ValueError("inputs() needs the compact form with K >= 2")
        torch.mul(xt, self.root, out=self.x.view(xt.shape))
        return self.phi

    def _quadratic_gradient(self, grad_phi: Tensor) -> Tensor:
        """K = 3: dL/dx_a = g_a + sum_b c_ab g_(ab) x_b, with g_(ab) the gradient of the feature x_min x_max and
        c_ab its weight (times 2 on the diagonal, d x_a^2 / dx_a = 2 x_a): a gather, two products and a sum."""
        rows, coef = self.quadratic
        batch, d, tokens = grad_phi.shape[0], self.fm.dim, grad_phi.shape[-1]
        g = grad_phi.index_select(1, rows).mul_(coef).view(batch, d, d, tokens)
        g.mul_(self.x.unsqueeze(1))
        return torch.sum(g, dim=2).add_(grad_phi[:, 1 : 1 + d]).mul_(self.fm._root_scale)

    def _prepare_backward(self) -> None:
        """The gradient buffer (rows of degree >= 1) and, per degree from the highest down, its views."""
        batch, m, tokens = self.phi.shape
        self.acc = self.phi.new_empty(batch, m - 1, tokens)
        self.backward_steps = []
        for (products, _, factors), ((p_off, _), (off, count_rows), counts, _) in zip(
            self.degrees, self.fm._blocks(self.phi), strict=True
        ):
            steps, pos = [], off
            for j, (count, (previous, x_j, _)) in enumerate(zip(counts, products, strict=True)):
                # rows (j's group) = previous * x_j: gradients flow to `previous` and to x_j
                steps.append((self.acc[:, pos - 1 : pos - 1 + count], self.acc[:, p_off - 1 : p_off - 1 + count],
                              x_j, previous, self.acc[:, j]))  # fmt: skip
                pos += count
            self.backward_steps.append((self.acc[:, off - 1 : off - 1 + count_rows], factors, steps))
        self.backward_steps.reverse()

    def input_gradient(self, grad_phi: Tensor) -> Tensor:
        fm = self.fm
        if not self.compact:
            with torch.enable_grad():
                x = self.xt.detach().requires_grad_()
                out = fm.transposed(x)
                return torch.autograd.grad(out, x, grad_phi)[0] if out.requires_grad else torch.zeros_like(x)
        if fm.order < 2:
            return grad_phi.new_zeros(grad_phi.shape[0], fm.dim, grad_phi.shape[-1])
        if fm.order == 2:
            return grad_phi[:, 1:] * fm._root_scale
        if self.quadratic is not None:
            return self._quadratic_gradient(grad_phi)
        if self.backward_steps is None:
            self._prepare_backward()
        self.acc.copy_(grad_phi[:, 1:])
        for rows, factors, steps in self.backward_steps:
            if self.weighted:
                rows.mul_(factors)  # weights folded into the incoming gradient
            for g_rows, g_previous, x_j, previous, g_x_j in steps:
                g_previous.addcmul_(g_rows, x_j)
                g_x_j.add_(torch.linalg.vecdot(g_rows, previous, dim=1))
        return self.acc[:, : fm.dim] * fm._root_scale
