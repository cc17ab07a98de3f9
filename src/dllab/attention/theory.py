"""Question 1's derivations checked numerically: the feature dimension M(D, K), the student reports' formulas
for it, the squares-only map some of them built, and how well K Taylor terms approximate softmax attention.

How M is settled. The kernel k(x, y) = sum_{n<K} (x^T y)^n / n! is a polynomial of degree < K in D variables.
For any feature map with phi(x)^T phi(y) = k(x, y), the Gram matrix G_ij = k(x_i, x_j) of N points equals
Phi Phi^T, so rank(G) <= M. The rank of G for many random points is the dimension of the space the kernel
spans, C(D+K-1, K-1) = sum_{n<K} C(n+D-1, n), which the compact map attains: no exact map has fewer features,
and a formula that gives fewer (1 + 2D for K = 3) cannot be exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dllab.attention.linear import linear_attention
from dllab.attention.softmax import softmax_attention
from dllab.attention.taylor.feature_map import TaylorFeatureMap, feature_dim, outer_feature_dim
from dllab.attention.taylor.naive import naive_linear_attention


@dataclass(frozen=True)
class SeedFormula:
    """One student report's answer for M, as written, with what is wrong with it."""

    seed: str  # the report, as seeds/<seed>.txt
    written: str  # the formula as the report writes it
    general: Callable[[int, int], int]  # M(D, K) as the report's general formula states it
    verdict: str  # why it is right or wrong


SEED_FORMULAS: tuple[SeedFormula, ...] = (
    SeedFormula(
        "000",
        "M = 1 + 2D for K = 3; 1 + D(K-1) for K terms; phi(z) = [1, z, z^2/sqrt(2)]",
        lambda d, k: 1 + d * (k - 1),
        "wrong: phi uses the squares z_i^2 only, so phi(q)^T phi(k) = 1 + q^T k + sum_i q_i^2 k_i^2 / 2 misses "
        "the cross terms q_i q_j k_i k_j (i != j) of (q^T k)^2 / 2; M is below the Gram-matrix rank for D >= 2",
    ),
    SeedFormula(
        "001",
        "M = (D^2 + 3D + 2)/2 for K = 3; M(D, K) = sum_{k=0}^{K} C(K+D-1, D-1)",
        lambda d, k: (k + 1) * math.comb(k + d - 1, d - 1),
        "K = 3 right (1 + D + D + C(D, 2)); the general formula is wrong as written: the summand uses K "
        "instead of the summation index and the sum runs to K (K+1 terms, one degree too many): it should be "
        "sum_{n=0}^{K-1} C(n+D-1, D-1)",
    ),
    SeedFormula(
        "002",
        "M = 1 + D + D(D+1) for K = 3; M(D, K) = sum_{n=0}^{K-1} C(n+D-1, D-1)",
        lambda d, k: sum(math.comb(n + d - 1, d - 1) for n in range(k)),
        "general formula right; the K = 3 count is wrong: the cross terms number sum_{i<D}(D-i) = D(D-1)/2, "
        "not D(D+1) - D = D^2, so their own map has 1 + 2D + D(D-1)/2 = (D^2+3D+2)/2 entries",
    ),
    SeedFormula(
        "003",
        "M = 2D + 1 for K = 3; (K-1)D + 1 for K terms; phi = [1, q, q_i^2/sqrt(2)]",
        lambda d, k: (k - 1) * d + 1,
        "wrong: replaces (q^T k)^2 by sum_i q_i^2 k_i^2 (the Cauchy-Schwarz step is not an identity and the "
        "inequality (sum_i q_i k_i)^2 <= sum_i q_i^2 k_i^2 is false, e.g. when all q_i k_i are equal), "
        "dropping the cross terms",
    ),
)

SEED_K3_VALUES: dict[str, Callable[[int], int]] = {
    "000": lambda d: 1 + 2 * d,
    "001": lambda d: (d * d + 3 * d + 2) // 2,
    "002": lambda d: 1 + d + d * (d + 1),
    "003": lambda d: 2 * d + 1,
}


def gram_rank(dim: int, order: int, points: int | None = None, seed: int = 0) -> int:
    """Numerical rank of the Gram matrix k(x_i, x_j) = sum_{n<K} (x_i^T x_j)^n / n! of random points (float64).

    Any exact feature map needs at least this many features. Uses 1.5 M(D, K) + 20 points by default.
    """
    m = feature_dim(dim, order)
    n = points or int(1.5 * m) + 20
    g = torch.Generator().manual_seed(seed)
    # |x| ~ 1.5 keeps the degree-n parts of the kernel within a few orders of magnitude of each other.
    x = 1.5 * torch.randn(n, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    gram = TaylorFeatureMap(dim, order, scale=1.0).series(x @ x.T)
    return int(torch.linalg.matrix_rank(gram, hermitian=True))


def feature_dim_rows(
    dims: tuple[int, ...] = (2, 4, 8, 16, 64), orders: tuple[int, ...] = (2, 3, 4, 5), rank_limit: int = 500
) -> list[dict]:
    """M(D, K) next to the Gram-matrix rank (where M <= rank_limit), the outer form and each seed's formula."""
    rows = []
    for d in dims:
        for k in orders:
            m = feature_dim(d, k)
            row = {
                "D": d,
                "K": k,
                "M": m,
                "gram_rank": gram_rank(d, k) if m <= rank_limit else None,
                "outer": outer_feature_dim(d, k),
            }
            for f in SEED_FORMULAS:
                row[f"seed{f.seed}"] = f.general(d, k)
            rows.append(row)
    return rows


def identity_errors(
    orders: tuple[int, ...] = (1, 2, 3, 4, 5), dims: tuple[int, ...] = (1, 3, 7, 16), n: int = 64
) -> list[dict]:
    """max |phi(q)^T phi(k) - sum_{n<K} (q^T k)^n/n!| relative to the series, both forms, float64 and float32."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for k in orders:
        for d in dims:
            row: dict = {"K": k, "D": d}
            for form in ("compact", "outer"):
                if form == "outer" and outer_feature_dim(d, k) > 100_000:
                    row[form] = None
                    continue
                fm = TaylorFeatureMap(d, k, scale=1.0, form=form)
                for dtype in (torch.float64, torch.float32):
                    q = torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)
                    kk = torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)
                    exact = fm.series((q * kk).sum(-1))
                    got = (fm(q.to(dtype)) * fm(kk.to(dtype))).sum(-1).double()
                    key = form if dtype == torch.float64 else f"{form}_f32"
                    row[key] = float(((got - exact).abs() / exact.abs()).max())
            rows.append(row)
    return rows


class SquaresOnlyFeatureMap:
    """The map of seeds 000 and 003: phi(x) = [1, x, x^2 / sqrt(2)] (M = 2D + 1), scaled like TaylorFeatureMap.

    phi(q)^T phi(k) = 1 + s q^T k + s^2 sum_i q_i^2 k_i^2 / 2, which misses the cross terms of (s q^T k)^2 / 2.
    """

    def __init__(self, dim: int, scale: float | None = None):
        self.dim = dim
        self.scale = 1.0 / math.sqrt(dim) if scale is None else scale

    def __call__(self, x: Tensor) -> Tensor:
        x = x * math.sqrt(self.scale)
        return torch.cat([torch.ones_like(x[..., :1]), x, x * x / math.sqrt(2)], dim=-1)


def squares_only_errors(
    dims: tuple[int, ...] = (2, 4, 8, 16, 64), length: int = 256, spread: float = 0.5, seed: int = 0
) -> list[dict]:
    """Kernel and attention errors of the squares-only map against the exact 3-term map and softmax.

    Inputs: q, k ~ N(0, spread I), v ~ N(0, I), one head, scale 1/sqrt(D), so the scores q^T k / sqrt(D)
    have standard deviation `spread`; at 0.5 the exact K = 3 map is within ~8% of softmax attention.
    """
    rows = []
    g = torch.Generator().manual_seed(seed)
    for d in dims:
        q, k, v = (torch.randn(1, length, d, generator=g, dtype=torch.float64) for _ in range(3))
        q, k = q * math.sqrt(spread), k * math.sqrt(spread)
        exact_map, squares = TaylorFeatureMap(d, 3), SquaresOnlyFeatureMap(d)
        kernel = exact_map(q) @ exact_map(k).transpose(-2, -1)
        kernel_sq = squares(q) @ squares(k).transpose(-2, -1)
        missing = kernel - kernel_sq  # the cross terms: sum_{i<j} s^2 q_i q_j k_i k_j
        quadratic = 0.5 * (exact_map.scale * q @ k.transpose(-2, -1)) ** 2  # the term they should give
        z_soft = softmax_attention(q, k, v)
        z_taylor = linear_attention(q, k, v, exact_map)
        z_sq = naive_linear_attention(q, k, v, squares)
        rows.append(
            {
                "D": d,
                "M_exact": exact_map.num_features,
                "M_squares": 2 * d + 1,
                "kernel_rel_error": float(missing.norm() / kernel.norm()),
                "quadratic_part_lost": float(missing.norm() / quadratic.norm()),
                "attn_error_squares_vs_taylor": _rel(z_sq, z_taylor),
                "attn_error_squares_vs_softmax": _rel(z_sq, z_soft),
                "attn_error_taylor_vs_softmax": _rel(z_taylor, z_soft),
            }
        )
    return rows


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def truncated_series_minimum(order: int) -> float:
    """min over t of sum_{n<K} t^n / n!: positive for odd K, -inf for even K (a polynomial of odd degree)."""
    if order % 2 == 0:
        return -math.inf
    t = torch.linspace(-12, 2, 140_001, dtype=torch.float64)
    return float(TaylorFeatureMap(1, order, scale=1.0).series(t).min())


def approximation_errors(
    orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
    spreads: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
    length: int = 256,
    heads: int = 4,
    dim: int = 16,
    seed: int = 0,
) -> list[dict]:
    """Relative error ||Z_taylor - Z_softmax|| / ||Z_softmax|| against K and the spread of the scores.

    q, k ~ N(0, sigma^2 I) so that the scores t = q^T k / sqrt(D) have standard deviation `spread` = sigma^2
    (for D >> 1); v ~ N(0, 1). float64, one batch of `heads` heads of `length` tokens, non-causal.
    Also records the fraction of rows whose normaliser is <= 0 (possible for even K only).
    """
    rows = []
    for spread in spreads:
        g = torch.Generator().manual_seed(seed)
        sigma = math.sqrt(spread)
        q, k = (sigma * torch.randn(1, heads, length, dim, generator=g, dtype=torch.float64) for _ in range(2))
        v = torch.randn(1, heads, length, dim, generator=g, dtype=torch.float64)
        z_soft = softmax_attention(q, k, v)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(dim)
        for order in orders:
            fm = TaylorFeatureMap(dim, order)
            z = linear_attention(q, k, v, fm)
            normaliser = fm.series(scores * math.sqrt(dim)).sum(-1)
            rows.append(
                {
                    "K": order,
                    "spread": spread,
                    "score_std": float(scores.std()),
                    "score_max_abs": float(scores.abs().max()),
                    "rel_error": _rel(z, z_soft),
                    "bad_normaliser_rows": float((normaliser <= 0).double().mean()),
                }
            )
    return rows
