"""linear_attention, the front-end, against its naive twins on both kernel paths (fused and plain): outputs
and gradients over a grid of shapes, causal chunking, recurrent decoding, padding, the blocks' boundaries,
the output's layout, and bad input."""

import pytest
import torch
from torch.nn import functional as F

from dllab.attention import (
    TaylorFeatureMap,
    TaylorState,
    kernel_path,
    linear_attention,
    linear_attention_step,
    naive_linear_attention,
    recurrent_linear_attention,
    softmax_attention,
)
from dllab.attention import linear as linear_module
from dllab.attention.taylor.fused import chunk as fused

# (B, L, H, D, K): ids read B2-L64-H4-D8-K3
SHAPES = [(1, 1, 1, 1, 1), (2, 64, 4, 8, 3), (1, 37, 2, 16, 3), (2, 50, 3, 5, 4), (1, 33, 1, 3, 5), (3, 17, 2, 4, 2)]
SHAPE_IDS = [f"B{b}-L{l}-H{h}-D{d}-K{k}" for b, l, h, d, k in SHAPES]


def _inputs(b, l, h, d, dtype=torch.float64, seed=0, lk=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, l, d, generator=g, dtype=dtype)
    k = torch.randn(b, h, lk or l, d, generator=g, dtype=dtype)
    v = torch.randn(b, h, lk or l, d, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (q, k, v)]


def _grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g, materialize_grads=True)


def _expected_path(kernels, fm, q, v, causal):
    """The path a call takes under the `kernels` fixture: fused only where the compiled kernels apply."""
    applies = kernels == "fused" and fused.applies(fm, q, v.shape[-1], causal)
    return "fused" if applies else "plain"


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_naive_outputs_and_gradients(shape, causal, block_elements, kernels):
    b, l, h, d, k = shape
    q, kk, v = _inputs(b, l, h, d)
    fm = TaylorFeatureMap(d, k)
    assert kernel_path(fm, q, v, causal) == _expected_path(kernels, fm, q, v, causal)
    fast = linear_attention(q, kk, v, fm, causal=causal, chunk_size=8)
    assert fast.is_contiguous()
    naive = naive_linear_attention(q, kk, v, fm, causal=causal)
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-10)
    for a, b_ in zip(_grads(fast, (q, kk, v)), _grads(naive, (q, kk, v)), strict=True):
        torch.testing.assert_close(a, b_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_any_output_gradient_layout(causal, layout, block_elements, kernels):
    """The output is contiguous (it takes .view), and an incoming gradient of either layout is read right
    (a model's head merge, out.transpose(1, 2).reshape(...), sends back a gradient strided like the merge)."""
    q, kk, v = _inputs(2, 45, 3, 8)
    fm = TaylorFeatureMap(8, 3)
    fast = linear_attention(q, kk, v, fm, causal=causal, chunk_size=8)
    naive = naive_linear_attention(q, kk, v, fm, causal=causal)
    torch.testing.assert_close(fast.view(2, 3, -1), naive.reshape(2, 3, -1), rtol=1e-10, atol=1e-10)
    g = torch.randn(2, 3, 45, 8, dtype=q.dtype, generator=torch.Generator().manual_seed(3))
    if layout == "transposed":
        g = g.transpose(1, 2).contiguous().transpose(1, 2)  # (B, L, H, Dv) storage
        assert not g.is_contiguous()
    for a, b_ in zip(torch.autograd.grad(fast, (q, kk, v), g), torch.autograd.grad(naive, (q, kk, v), g), strict=True):
        torch.testing.assert_close(a, b_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 16, 64, 1000])
def test_causal_any_chunk_size(chunk_size, block_elements):
    q, k, v = _inputs(2, 45, 2, 4)
    fm = TaylorFeatureMap(4, 3)
    torch.testing.assert_close(
        linear_attention(q, k, v, fm, causal=True, chunk_size=chunk_size),
        naive_linear_attention(q, k, v, fm, causal=True),
    )


def test_recurrent_steps_equal_chunked():
    q, k, v = _inputs(2, 29, 3, 6)
    fm = TaylorFeatureMap(6, 3)
    torch.testing.assert_close(
        recurrent_linear_attention(q, k, v, fm), linear_attention(q, k, v, fm, causal=True, chunk_size=8)
    )


@pytest.mark.parametrize("order", [2, 3, 4], ids=lambda k: f"K{k}")
def test_decoding_steps_follow_the_recurrent_twin(order):
    q, k, v = (t.detach() for t in _inputs(2, 13, 3, 5))
    fm = TaylorFeatureMap(5, order)
    expected = recurrent_linear_attention(q, k, v, fm)
    state = None
    for t in range(13):
        out, state = linear_attention_step(q[..., t, :], k[..., t, :], v[..., t, :], state, fm)
        torch.testing.assert_close(out, expected[..., t, :])
    assert state.steps == 13


def test_prefill_then_step_continues_the_sequence():
    q, k, v = _inputs(2, 20, 2, 4)
    fm = TaylorFeatureMap(4, 3)
    full = linear_attention(q, k, v, fm, causal=True)
    _, state = linear_attention(q[..., :12, :], k[..., :12, :], v[..., :12, :], fm, causal=True, return_state=True)
    assert isinstance(state, TaylorState) and state.steps == 12
    assert state.kv.shape == (2, 2, fm.num_features, 4) and state.k_sum.shape == (2, 2, fm.num_features)
    for t in range(12, 20):
        out, state = linear_attention_step(q[..., t, :], k[..., t, :], v[..., t, :], state, fm)
        torch.testing.assert_close(out, full[..., t, :])
    assert state.steps == 20


def test_state_from_memory_reads_like_cross_attention():
    q, _, _ = _inputs(2, 6, 2, 4)
    _, k, v = _inputs(2, 6, 2, 4, lk=11, seed=3)
    fm = TaylorFeatureMap(4, 3)
    state = TaylorState.from_keys_values(k, v, fm)
    torch.testing.assert_close(state.read(q, fm), linear_attention(q, k, v, fm))
    torch.testing.assert_close(state.read(q[..., 2, :], fm), linear_attention(q, k, v, fm)[..., 2, :])
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[1, 7:] = True
    masked = TaylorState.from_keys_values(k, v, fm, key_padding_mask=mask)
    torch.testing.assert_close(masked.read(q, fm), naive_linear_attention(q, k, v, fm, key_padding_mask=mask))
    generic = TaylorState.from_keys_values(k, v, lambda x: fm(x), key_padding_mask=mask)  # the plain path
    torch.testing.assert_close(generic.kv, masked.kv)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradcheck_float64(causal, block_elements, kernels):
    q, k, v = _inputs(2, 11, 2, 3)
    fm = TaylorFeatureMap(3, 3)
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[1, 8:] = True
    assert torch.autograd.gradcheck(
        lambda q, k, v: linear_attention(q, k, v, fm, causal=causal, key_padding_mask=mask, chunk_size=4),
        (q, k, v),
    )


def test_gradcheck_through_the_returned_state():
    q, k, v = _inputs(1, 9, 2, 3)
    fm = TaylorFeatureMap(3, 4)
    for causal in (False, True):
        assert torch.autograd.gradcheck(
            lambda q, k, v, c=causal: linear_attention(q, k, v, fm, causal=c, chunk_size=4, return_state=True)[1].kv,
            (q, k, v),
        )


@pytest.mark.parametrize("through", ["output", "kv", "k_sum"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradients_through_any_one_result(through, causal, kernels):
    """A loss on the output alone, or on the returned state alone: each kernel's backward with the other
    results' gradients absent."""
    q, k, v = _inputs(2, 21, 2, 4)
    fm = TaylorFeatureMap(4, 3)
    out, state = linear_attention(q, k, v, fm, causal=causal, chunk_size=8, return_state=True)
    phi_k = fm(k)  # the state's twin: kv = Phi(K)^T V, k_sum = Phi(K)^T 1
    twins = {"output": naive_linear_attention(q, k, v, fm, causal=causal), "kv": phi_k.transpose(-2, -1) @ v}
    twins["k_sum"] = phi_k.sum(-2)
    got = {"output": out, "kv": state.kv, "k_sum": state.k_sum}[through]
    torch.testing.assert_close(got, twins[through])
    for a, b_ in zip(_grads(got, (q, k, v)), _grads(twins[through], (q, k, v)), strict=True):
        torch.testing.assert_close(a, b_)


def test_cross_attention_lengths_differ():
    q, _, _ = _inputs(2, 7, 3, 4)
    _, k, v = _inputs(2, 7, 3, 4, lk=19, seed=5)
    fm = TaylorFeatureMap(4, 3)
    torch.testing.assert_close(linear_attention(q, k, v, fm), naive_linear_attention(q, k, v, fm))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_key_padding_mask_removes_keys_exactly(causal):
    q, k, v = _inputs(2, 10, 2, 4)
    fm = TaylorFeatureMap(4, 3)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 6:] = True
    out = linear_attention(q, k, v, fm, causal=causal, key_padding_mask=mask)
    expected = naive_linear_attention(q, k, v, fm, causal=causal, key_padding_mask=mask)
    torch.testing.assert_close(out, expected)
    # and the gradients: padded keys get none
    for got, want in zip(_grads(out, [q, k, v]), _grads(expected, [q, k, v]), strict=True):
        torch.testing.assert_close(got, want)
    if not causal:
        short = linear_attention(q[:1], k[:1, :, :6], v[:1, :, :6], fm)
        torch.testing.assert_close(out[:1], short)


def test_float32_close_to_float64():
    q, k, v = _inputs(1, 300, 4, 16)
    fm = TaylorFeatureMap(16, 3)
    ref = linear_attention(q, k, v, fm, causal=True)
    got = linear_attention(q.float(), k.float(), v.float(), fm, causal=True)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)


def test_generic_feature_map_uses_the_plain_path():
    q, k, v = _inputs(2, 21, 2, 4)

    def elu_map(x):
        return F.elu(x) + 1

    for causal in (False, True):
        torch.testing.assert_close(
            linear_attention(q, k, v, elu_map, causal=causal, chunk_size=4),
            naive_linear_attention(q, k, v, elu_map, causal=causal),
        )


def test_approaches_softmax_as_k_grows():
    q, k, v = (0.5 * t.detach() for t in _inputs(1, 128, 2, 16))
    exact = softmax_attention(q, k, v)
    errors = [float((linear_attention(q, k, v, TaylorFeatureMap(16, order)) - exact).norm()) for order in (1, 3, 5)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3 * float(exact.norm())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda q, k, v: (q, k[..., :3], v), "k: last dimension"),
        (lambda q, k, v: (q, k, v[..., :5, :]), "v: length"),
        (lambda q, k, v: (q, k.float(), v), "dtype"),
        (lambda q, k, v: (q, k[:1], v[:1]), "leading"),
        (lambda q, k, v: (q[0, 0, 0], k, v), "q: expected shape"),
        (lambda q, k, v: (q.long(), k, v), "floating-point"),
    ],
    ids=["k-dim", "v-length", "dtype", "batch", "rank", "integer"],
)
def test_bad_inputs_name_the_argument(make, match):
    q, k, v = (t.detach() for t in _inputs(2, 8, 2, 4))
    with pytest.raises(ValueError, match=match):
        linear_attention(*make(q, k, v), TaylorFeatureMap(4, 3))


def test_bad_options_name_the_argument():
    q, k, v = (t.detach() for t in _inputs(2, 8, 2, 4))
    fm = TaylorFeatureMap(4, 3)
    with pytest.raises(ValueError, match="feature_map: built for dim=5"):
        linear_attention(q, k, v, TaylorFeatureMap(5, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attention(q, k, v, fm, causal=True, chunk_size=0)
    with pytest.raises(ValueError, match="causal"):
        linear_attention(q, k[..., :5, :], v[..., :5, :], fm, causal=True)
    with pytest.raises(ValueError, match="key_padding_mask"):
        linear_attention(q, k, v, fm, key_padding_mask=torch.zeros(2, 7, dtype=torch.bool))


def test_too_long_is_refused_before_allocating():
    # 10^10 tokens of a zero-stride tensor cost nothing; the outputs alone would need terabytes.
    q = torch.zeros(1, 1, 1, 16).expand(1, 1, 10**10, 16)
    for causal in (False, True):
        with pytest.raises(ValueError, match=r"feature_map: M=153 .* GiB"):
            linear_attention(q, q, q, TaylorFeatureMap(16, 3), causal=causal)


def test_too_many_features_is_refused_before_allocating():
    # D = 64, K = 5: M = 814,385 features per token; a block for 4096 heads would need ~10^12 bytes
    fm = TaylorFeatureMap(64, 5)
    q = torch.zeros(1, 1, 1, 64).expand(64, 64, 256, 64)
    with pytest.raises(ValueError, match=r"feature_map: M=814,385 features per token"):
        linear_attention(q, q, q, fm, causal=True)


def test_memory_check_uses_available_memory(monkeypatch):
    monkeypatch.setattr(linear_module, "available_memory", lambda device: 1000)
    q = torch.zeros(1, 1, 1, 4).expand(1, 1, 10**7, 4)  # needs ~2 GiB: fits here, not in 1000 bytes
    with pytest.raises(ValueError, match="feature_map"):
        linear_attention(q, q, q, TaylorFeatureMap(4, 3))


def test_wrong_types_devices_and_states_are_named():
    q = torch.randn(1, 2, 4, 3)
    fm = TaylorFeatureMap(3, 3)
    with pytest.raises(TypeError, match="k: expected a torch.Tensor"):
        linear_attention(q, q.numpy(), q, fm)
    with pytest.raises(ValueError, match="must be on one device"):
        linear_attention(q, q.to("meta"), q, fm)
    with pytest.raises(ValueError, match="num_features"):
        TaylorState.zeros(lambda x: x, (1, 2), 3)
    with pytest.raises(ValueError, match="q_t: expected a floating-point"):
        linear_attention_step(q[..., 0, :].long(), q[..., 0, :], q[..., 0, :], None, fm)
    with pytest.raises(ValueError, match="must share a dtype"):
        linear_attention_step(q[..., 0, :], q[..., 0, :], q[..., 0, :].double(), None, fm)


def test_available_memory_reads_the_system(monkeypatch):
    assert linear_module.available_memory(torch.device("cpu")) > 0
    assert linear_module.available_memory(torch.device("meta")) is None

    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(linear_module, "open", no_proc, raising=False)
    assert linear_module.available_memory(torch.device("cpu")) > 0  # from sysconf


def test_step_bad_inputs():
    fm = TaylorFeatureMap(4, 3)
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="k_t"):
        linear_attention_step(q, torch.randn(2, 3, 5), torch.randn(2, 3, 4), None, fm)
    with pytest.raises(ValueError, match="v_t"):
        linear_attention_step(q, q, torch.randn(2, 4, 4), None, fm)
    _, state = linear_attention_step(q, q, torch.randn(2, 3, 4), None, fm)
    with pytest.raises(ValueError, match="state"):
        linear_attention_step(q, q, torch.randn(2, 3, 6), state, fm)
