"""The plain PyTorch path (dllab.attention.taylor.chunk) against the naive twin: outputs, final state and
gradients over a grid of shapes and feature maps (compact and outer Taylor maps, any callable), across
block boundaries and padded chunks."""

import pytest
import torch
from torch.nn import functional as F

from dllab.attention import TaylorFeatureMap, linear_attention, naive_linear_attention
from dllab.attention.taylor import chunk as plain

# (N, L, D, Dv, K) on flattened inputs: ids read N8-L64-D8-V8-K3
SHAPES = [(1, 1, 1, 1, 1), (8, 64, 8, 8, 3), (2, 37, 16, 16, 3), (6, 50, 5, 7, 4), (3, 33, 3, 3, 5), (4, 17, 4, 40, 2)]
SHAPE_IDS = [f"N{n}-L{l}-D{d}-V{dv}-K{k}" for n, l, d, dv, k in SHAPES]


def _inputs(b, l, h, d, dtype=torch.float64, seed=0, lk=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, l, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, lk or l, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, lk or l, d, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (q, k, v)]


def _grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g, materialize_grads=True)


def _naive_state(q, k, v, keep, fm):
    """The twin of the final state: kv = sum_j keep_j phi(k_j) v_j^T, k_sum = sum_j keep_j phi(k_j)."""
    phi_k = fm(k) * keep.unsqueeze(-1)
    return phi_k.transpose(-2, -1) @ v, phi_k.sum(-2)


def _elu_map(x):
    return F.elu(x) + 1


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_the_naive_twin(shape, causal, masked, block_elements):
    n, length, d, dv, order = shape
    g = torch.Generator().manual_seed(length)
    q, k = (torch.randn(n, length, d, generator=g, dtype=torch.float64).requires_grad_() for _ in range(2))
    v = torch.randn(n, length, dv, generator=g, dtype=torch.float64).requires_grad_()
    keep = torch.ones(n, length, dtype=torch.float64)
    if masked:
        keep[0, max(1, length // 2) :] = 0  # every row keeps a key: no 0 / 0
    fm = TaylorFeatureMap(d, order)
    got = plain.chunked_attention(q, k, v, keep if masked else None, fm, causal, 8)
    mask = (keep == 0) if masked else None
    want = (naive_linear_attention(q, k, v, fm, causal=causal, key_padding_mask=mask), *_naive_state(q, k, v, keep, fm))
    assert got[0].is_contiguous()
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in got]
    losses = [sum((w * t).sum() for w, t in zip(weights, outs, strict=True)) for outs in (got, want)]
    grads = [torch.autograd.grad(loss, (q, k, v), materialize_grads=True) for loss in losses]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_outer_form_matches_naive(order, causal, block_elements):
    """The full outer-product map: every ordering of each monomial, the same kernel on the plain path."""
    q, k, v = _inputs(2, 40, 3, 4)
    fm = TaylorFeatureMap(4, order, form="outer")
    fast = linear_attention(q, k, v, fm, causal=causal, chunk_size=8)
    naive = naive_linear_attention(q, k, v, fm, causal=causal)
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-10)
    for a, b_ in zip(_grads(fast, (q, k, v)), _grads(naive, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_any_feature_map(causal, block_elements):
    """A callable without `series` or `num_features`: the C x C block from its features, M from one token."""
    q, k, v = _inputs(2, 21, 2, 4)
    fast = linear_attention(q, k, v, _elu_map, causal=causal, chunk_size=4)
    naive = naive_linear_attention(q, k, v, _elu_map, causal=causal)
    torch.testing.assert_close(fast, naive)
    for a, b_ in zip(_grads(fast, (q, k, v)), _grads(naive, (q, k, v)), strict=True):
        torch.testing.assert_close(a, b_)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradcheck_through_outputs_and_state(causal):
    """Several blocks (tiny BLOCK_ELEMENTS) and a padded last chunk, gradients through all three outputs."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 11, 3, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    keep = torch.ones(2, 11, dtype=torch.float64)
    keep[1, 8:] = 0
    fm = TaylorFeatureMap(3, 3)
    blocks = plain.BLOCK_ELEMENTS
    try:
        plain.BLOCK_ELEMENTS = plain.FORWARD_BLOCK_ELEMENTS = 1
        assert torch.autograd.gradcheck(
            lambda q, k, v: plain.chunked_attention(q, k, v, keep, fm, causal, 4), (q, k, v)
        )
    finally:
        plain.BLOCK_ELEMENTS, plain.FORWARD_BLOCK_ELEMENTS = blocks, 1 << 20


def test_block_tokens_are_whole_chunks_within_the_length():
    assert plain.block_tokens(4, 153, 64, 16384) == (plain.BLOCK_ELEMENTS // (4 * 153)) // 64 * 64
    assert plain.block_tokens(4, 153, 64, 100) == 128  # the length rounded up to a chunk
    assert plain.block_tokens(1 << 20, 153, 8, 1000) == 8  # at least one chunk
    assert plain.blocks(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
