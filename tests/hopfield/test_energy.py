"""The energy, its split, and the closed-form gradients and Hessians against autograd (2024-25 Q1.1)."""

import math

import pytest
import torch
from torch.func import grad, hessian

from dllab.hopfield import (
    concave_part,
    convex_part,
    energy,
    grad_convex,
    grad_neg_concave,
    hessian_convex,
    hessian_neg_concave,
    lse,
)
from dllab.hopfield.theory import random_problem


def draws(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [random_problem(gen) for _ in range(n)]


def test_energy_matches_the_formula_term_by_term():
    torch.manual_seed(0)
    X, q, beta = torch.randn(7, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64), 0.7
    m = X.norm(dim=1).max()
    expected = torch.stack([
        -torch.log(torch.exp(beta * (X @ qi)).sum()) / beta + math.log(7) / beta + 0.5 * qi @ qi + 0.5 * m**2
        for qi in q
    ])  # fmt: skip
    torch.testing.assert_close(energy(q, X, beta), expected)
    torch.testing.assert_close(convex_part(q, X, beta) + concave_part(q, X, beta), expected)
    assert energy(q[0], X, beta).shape == ()


def test_lse_is_stable_and_tends_to_the_max():
    z = torch.tensor([1000.0, 999.0, -5.0], dtype=torch.float64)
    assert torch.isfinite(lse(1.0, z))
    assert float(lse(1e4, z)) == pytest.approx(1000.0, abs=1e-3)


@pytest.mark.parametrize("case", range(12))
def test_gradients_match_autograd(case):
    X, q, beta = draws(12, seed=1)[case]
    torch.testing.assert_close(grad(lambda v: convex_part(v, X, beta))(q), grad_convex(q))
    torch.testing.assert_close(grad(lambda v: -concave_part(v, X, beta))(q), grad_neg_concave(q, X, beta))


@pytest.mark.parametrize("case", range(12))
def test_hessians_match_autograd_and_are_psd(case):
    X, q, beta = draws(12, seed=2)[case]
    h1 = hessian(lambda v: convex_part(v, X, beta))(q)
    h2 = torch.autograd.functional.hessian(lambda v: -concave_part(v, X, beta), q)
    torch.testing.assert_close(h1, hessian_convex(X.shape[1]))
    torch.testing.assert_close(h2, hessian_neg_concave(q, X, beta))
    assert torch.linalg.eigvalsh(h1).min() >= 1 - 1e-12
    assert torch.linalg.eigvalsh(h2).min() >= -1e-10 * (1 + h2.abs().max())


def test_hessian_of_neg_concave_is_not_trivially_zero():
    # With distinct patterns and moderate beta the curvature is real: the PSD check is not vacuous.
    X = torch.eye(3, dtype=torch.float64)
    h = hessian_neg_concave(torch.zeros(3, dtype=torch.float64), X, 1.0)
    assert torch.linalg.eigvalsh(h).max() > 0.1


def test_energy_is_nonnegative_and_bounded_below_by_the_norm_gap():
    for X, q, beta in draws(30, seed=3):
        m = X.norm(dim=1).max()
        assert float(energy(q, X, beta)) >= float(0.5 * (q.norm() - m) ** 2) - 1e-9


@pytest.mark.parametrize("fn", [energy, convex_part, concave_part, grad_neg_concave])
def test_bad_input_names_the_argument(fn):
    X, q = torch.randn(4, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="beta"):
        fn(q, X, 0.0)
    with pytest.raises(ValueError, match="beta"):
        fn(q, X, -1.0)
    with pytest.raises(ValueError, match="beta"):
        fn(q, X, float("nan"))
    with pytest.raises(ValueError, match="q: query dimension 5"):
        fn(torch.randn(2, 5), X, 1.0)
    with pytest.raises(ValueError, match="X: the pattern set is empty"):
        fn(q, torch.empty(0, 3), 1.0)
    with pytest.raises(ValueError, match=r"X: expected stored patterns of shape \(N, D\)"):
        fn(q, torch.randn(3), 1.0)
    with pytest.raises(ValueError, match="dtype"):
        fn(q.double(), X, 1.0)
