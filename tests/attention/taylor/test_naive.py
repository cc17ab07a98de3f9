"""The naive twins: the quadratic formula and the recurrence agree with each other and with the definition
(softmax's limit, row-stochastic weights), and refuse bad input by name."""

import math

import pytest
import torch
from torch.nn import functional as F

from dllab.attention import TaylorFeatureMap, naive_linear_attention, recurrent_linear_attention

# (B, L, H, D, K): ids read B2-L9-H3-D4-K3
SHAPES = [(1, 1, 1, 1, 1), (2, 9, 3, 4, 3), (1, 12, 2, 5, 4), (3, 7, 1, 2, 2)]
SHAPE_IDS = [f"B{b}-L{l}-H{h}-D{d}-K{k}" for b, l, h, d, k in SHAPES]


def _qkv(b, l, h, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, l, d, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_recurrence_equals_the_causal_formula(shape):
    b, l, h, d, order = shape
    q, k, v = (t.requires_grad_() for t in _qkv(b, l, h, d))
    fm = TaylorFeatureMap(d, order)
    recurrent = recurrent_linear_attention(q, k, v, fm)
    quadratic = naive_linear_attention(q, k, v, fm, causal=True)
    torch.testing.assert_close(recurrent, quadratic)
    g = torch.randn(recurrent.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for a, b_ in zip(
        torch.autograd.grad(recurrent, (q, k, v), g, materialize_grads=True),
        torch.autograd.grad(quadratic, (q, k, v), g, materialize_grads=True),
        strict=True,
    ):
        torch.testing.assert_close(a, b_)


def test_formula_is_the_definition_written_out():
    """One row by hand: z_i = sum_j a_ij v_j / sum_j a_ij with a_ij = phi(q_i)^T phi(k_j) = the series."""
    q, k, v = _qkv(1, 5, 1, 3)
    fm = TaylorFeatureMap(3, 3, scale=1.0)
    t = (q[0, 0, 2] * k[0, 0]).sum(-1)  # (5,)
    a = 1 + t + t**2 / 2
    for causal, row in ((False, a), (True, a[:3])):
        want = (row[:, None] * v[0, 0, : len(row)]).sum(0) / row.sum()
        torch.testing.assert_close(naive_linear_attention(q, k, v, fm, causal=causal)[0, 0, 2], want)


def test_padding_keys_get_no_weight():
    q, k, v = _qkv(2, 6, 2, 4)
    fm = TaylorFeatureMap(4, 3)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 4:] = True
    out = naive_linear_attention(q, k, v, fm, key_padding_mask=mask)
    torch.testing.assert_close(out[1], naive_linear_attention(q[1:], k[1:, :, :4], v[1:, :, :4], fm)[0])


def test_large_order_tends_to_softmax():
    q, k, v = (0.5 * t for t in _qkv(1, 16, 2, 4))
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = [
        float((naive_linear_attention(q, k, v, TaylorFeatureMap(4, order)) - exact).norm()) for order in (1, 3, 7)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4 * math.sqrt(float((exact**2).sum()))


def test_bad_input_is_named():
    q, k, v = _qkv(2, 5, 2, 4)
    fm = TaylorFeatureMap(4, 3)
    with pytest.raises(ValueError, match="v: length"):
        recurrent_linear_attention(q, k, v[..., :3, :], fm)
    with pytest.raises(ValueError, match="key_padding_mask"):
        naive_linear_attention(q, k, v, fm, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="feature_map: built for dim=5"):
        naive_linear_attention(q, k, v, TaylorFeatureMap(5, 3))
