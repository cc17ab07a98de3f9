"""The modern Hopfield energy and its convex-concave split (2024-25 Question 1).

With N stored patterns X (N, D), M = max_i ||x_i|| and lse(beta, z) = beta^-1 log sum_i exp(beta z_i):

    E(q)  = -lse(beta, X q) + beta^-1 log N + 1/2 q^T q + 1/2 M^2
    E1(q) = 1/2 q^T q + beta^-1 log N + 1/2 M^2   (convex: its Hessian is I)
    E2(q) = -lse(beta, X q)                       (concave: the Hessian of -E2 is beta X^T (diag p - p p^T) X)

where p = softmax(beta X q). E is bounded: 0 <= 1/2 (||q|| - M)^2 <= E(q).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_inputs(q: Tensor, X: Tensor, beta: float) -> None:
    """ValueError naming the argument at fault: beta <= 0, an empty or non-2-D X, or mismatched D."""
    if isinstance(beta, Tensor):
        if beta.numel() != 1:
            raise ValueError(f"beta: expected a scalar, got a tensor of shape {tuple(beta.shape)}")
        beta = float(beta)
    if not isinstance(beta, int | float) or isinstance(beta, bool) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta: the inverse temperature must be a finite number > 0, got {beta!r}")
    if not isinstance(X, Tensor) or X.dim() != 2:
        raise ValueError(f"X: expected stored patterns of shape (N, D), got {_shape(X)}")
    if X.shape[0] == 0:
        raise ValueError("X: the pattern set is empty (N = 0); store at least one pattern")
    if X.shape[1] == 0:
        raise ValueError("X: patterns have dimension D = 0")
    if not isinstance(q, Tensor) or q.dim() < 1:
        raise ValueError(f"q: expected queries of shape (..., D), got {_shape(q)}")
    if q.shape[-1] != X.shape[1]:
        raise ValueError(
            f"q: query dimension {q.shape[-1]} does not match the patterns' dimension D = {X.shape[1]} "
            f"(q {tuple(q.shape)}, X {tuple(X.shape)})"
        )
    if not q.is_floating_point() or q.dtype != X.dtype:
        raise ValueError(f"q: dtype {q.dtype} must be a floating type equal to X's dtype {X.dtype}")


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def lse(beta: float, z: Tensor) -> Tensor:
    """beta^-1 log sum_i exp(beta z_i) over the last dimension: (..., N) -> (...)."""
    return torch.logsumexp(beta * z, dim=-1) / beta


def max_norm(X: Tensor) -> Tensor:
    """M = max_i ||x_i||, a 0-dim tensor."""
    return torch.linalg.vector_norm(X, dim=-1).max()


def convex_part(q: Tensor, X: Tensor, beta: float) -> Tensor:
    """E1(q) = 1/2 q^T q + beta^-1 log N + 1/2 M^2; q (..., D) -> (...)."""
    check_inputs(q, X, beta)
    n = X.shape[0]
    return 0.5 * (q * q).sum(-1) + math.log(n) / beta + 0.5 * max_norm(X) ** 2


def concave_part(q: Tensor, X: Tensor, beta: float) -> Tensor:
    """E2(q) = -lse(beta, X q); q (..., D) -> (...)."""
    check_inputs(q, X, beta)
    return -lse(beta, q @ X.T)  # scores (..., N)


def energy(q: Tensor, X: Tensor, beta: float) -> Tensor:
    """E(q) = E1(q) + E2(q) for queries q (..., D) and patterns X (N, D); returns (...)."""
    return convex_part(q, X, beta) + concave_part(q, X, beta)


def energy_constant(n: int, m: float, beta: float) -> float:
    """The q-independent part of E: beta^-1 log N + 1/2 M^2, for N patterns of largest norm M."""
    return math.log(n) / beta + 0.5 * m * m


def energy_from_lse(lse_beta: Tensor, q: Tensor, beta: float, constant: float) -> Tensor:
    """E(q) from logsumexp(beta X q) (...,) and `energy_constant`: retrieval reuses its scores."""
    return -lse_beta / beta + 0.5 * (q * q).sum(-1) + constant


# Closed forms of the derivatives; the theory checks compare them with autograd.


def grad_convex(q: Tensor) -> Tensor:
    """grad E1(q) = q."""
    return q


def grad_neg_concave(q: Tensor, X: Tensor, beta: float) -> Tensor:
    """grad(-E2)(q) = X^T softmax(beta X q); q (..., D) -> (..., D)."""
    check_inputs(q, X, beta)
    return torch.softmax(beta * (q @ X.T), dim=-1) @ X


def hessian_convex(dim: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Hessian of E1: the (D, D) identity."""
    return torch.eye(dim, dtype=dtype)


def hessian_neg_concave(q: Tensor, X: Tensor, beta: float) -> Tensor:
    """Hessian of -E2 at one query q (D,): beta X^T (diag(p) - p p^T) X with p = softmax(beta X q); (D, D)."""
    check_inputs(q, X, beta)
    if q.dim() != 1:
        raise ValueError(f"q: expected one query of shape (D,), got {tuple(q.shape)}")
    p = torch.softmax(beta * (X @ q), dim=-1)  # (N,)
    cov = torch.diag(p) - torch.outer(p, p)  # (N, N)
    return beta * X.T @ cov @ X
