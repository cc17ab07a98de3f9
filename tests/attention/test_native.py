"""The compiled kernel (dllab.attention.native) against its PyTorch twin, and its build's fallbacks."""

import os
import subprocess
import sys

import pytest
import torch

from dllab.attention import TaylorFeatureMap, native
from dllab.attention.chunk import FeatureProducts, QuadraticGradient

needs_native = pytest.mark.skipif(native.library() is None, reason=native.status())


def _case(d, order, weighted, tokens, dtype, transposed_g, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    fm = TaylorFeatureMap(d, order)
    m, channels = fm.num_features, 5
    state = torch.randn(batch, m, channels, generator=g, dtype=dtype)
    if transposed_g:  # as the keys' pass reads [V, 1]: (B, T, C) storage
        grad = torch.randn(batch, tokens, channels, generator=g, dtype=dtype).transpose(-2, -1)
    else:
        grad = torch.randn(batch, channels, tokens, generator=g, dtype=dtype)
    phi = fm.workspace(batch, tokens, state, weighted=weighted).features(
        torch.randn(batch, d, tokens, generator=g, dtype=dtype)
    )
    return fm, state, grad, phi.clone()


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "d, order", [(1, 3), (3, 3), (6, 3), (16, 3), (8, 2)], ids=["D1-K3", "D3-K3", "D6-K3", "D16-K3", "D8-K2"]
)
@pytest.mark.parametrize("weighted", [False, True], ids=["bare", "weighted"])
@pytest.mark.parametrize("tokens", [1, 70, 130])
@pytest.mark.parametrize("transposed_g", [False, True], ids=["g-rows", "g-transposed"])
def test_kernel_matches_the_pytorch_twin(dtype, d, order, weighted, tokens, transposed_g):
    fm, state, grad, phi = _case(d, order, weighted, tokens, dtype, transposed_g)
    fast = QuadraticGradient(fm, state, weighted=weighted)
    slow = QuadraticGradient(fm, state, weighted=weighted, use_native=False)
    assert fast.native and not slow.native
    expected = slow.gradient(slow.prepare(state), grad, phi)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(fast.gradient(fast.prepare(state), grad, phi), expected, rtol=tol, atol=tol)
    # a transposed state (the causal kernel keeps them so), and an output slice of a longer sequence
    state_t = state.transpose(-2, -1).contiguous()
    whole = torch.full((state.shape[0], d, tokens + 9), float("nan"), dtype=dtype)
    fast.gradient(fast.prepare_transposed(state_t), grad, phi, out=whole[..., 4 : 4 + tokens])
    torch.testing.assert_close(whole[..., 4 : 4 + tokens], expected, rtol=tol, atol=tol)
    assert whole[..., :4].isnan().all() and whole[..., 4 + tokens :].isnan().all()  # nothing written outside


@needs_native
def test_kernel_follows_torch_threads():
    fm, state, grad, phi = _case(16, 3, False, 300, torch.float32, False, batch=4)
    quadratic = QuadraticGradient(fm, state)
    many = quadratic.gradient(quadratic.prepare(state), grad, phi)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = quadratic.gradient(quadratic.prepare(state), grad, phi)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one, many, rtol=0, atol=0)  # each token is summed by one thread, same order


@needs_native
def test_kernel_rejects_mismatched_arguments():
    fm, state, grad, phi = _case(4, 3, False, 10, torch.float32, False)
    quadratic = QuadraticGradient(fm, state)
    with pytest.raises(ValueError, match="shapes do not fit"):
        quadratic.gradient(quadratic.prepare(state[:2]), grad, phi)
    with pytest.raises(ValueError, match="share a dtype"):
        quadratic.gradient(quadratic.prepare(state), grad.double(), phi)


def test_build_is_reused_and_leaves_no_partial_files(tmp_path):
    compiler = native.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    first = native.build(compiler, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert native.build(compiler, tmp_path) == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_failed_build_falls_back_with_the_reason(tmp_path):
    library, line = native.load("/bin/false", tmp_path)
    assert library is None and line.startswith("off:") and "false failed" in line
    assert not list(tmp_path.iterdir())  # the temporary output was removed
    library, line = native.load(None, tmp_path)
    assert library is None and "no C compiler" in line


def test_environment_turns_it_off():
    env = {**os.environ, "DLLAB_NATIVE": "0"}
    code = (
        "import torch; from dllab.attention import native, TaylorFeatureMap, linear_attention, naive_linear_attention\n"
        "q, k, v = (torch.randn(1, 2, 40, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))\n"
        "fm = TaylorFeatureMap(4, 3)\n"
        "for causal in (False, True):\n"
        "    a = torch.autograd.grad(linear_attention(q, k, v, fm, causal=causal).sum(), q)[0]\n"
        "    b = torch.autograd.grad(naive_linear_attention(q, k, v, fm, causal=causal).sum(), q)[0]\n"
        "    torch.testing.assert_close(a, b)\n"
        "print(native.status())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "off (DLLAB_NATIVE=0)" in result.stdout


def _features(fm, xt, weighted):
    """The twin: features built by a workspace, (B, M, T)."""
    return fm.workspace(xt.shape[0], xt.shape[-1], xt, weighted=weighted).features(xt).clone()


GRID = [(1, 3), (3, 3), (6, 3), (16, 3), (20, 3), (8, 2)]
GRID_IDS = ["D1-K3", "D3-K3", "D6-K3", "D16-K3", "D20-K3", "D8-K2"]


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d, order", GRID, ids=GRID_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["bare", "weighted"])
@pytest.mark.parametrize("channels", [1, 6, 7, 16, 17, 40])
def test_read_matches_the_product_with_built_features(dtype, d, order, weighted, channels):
    g = torch.Generator().manual_seed(d * 100 + channels)
    fm = TaylorFeatureMap(d, order)
    products = FeatureProducts(fm, torch.zeros(1, dtype=dtype), weighted)
    raw = torch.randn(3, 45, d, generator=g, dtype=dtype)  # (B, T, D): read as (B, D, T), token stride D
    a = torch.randn(3, fm.num_features, channels, generator=g, dtype=dtype).transpose(-2, -1)  # strided (B, C, M)
    expected = a @ _features(fm, raw.transpose(-2, -1), weighted)
    out = torch.full((3, channels, 50), float("nan"), dtype=dtype)
    products.read(a, raw.transpose(-2, -1), out=out[..., 2:47])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out[..., 2:47], expected, rtol=tol, atol=tol)
    assert out[..., :2].isnan().all() and out[..., 47:].isnan().all()


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d, order", GRID, ids=GRID_IDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["bare", "weighted"])
@pytest.mark.parametrize("channels", [1, 16, 17, 40])
def test_sum_matches_the_product_with_built_features(dtype, d, order, weighted, channels):
    g = torch.Generator().manual_seed(d * 100 + channels)
    fm = TaylorFeatureMap(d, order)
    products = FeatureProducts(fm, torch.zeros(1, dtype=dtype), weighted)
    raw = torch.randn(2, 96, d, generator=g, dtype=dtype)
    grad = torch.randn(2, 96, channels, generator=g, dtype=dtype).transpose(-2, -1)  # (B, C, T), token stride C
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    expected = grad @ _features(fm, raw.transpose(-2, -1), weighted).transpose(-2, -1)  # (B, C, M)
    out = torch.empty(2, fm.num_features, channels, dtype=dtype).transpose(-2, -1)  # strided output
    products.sum(grad, raw.transpose(-2, -1), out=out)
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    products.sum(grad, raw.transpose(-2, -1), out=out, add=True)
    torch.testing.assert_close(out, 2 * expected, rtol=tol, atol=tol)
    # two batch levels: a block of tokens 16..80 of each sequence, read in place as 4 chunks of 16
    chunks_x = raw[:, 16:80].unflatten(1, (4, 16)).transpose(-2, -1)  # (2, 4, D, 16)
    chunks_g = grad[..., 16:80].unflatten(-1, (4, 16)).transpose(1, 2)  # (2, 4, C, 16)
    out4 = torch.empty(2, 4, channels, fm.num_features, dtype=dtype)
    products.sum(chunks_g, chunks_x, out=out4)
    built = _features(fm, chunks_x.reshape(8, d, 16), weighted).view(2, 4, -1, 16)
    torch.testing.assert_close(out4, chunks_g @ built.transpose(-2, -1), rtol=tol, atol=tol)


@needs_native
def test_products_reject_mismatched_arguments():
    fm = TaylorFeatureMap(4, 3)
    products = FeatureProducts(fm, torch.zeros(1), False)
    x = torch.randn(2, 4, 10)
    with pytest.raises(ValueError, match="shapes do not fit"):
        products.read(torch.randn(2, 3, fm.num_features), x, out=torch.empty(2, 4, 10))
    with pytest.raises(ValueError, match="features do not fit"):
        products.read(torch.randn(2, 3, 7), x, out=torch.empty(2, 3, 10))
    with pytest.raises(ValueError, match="share a dtype"):
        products.sum(torch.randn(2, 3, 10), x.double(), out=torch.empty(2, 3, fm.num_features))
    with pytest.raises(ValueError, match=r"must be \(B, X, Y\) or \(B1"):
        products.sum(torch.randn(3, 10), x, out=torch.empty(2, 3, fm.num_features))
