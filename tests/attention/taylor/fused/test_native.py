"""The compiled loops (dllab.attention.taylor.fused.native, through fused.chunk.Kernels) against plain products
over built features, and the build's fallbacks."""

import math
import tomllib
from pathlib import Path

import pytest
import torch

from dllab.attention import TaylorFeatureMap
from dllab.attention.taylor.fused import native
from dllab.attention.taylor.fused.chunk import Kernels

needs_native = pytest.mark.skipif(native.library() is None, reason=native.status())


def _features(fm, xt, weighted):
    """The twin: the map's features (B, M, T) of raw inputs xt (B, D, T), or its bare monomials."""
    phi = fm.transposed(xt)
    return phi if weighted else phi / fm.feature_weights(phi).unsqueeze(-1)


def _gradient_twin(fm, state, grad, xt, weighted):
    """dL/dxt through the features when dL/du = state @ grad, by autograd."""
    xt = xt.detach().requires_grad_()
    return torch.autograd.grad(_features(fm, xt, weighted), xt, state @ grad)[0]


def _case(d, order, weighted, tokens, dtype, transposed_g, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    fm = TaylorFeatureMap(d, order)
    m, channels = fm.num_features, 5
    state = torch.randn(batch, m, channels, generator=g, dtype=dtype)
    if transposed_g:  # as the keys' pass reads [V, 1]: (B, T, C) storage
        grad = torch.randn(batch, tokens, channels, generator=g, dtype=dtype).transpose(-2, -1)
    else:
        grad = torch.randn(batch, channels, tokens, generator=g, dtype=dtype)
    xt = torch.randn(batch, d, tokens, generator=g, dtype=dtype)
    return fm, state, grad, xt


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "d, order", [(1, 3), (3, 3), (6, 3), (16, 3), (8, 2)], ids=["D1-K3", "D3-K3", "D6-K3", "D16-K3", "D8-K2"]
)
@pytest.mark.parametrize("weighted", [False, True], ids=["bare", "weighted"])
@pytest.mark.parametrize("tokens", [1, 70, 130])
@pytest.mark.parametrize("transposed_g", [False, True], ids=["g-rows", "g-transposed"])
def test_gradient_matches_autograd_through_the_features(dtype, d, order, weighted, tokens, transposed_g):
    fm, state, grad, xt = _case(d, order, weighted, tokens, dtype, transposed_g)
    kernels = Kernels(fm, state, weighted)
    expected = _gradient_twin(fm, state, grad, xt, weighted)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(kernels.gradient(state, grad, xt, torch.empty_like(xt)), expected, rtol=tol, atol=tol)
    # a transposed state (the causal kernel keeps them so), and an output slice of a longer sequence
    state_t = state.transpose(-2, -1).contiguous()
    whole = torch.full((state.shape[0], d, tokens + 9), float("nan"), dtype=dtype)
    kernels.gradient(state_t.transpose(-2, -1), grad, xt, out=whole[..., 4 : 4 + tokens])
    torch.testing.assert_close(whole[..., 4 : 4 + tokens], expected, rtol=tol, atol=tol)
    assert whole[..., :4].isnan().all() and whole[..., 4 + tokens :].isnan().all()  # nothing written outside


@needs_native
def test_kernel_follows_torch_threads():
    fm, state, grad, xt = _case(16, 3, False, 300, torch.float32, False, batch=4)
    kernels = Kernels(fm, state, False)
    many = kernels.gradient(state, grad, xt, torch.empty_like(xt))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one = kernels.gradient(state, grad, xt, torch.empty_like(xt))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one, many, rtol=0, atol=0)  # each token is summed by one thread, same order


@needs_native
def test_kernel_rejects_mismatched_arguments():
    fm, state, grad, xt = _case(4, 3, False, 10, torch.float32, False)
    kernels = Kernels(fm, state, False)
    with pytest.raises(ValueError, match="shapes do not fit"):
        kernels.gradient(state[:2], grad, xt, torch.empty_like(xt))
    with pytest.raises(ValueError, match="share a dtype"):
        kernels.gradient(state, grad.double(), xt, torch.empty_like(xt))


def test_build_is_reused_says_so_and_leaves_no_partial_files(tmp_path, capsys):
    compiler = native.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    first = native.build(compiler, tmp_path)
    assert "compiling the attention kernels once" in capsys.readouterr().err  # seconds long: not silent
    stamp = first.stat().st_mtime_ns
    assert native.build(compiler, tmp_path) == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert capsys.readouterr().err == ""
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_package_data_ships_the_source():
    """A non-editable install must carry native.c: pyproject's package-data names the package it lives in."""
    pyproject = tomllib.loads((Path(__file__).parents[4] / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    assert native.SOURCE.exists() and "native.c" in package_data[native.__name__.rsplit(".", 1)[0]]


def test_failed_build_falls_back_with_the_reason(tmp_path):
    library, line = native.load("/bin/false", tmp_path)
    assert library is None and line.startswith("off:") and "false failed" in line
    assert not list(tmp_path.iterdir())  # the temporary output was removed
    library, line = native.load(None, tmp_path)
    assert library is None and "no C compiler" in line


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
    products = Kernels(fm, torch.zeros(1, dtype=dtype), weighted)
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
    products = Kernels(fm, torch.zeros(1, dtype=dtype), weighted)
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
    products = Kernels(fm, torch.zeros(1), False)
    x = torch.randn(2, 4, 10)
    with pytest.raises(ValueError, match="shapes do not fit"):
        products.read(torch.randn(2, 3, fm.num_features), x, out=torch.empty(2, 4, 10))
    with pytest.raises(ValueError, match="features do not fit"):
        products.read(torch.randn(2, 3, 7), x, out=torch.empty(2, 3, 10))
    with pytest.raises(ValueError, match="share a dtype"):
        products.sum(torch.randn(2, 3, 10), x.double(), out=torch.empty(2, 3, fm.num_features))
    with pytest.raises(ValueError, match=r"must be \(B, X, Y\) or \(B1"):
        products.sum(torch.randn(3, 10), x, out=torch.empty(2, 3, fm.num_features))


def _chunk_twin(qc, kc, v1, scale, order):
    """The masked C x C block by plain products: W, its slope, per chunk (B, C, C)."""
    s = (qc @ kc.transpose(-2, -1)).flatten(0, 1) * scale  # (B, t, j)
    mask = torch.ones(s.shape[-1], s.shape[-1], dtype=s.dtype).tril()
    w = sum(s**n / math.factorial(n) for n in range(order)) * mask
    slope = sum(n * s ** (n - 1) / math.factorial(n) for n in range(1, order)) * mask
    return w, slope if order > 1 else torch.zeros_like(s)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "chunks, chunk, d, v, order",
    [(3, 64, 16, 17, 3), (2, 20, 5, 4, 3), (2, 33, 16, 17, 2), (3, 16, 3, 6, 4), (1, 7, 8, 9, 1), (2, 40, 32, 33, 3)],
    ids=["head-C64-D16-V17-K3", "C20-D5-V4-K3", "C33-D16-V17-K2", "C16-D3-V6-K4", "C7-D8-V9-K1", "C40-D32-V33-K3"],
)
def test_chunk_kernel_matches_plain_products(dtype, chunks, chunk, d, v, order):
    g = torch.Generator().manual_seed(chunk)
    length = chunks * chunk + 10
    q, k = (torch.randn(2, length, d, generator=g, dtype=dtype) for _ in range(2))
    qc, kc = (t[:, 5 : 5 + chunks * chunk].unflatten(1, (chunks, chunk)) for t in (q, k))  # read in place
    v1 = torch.randn(2 * chunks, chunk, v, generator=g, dtype=dtype)
    scale, tol = 1 / math.sqrt(d), (2e-5 if dtype == torch.float32 else 1e-12)
    w, slope = _chunk_twin(qc, kc, v1, scale, order)
    base = torch.randn(2 * chunks, v, chunk, generator=g, dtype=dtype)
    out = base.clone()
    native.causal_chunks(qc, kc, v1, scale, order, out=out)
    torch.testing.assert_close(out, base + v1.transpose(-2, -1) @ w.transpose(-2, -1), rtol=tol, atol=tol)
    grad_out = torch.randn(2 * chunks, v, chunk, generator=g, dtype=dtype)
    grads = [torch.randn(2, chunks, n, chunk, generator=g, dtype=dtype) for n in (d, d, v - 1)]  # added into
    before = [t.clone() for t in grads]
    native.causal_chunks(qc, kc, v1, scale, order, g=grad_out, grads=tuple(grads))
    gs = (grad_out.transpose(-2, -1) @ v1.transpose(-2, -1)) * slope  # (B, t, j)
    qb, kb = qc.flatten(0, 1), kc.flatten(0, 1)
    expected = [
        scale * (gs @ kb).transpose(-2, -1),
        scale * (gs.transpose(-2, -1) @ qb).transpose(-2, -1),
        (grad_out @ w)[:, : v - 1],
    ]
    for got, was, want in zip(grads, before, expected, strict=True):
        torch.testing.assert_close(got.flatten(0, 1) - was.flatten(0, 1), want, rtol=tol, atol=tol)


@needs_native
def test_chunk_kernel_refuses_what_it_cannot_hold():
    q = torch.randn(1, 2, 8, 40)
    with pytest.raises(ValueError, match="shapes do not fit"):
        native.causal_chunks(q, q, torch.randn(2, 8, 5), 0.1, 3, out=torch.zeros(2, 5, 8))
    assert not native.causal_chunks_apply(q, 40, 3) and native.causal_chunks_apply(q, 32, 3)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d, channels", [(16, 17), (5, 4), (16, 40)], ids=["D16-C17", "D5-C4", "D16-C40"])
@pytest.mark.parametrize("reverse", [False, True], ids=["prefix", "suffix"])
def test_scan_is_the_exclusive_running_sum_of_chunk_sums(dtype, d, channels, reverse):
    g = torch.Generator().manual_seed(d + channels)
    fm = TaylorFeatureMap(d, 3)
    products = Kernels(fm, torch.zeros(1, dtype=dtype), True)
    raw = torch.randn(2, 5 * 12 + 3, d, generator=g, dtype=dtype)
    chunks_x = raw[:, 3:].unflatten(1, (5, 12)).transpose(-2, -1)  # (2, 5, D, 12), read in place
    grad = torch.randn(2, 5, channels, 12, generator=g, dtype=dtype)
    sums = torch.empty(2, 5, channels, fm.num_features, dtype=dtype)
    products.sum(grad, chunks_x, out=sums)
    init = torch.randn(2, channels, fm.num_features, generator=g, dtype=dtype)
    out, last = torch.empty_like(sums), torch.empty_like(init)
    products.scan(grad, chunks_x, out, init, last, reverse=reverse)
    running = (sums.flip(1).cumsum(1).flip(1) if reverse else sums.cumsum(1)) - sums  # exclusive
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, init[:, None] + running, rtol=tol, atol=tol)
    torch.testing.assert_close(last, init + sums.sum(1), rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="a scan needs init and last"):
        products.scan(grad, chunks_x, out, init[:1], last)
