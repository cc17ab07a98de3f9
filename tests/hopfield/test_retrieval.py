"""The CCCP update and retrieval: descent, convergence, fixed points, the attention identity (Q1.2-1.3)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dllab.attention import MultiHeadAttention, naive_softmax_attention, softmax_attention
from dllab.hopfield import energy, retrieve, update


def problem(n: int, d: int, b: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(b, d, generator=gen, dtype=dtype)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 30),
    d=st.integers(1, 10),
    b=st.integers(1, 4),
    log_beta=st.floats(math.log(0.01), math.log(50.0)),
    scale=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_energy_never_increases_along_cccp_iterates(n, d, b, log_beta, scale, seed):
    X, q = problem(n, d, b, seed)
    X, q, beta = scale * X, scale * q, math.exp(log_beta)
    r = retrieve(q, X, beta, max_steps=30, tol=0.0)
    assert r.steps == 30 and r.energies.shape == (31, b)
    # the trace is the energy of the iterates, computed from the same scores as the update
    torch.testing.assert_close(r.energies[-1], energy(r.state, X, beta))
    rise = r.energies.diff(dim=0).max()
    assert rise <= 1e-10 * (1 + r.energies.abs().max())


@pytest.mark.parametrize("beta", [0.05, 0.5, 8.0])
def test_iterates_converge_to_a_fixed_point(beta):
    X, q = problem(25, 6, 5, seed=4)
    r = retrieve(q, X, beta, max_steps=1000, tol=1e-12)
    assert r.converged and r.steps < 1000
    torch.testing.assert_close(r.state, torch.softmax(beta * r.state @ X.T, -1) @ X, rtol=0, atol=1e-9)
    torch.testing.assert_close(update(r.state, X, beta), r.state, rtol=0, atol=1e-9)


def test_large_beta_retrieves_the_nearest_pattern_in_one_step():
    X, _ = problem(20, 30, 1, seed=5)
    q = X + 0.3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(6), dtype=X.dtype)
    r = retrieve(q, X, 50.0)
    torch.testing.assert_close(r.state, X, rtol=0, atol=1e-8)


def test_small_beta_collapses_to_the_mean_of_the_patterns():
    # beta -> 0: softmax is uniform, every query goes to the metastable global average.
    X, q = problem(40, 5, 3, seed=7)
    r = retrieve(q, X, 1e-6)
    torch.testing.assert_close(r.state, X.mean(0).expand(3, -1), rtol=0, atol=1e-4)


def test_retrieve_stops_at_max_steps_and_handles_one_query():
    X, q = problem(10, 4, 1, seed=8)
    r = retrieve(q[0], X, 0.01, max_steps=2, tol=0.0)
    assert r.steps == 2 and not r.converged
    assert r.state.shape == (4,) and r.energies.shape == (3,)
    step2 = update(update(q[0], X, 0.01), X, 0.01)
    torch.testing.assert_close(r.state, step2)


def test_update_is_batched_over_any_leading_shape():
    X, q = problem(9, 4, 6, seed=9)
    q = q.reshape(2, 3, 4)
    out = update(q, X, 0.3)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out[1, 2], update(q[1, 2], X, 0.3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_update_is_single_head_attention(dtype):
    X, q = problem(17, 8, 5, seed=10, dtype=dtype)
    beta = 1 / math.sqrt(8)
    expected = torch.softmax(beta * q @ X.T, dim=-1) @ X  # X^T softmax(beta X q), row by row
    torch.testing.assert_close(update(q, X, beta), expected)
    torch.testing.assert_close(update(q, X, beta), softmax_attention(q, X, X, scale=beta))
    torch.testing.assert_close(update(q, X, beta), naive_softmax_attention(q, X, X, scale=beta))
    # the first step of retrieve (its own score product) is the same update
    torch.testing.assert_close(retrieve(q, X, beta, max_steps=1, tol=0).state, expected)


def test_one_update_is_the_multi_head_layer_with_identity_projections():
    X, q = problem(17, 8, 5, seed=11, dtype=torch.float32)
    beta = 1 / math.sqrt(8)  # the layer's default scale 1/sqrt(D)
    plain = MultiHeadAttention(8, 1, projections=False)
    identity = MultiHeadAttention(8, 1, projections=True, identity_init=True)
    for layer in (plain, identity):
        torch.testing.assert_close(layer(q[None], X[None])[0], update(q, X, beta))
    other = MultiHeadAttention(8, 1, projections=False, scale=2.5)
    torch.testing.assert_close(other(q[None], X[None])[0], update(q, X, 2.5))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": 0.0}, "beta"),
        ({"max_steps": 0}, "max_steps"),
        ({"tol": -1.0}, "tol"),
    ],
)
def test_retrieve_rejects_bad_arguments(kwargs, message):
    X, q = problem(5, 3, 2, seed=12)
    args = {"beta": 1.0, "max_steps": 10, "tol": 1e-6} | kwargs
    with pytest.raises(ValueError, match=message):
        retrieve(q, X, **args)
    with pytest.raises(ValueError, match="X: the pattern set is empty"):
        update(q, X[:0], 1.0)
    with pytest.raises(ValueError, match="q: query dimension"):
        retrieve(q[:, :2], X, 1.0)
