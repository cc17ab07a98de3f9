"""The fused kernels (dllab.attention.taylor.fused.chunk) against the plain path and the naive twins: outputs
and gradients over a grid of shapes, where they apply, their cached buffers, and the no-gradient forward."""

import pytest
import torch

from dllab.attention import TaylorFeatureMap, kernel_path, linear_attention, naive_linear_attention
from dllab.attention.taylor.chunk import chunked_attention
from dllab.attention.taylor.fused import chunk as fused
from dllab.attention.taylor.fused import native

needs_native = pytest.mark.skipif(native.library() is None, reason=native.status())

# (N, L, D, Dv, K) on flattened inputs: ids read N8-L64-D8-V8-K3
SHAPES = [
    (1, 1, 2, 2, 3),
    (8, 64, 8, 8, 3),
    (2, 37, 16, 16, 3),
    (6, 50, 5, 7, 2),
    (3, 130, 32, 32, 3),
    (2, 20, 4, 40, 3),
]
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


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_fused_matches_the_plain_path(shape, causal, masked, dtype, block_elements):
    """The same flattened call on both paths: outputs, final state and all input gradients."""
    n, length, d, dv, order = shape
    g = torch.Generator().manual_seed(length)
    q, k = (torch.randn(n, length, d, generator=g, dtype=dtype).requires_grad_() for _ in range(2))
    v = torch.randn(n, length, dv, generator=g, dtype=dtype).requires_grad_()
    keep = torch.ones(n, length, dtype=dtype)
    if masked:
        keep[0, max(1, length // 2) :] = 0  # every row keeps a key: no 0 / 0
    fm = TaylorFeatureMap(d, order)
    if not fused.applies(fm, q, dv, causal):
        assert causal and dv > 32  # the causal chunk loop holds Dv + 1 <= 33 channels
        return
    got = fused.fused_attention(q, k, v, keep if masked else None, fm, causal, 8)
    want = chunked_attention(q, k, v, keep if masked else None, fm, causal, 8)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    assert got[0].is_contiguous()
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tol)
    weights = [torch.randn(t.shape, generator=g, dtype=dtype) for t in got]
    grads_got = torch.autograd.grad(got, (q, k, v), weights)
    grads_want = torch.autograd.grad(want, (q, k, v), weights)
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b, **tol)


@needs_native
def test_applies_only_where_the_loops_do():
    like = torch.zeros(1, dtype=torch.float32)
    assert fused.applies(TaylorFeatureMap(16, 3), like, 16, causal=True)
    assert fused.applies(TaylorFeatureMap(8, 2), like.double(), 8, causal=False)
    assert not fused.applies(TaylorFeatureMap(16, 4), like, 16, causal=False)  # K <= 3 only
    assert not fused.applies(TaylorFeatureMap(16, 1), like, 16, causal=False)
    assert not fused.applies(TaylorFeatureMap(4, 3, form="outer"), like, 4, causal=False)
    assert not fused.applies(TaylorFeatureMap(16, 3), like.half(), 16, causal=False)  # float32 / float64
    assert fused.applies(TaylorFeatureMap(40, 3), like, 40, causal=False)
    assert not fused.applies(TaylorFeatureMap(40, 3), like, 40, causal=True)  # the chunk loop: D <= 32
    assert not fused.applies(TaylorFeatureMap(16, 3), like, 33, causal=True)  # and Dv + 1 <= 33


@needs_native
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_wide_heads_take_the_fused_path_where_they_can(causal):
    """D = 33: the non-causal call is fused (no limit on D), the causal one plain (the chunk loop: D <= 32)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 21, 33, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    fm = TaylorFeatureMap(33, 3)
    assert kernel_path(fm, q, v, causal) == ("plain" if causal else "fused")
    fast = linear_attention(q, k, v, fm, causal=causal, chunk_size=8)
    slow = naive_linear_attention(q, k, v, fm, causal=causal)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    grad = torch.randn(fast.shape, generator=g, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(fast, (q, k, v), grad), torch.autograd.grad(slow, (q, k, v), grad), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@needs_native
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
def test_causal_without_gradients_matches(masked, block_elements):
    """Under no_grad the causal kernel keeps no per-chunk states (one scratch buffer serves every block):
    same outputs and final state as the run that keeps them, over several blocks and a padded last chunk."""
    q, k, v = _inputs(2, 45, 2, 4)  # 45 = 5 chunks of 8 and a padded sixth
    mask = torch.zeros(2, 45, dtype=torch.bool)
    mask[1, 40:] = True
    fm = TaylorFeatureMap(4, 3)
    kwargs = dict(causal=True, chunk_size=8, key_padding_mask=mask if masked else None, return_state=True)
    kept, kept_state = linear_attention(q, k, v, fm, **kwargs)
    assert kept.requires_grad
    with torch.no_grad():
        scratch, scratch_state = linear_attention(q, k, v, fm, **kwargs)
    torch.testing.assert_close(scratch, kept.detach(), rtol=0, atol=0)
    torch.testing.assert_close(scratch_state.kv, kept_state.kv.detach(), rtol=0, atol=0)
    torch.testing.assert_close(scratch_state.k_sum, kept_state.k_sum.detach(), rtol=0, atol=0)
    naive = naive_linear_attention(q, k, v, fm, causal=True, key_padding_mask=mask if masked else None)
    torch.testing.assert_close(scratch, naive)


@needs_native
def test_buffers_reused_across_calls_and_threads():
    """The kernels' buffers are cached per thread: calls alternating between maps and paths on the same
    shapes, and calls from two threads at once, each get their own right answer (values and gradients)."""
    from concurrent.futures import ThreadPoolExecutor

    q, k, v = _inputs(2, 45, 2, 4)
    maps = [TaylorFeatureMap(4, 3), TaylorFeatureMap(4, 3, scale=1.0), TaylorFeatureMap(4, 2)]
    cases = [(fm, causal) for fm in maps for causal in (False, True)]
    expected = []
    for fm, causal in cases:
        out = naive_linear_attention(q, k, v, fm, causal=causal)
        expected.append((out, _grads(out, (q, k, v))))

    def run(i):
        fm, causal = cases[i % len(cases)]
        out = linear_attention(q, k, v, fm, causal=causal, chunk_size=8)
        return i % len(cases), out, _grads(out, (q, k, v))

    def check(results):
        for i, out, grads in results:
            torch.testing.assert_close(out, expected[i][0])
            for a, b_ in zip(grads, expected[i][1], strict=True):
                torch.testing.assert_close(a, b_)

    check(map(run, range(2 * len(cases))))
    with ThreadPoolExecutor(2) as pool:
        check(pool.map(run, range(4 * len(cases))))
    fused.clear_buffers()
    check([run(0)])


@needs_native
def test_buffers_stay_bounded_over_many_lengths():
    """Training on sequences of many lengths must not grow the cached buffers without bound."""
    fm = TaylorFeatureMap(8, 3)
    for length in range(20, 80, 3):
        q, k, v = _inputs(1, length, 2, 8, dtype=torch.float32)
        for causal in (False, True):
            out = linear_attention(q, k, v, fm, causal=causal, chunk_size=8)
            _grads(out, (q, k, v))
    entries = list(fused._CACHE.entries.values())
    assert len(entries) <= fused._CACHE_SIZE
    assert any(isinstance(e, fused._CausalBlock) for e in entries)  # the causal calls did use the cache
