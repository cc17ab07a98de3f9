"""The derivation checks of Question 1, measured: closed forms against autograd, convexity, CCCP descent.

`theory_checks` draws random (X, q, beta) in float64 and returns one row per claim with the worst error
seen; the tests assert each row passes and the report prints the table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.func import grad, hessian

from dllab.attention import softmax_attention
from dllab.hopfield.landscape import (
    concave_part,
    convex_part,
    energy,
    grad_convex,
    grad_neg_concave,
    hessian_convex,
    hessian_neg_concave,
)
from dllab.hopfield.retrieval import retrieve
from dllab.io import atomic_write_json

TOL = 1e-9  # float64 agreement
PSD_TOL = 1e-9  # smallest eigenvalue allowed: -PSD_TOL


@dataclass(frozen=True)
class Check:
    claim: str
    measure: str
    worst: float
    limit: str
    passed: bool


def random_problem(gen: torch.Generator, dtype: torch.dtype = torch.float64):
    """Random X (N, D), q (D,), beta with N in [1, 40], D in [1, 12], beta log-uniform in [0.05, 20]."""
    n = int(torch.randint(1, 41, (), generator=gen))
    d = int(torch.randint(1, 13, (), generator=gen))
    scale = math.exp(float(torch.empty(()).uniform_(-1, 1, generator=gen)))
    X = scale * torch.randn(n, d, generator=gen, dtype=dtype)
    q = scale * torch.randn(d, generator=gen, dtype=dtype)
    beta = math.exp(float(torch.empty(()).uniform_(math.log(0.05), math.log(20.0), generator=gen)))
    return X, q, beta


def measure(X: Tensor, q: Tensor, beta: float) -> dict[str, float]:
    """Every check's error for one problem: X (N, D), q (D,), float64."""
    d = X.shape[1]

    def e1(v: Tensor) -> Tensor:
        return convex_part(v, X, beta)

    def neg_e2(v: Tensor) -> Tensor:
        return -concave_part(v, X, beta)

    h1, h2 = hessian(e1)(q), hessian(neg_e2)(q)
    r = retrieve(q, X, beta, max_steps=500, tol=1e-12)
    rise = float(r.energies.diff().max()) / (1.0 + float(r.energies.abs().max())) if r.steps else 0.0
    attn = softmax_attention(q[None, None], X[None], X[None], scale=beta)[0, 0]
    return {
        "g1": float((grad(e1)(q) - grad_convex(q)).abs().max()),
        "g2": float((grad(neg_e2)(q) - grad_neg_concave(q, X, beta)).abs().max()),
        "h1": float((h1 - hessian_convex(d)).abs().max()),
        "h2": float((h2 - hessian_neg_concave(q, X, beta)).abs().max()),
        "eig1": float(torch.linalg.eigvalsh(h1).min()),
        "eig2": float(torch.linalg.eigvalsh(h2).min()),
        "rise": max(0.0, rise),
        "fixed": float((grad_neg_concave(r.state, X, beta) - r.state).abs().max()),
        "unconverged": float(not r.converged),
        # the CCCP step solves grad E1(q_new) = grad(-E2)(q), i.e. q_new = X^T softmax(beta X q)
        "attn": float((grad_neg_concave(q, X, beta) - attn).abs().max()),
        "energy": float(energy(q, X, beta)),
    }


def theory_checks(draws: int = 50, seed: int = 0) -> list[Check]:
    """One Check per claim of Question 1, each with the worst value over `draws` random problems."""
    gen = torch.Generator().manual_seed(seed)
    rows = [measure(*random_problem(gen)) for _ in range(draws)]

    def worst(key: str, fn=max) -> float:
        return fn(r[key] for r in rows)

    unconverged = int(sum(r["unconverged"] for r in rows))
    err, tol = "max |closed form - autograd|", f"<= {TOL:g}"
    return [
        Check("grad E1(q) = q", err, worst("g1"), tol, worst("g1") <= TOL),
        Check("grad(-E2)(q) = X^T softmax(beta X q)", err, worst("g2"), tol, worst("g2") <= TOL),
        Check("Hessian of E1 = I", err, worst("h1"), tol, worst("h1") <= TOL),
        Check("Hessian of -E2 = beta X^T (diag p - p p^T) X", err, worst("h2"), tol, worst("h2") <= TOL),
        Check("E1 convex", "smallest Hessian eigenvalue", worst("eig1", min), f">= -{PSD_TOL:g}",
              worst("eig1", min) >= -PSD_TOL),
        Check("E2 concave (-E2 convex)", "smallest eigenvalue of Hessian of -E2", worst("eig2", min),
              f">= -{PSD_TOL:g}", worst("eig2", min) >= -PSD_TOL),
        Check("CCCP never increases E", "largest E(q_t+1) - E(q_t), relative", worst("rise"), tol,
              worst("rise") <= TOL),
        Check("iterates converge to q = X^T softmax(beta X q)",
              f"max |q* - update(q*)| ({unconverged} of {draws} not converged in 500 steps)", worst("fixed"),
              "<= 1e-8", worst("fixed") <= 1e-8 and unconverged == 0),
        Check("CCCP update = softmax_attention(q, X, X, scale=beta)", "max |difference|", worst("attn"), tol,
              worst("attn") <= TOL),
        Check("E(q) >= 0", "smallest E(q) over the draws", worst("energy", min), ">= 0",
              worst("energy", min) >= 0),
    ]  # fmt: skip


def save_checks(checks: list[Check], path: Path, draws: int, seed: int) -> None:
    """Write the checks as runs/hopfield/theory.json (atomically), for the report."""
    rows = [dataclasses.asdict(c) for c in checks]
    atomic_write_json(Path(path), {"draws": draws, "seed": seed, "dtype": "float64", "checks": rows})
