"""Taylor feature maps: phi(q)^T phi(k) = sum_{n<K} (s q^T k)^n / n!, exactly, for a K-term series.

Two forms of the same kernel:

- compact (the default): one feature per monomial x^a of degree |a| = n < K, weighted by 1/sqrt(a!).
  The multinomial theorem gives (q^T k)^n / n! = sum_{|a|=n} q^a k^a / a!, so the dot product of two
  feature vectors is the truncated series. There are C(n+D-1, n) monomials of degree n in D variables, so

      M(D, K) = sum_{n<K} C(n+D-1, n)       (K = 3: 1 + D + D(D+1)/2; D = 16 -> 153)

- outer: the degree-n block is the flattened n-fold outer product x⊗...⊗x / sqrt(n!), which lists each
  monomial once per ordering: M = sum_{n<K} D^n (K = 3: 1 + D + D^2; D = 16 -> 273). Same kernel, more
  features; kept for comparison and as a test oracle.

Feature order (compact): degree 0, degree 1, then each higher degree in colexicographic order (grouped by
the largest index: x_0^2, x_0 x_1, x_1^2, ...); for K = 3 with D a power of two the degree-2 block is the D
squares, then the cross products by recursive halving (log2 D + 1 broadcast products instead of D).
`monomials()` lists it.

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
import math
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


def _halving_pairs(dim: int) -> list[tuple[int, int]]:
    """The degree-2 monomials of a K = 3 map with D a power of two, in their feature order.

    First the D squares x_i^2, then the cross products by recursive halving: at level l the inputs split
    into 2^(l-1) groups of two halves of h = D / 2^l, listing every x_a x_b with a in a group's first half
    and b in its second. Each pair i < j appears exactly once.
    """
    pairs = [(i, i) for i in range(dim)]
    groups, half = 1, dim // 2
    while half >= 1:
        for g in range(groups):
            base = 2 * half * g
            pairs.extend((base + a, base + half + b) for a in range(half) for b in range(half))
        groups, half = groups * 2, half // 2
    return pairs


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
    along the last axis (every feature one contiguous row). Features are ordered by degree: [1, x (D),
    degree 2, ...]; the compact degree-2 block lists x_i x_j for i <= j with weight 1/sqrt(2) on the
    squares, so phi(q)^T phi(k) has every cross term q_i q_j k_i k_j. Differentiable (autograd).
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
        self._halving = form == "compact" and order == 3 and dim >= 2 and dim & (dim - 1) == 0
        if form == "compact" and not self._halving:
            self._register_degrees()

    def _register_degrees(self) -> None:
        """How each degree n >= 2 is built from degree n - 1 (colexicographic order): the monomials of degree
        n - 1 with largest index <= j are a leading block of `counts[n][j]` rows, and that block times x_j is
        degree n's group j. Appending j to a monomial that already holds c - 1 copies of j multiplies a! by c,
        so its weight 1/sqrt(a!) by 1/sqrt(c): `factors{n}` (a buffer, so that it follows the map's device)."""
        self._counts: dict[int, list[int]] = {}
        previous = [(i,) for i in range(self.dim)]
        for n in range(2, self.order):
            self._counts[n] = [sum(m[-1] <= j for m in previous) for j in range(self.dim)]
            previous = [m + (j,) for j in range(self.dim) for m in previous if m[-1] <= j]
            factors = torch.tensor([1.0 / math.sqrt(m.count(m[-1])) for m in previous], dtype=torch.float64)
            self.register_buffer(f"factors{n}", factors[:, None], persistent=False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, order={self.order}, scale={self.scale:.4g}, form={self.form}, M={self.num_features}"

    def series(self, t: Tensor) -> Tensor:
        """The truncated series sum_{n<K} (scale * t)^n / n! of raw scores t = q^T k, elementwise (Horner)."""
        t = t * self.scale
        out = torch.full_like(t, 1.0 / math.factorial(self.order - 1))
        for n in range(self.order - 2, -1, -1):
            out = out * t + 1.0 / math.factorial(n)
        return out

    def series_slope(self, t: Tensor) -> Tensor:
        """d series(t) / dt = scale * sum_{n<K-1} (scale * t)^n / n!, elementwise."""
        if self.order == 1:
            return torch.zeros_like(t)
        t = t * self.scale
        out = torch.full_like(t, 1.0 / math.factorial(self.order - 2))
        for n in range(self.order - 3, -1, -1):
            out = out * t + 1.0 / math.factorial(n)
        return out * self.scale

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
        # (..., D, T), one contiguous row per input coordinate: a product keeps its input's strides, and every
        # product below runs 2-3x slower on the strided rows of a transposed (..., T, D) input
        x = (xt * math.sqrt(self.scale)).contiguous()
        blocks = [torch.ones_like(x[..., :1, :])]
        if self.order >= 2:
            blocks.append(x)
        if self._halving:  # the squares, then per level the products of each group's two halves
            blocks.append(x * x * (1 / math.sqrt(2)))
            groups, half = 1, self.dim // 2
            while half >= 1:
                halves = x.unflatten(-2, (groups, 2, half))  # (..., groups, 2, half, T)
                pairs = halves[..., :, 0, :, None, :] * halves[..., :, 1, None, :, :]  # (..., groups, half, half, T)
                blocks.append(pairs.flatten(-4, -2))
                groups, half = groups * 2, half // 2
            return torch.cat(blocks, dim=-2)
        previous = x
        for n in range(2, self.order):
            if self.form == "compact":  # group j: the leading block of degree n - 1 times x_j, reweighted
                groups = [previous[..., :count, :] * x[..., j : j + 1, :] for j, count in enumerate(self._counts[n])]
                previous = torch.cat(groups, dim=-2) * getattr(self, f"factors{n}").to(x)
                blocks.append(previous)
            else:  # every ordering: (..., D^n, T)
                previous = (previous.unsqueeze(-2) * x.unsqueeze(-3)).flatten(-3, -2)
                blocks.append(previous / math.sqrt(math.factorial(n)))
        return torch.cat(blocks, dim=-2)

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
        for _ in range(2, self.order):  # previous is grouped by largest index: those <= j lead
            previous = [m + (j,) for j in range(self.dim) for m in previous if m[-1] <= j]
            out += previous
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
