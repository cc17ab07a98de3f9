"""MultiHeadAttention: both kinds, self and cross, identity projections, padding, token-by-token decoding."""

import pytest
import torch

from dllab.attention import MultiHeadAttention, linear_attention, softmax_attention
from dllab.attention.taylor.feature_map import TaylorFeatureMap


@pytest.mark.parametrize("kind", ["softmax", "taylor"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_backward_shapes(kind, causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, kind=kind, causal=causal)
    x = torch.randn(2, 11, 32, requires_grad=True)
    y = mha(x)
    assert y.shape == (2, 11, 32)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in mha.parameters())


def test_no_projections_is_plain_attention():
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 5, 12), torch.randn(2, 9, 12)
    mha = MultiHeadAttention(12, 1, projections=False)
    assert list(mha.parameters()) == []
    torch.testing.assert_close(mha(x, ctx), softmax_attention(x, ctx, ctx))
    # several heads: each head attends with its own slice of the channels
    mha3 = MultiHeadAttention(12, 3, projections=False)
    heads = [
        softmax_attention(x[..., h * 4 : (h + 1) * 4], ctx[..., h * 4 : (h + 1) * 4], ctx[..., h * 4 : (h + 1) * 4])
        for h in range(3)
    ]
    torch.testing.assert_close(mha3(x, ctx), torch.cat(heads, dim=-1))


@pytest.mark.parametrize("kind", ["softmax", "taylor"])
def test_identity_init_equals_no_projections(kind):
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    a = MultiHeadAttention(16, 2, kind=kind, identity_init=True)
    b = MultiHeadAttention(16, 2, kind=kind, projections=False)
    torch.testing.assert_close(a(x, ctx), b(x, ctx))
    assert sum(p.numel() for p in a.parameters()) == 4 * (16 * 16 + 16)


def test_taylor_head_matches_linear_attention():
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    mha = MultiHeadAttention(16, 1, kind="taylor", projections=False, order=4).double()
    expected = linear_attention(x[:, None], ctx[:, None], ctx[:, None], TaylorFeatureMap(16, 4))[:, 0]
    torch.testing.assert_close(mha(x, ctx), expected)


@pytest.mark.parametrize("kind", ["softmax", "taylor"])
def test_key_padding_mask_ignores_padding(kind):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, kind=kind)
    x, ctx = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    mask = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    out = mha(x, ctx, key_padding_mask=mask)
    torch.testing.assert_close(out[1:], mha(x[1:], ctx[1:, :4]), rtol=1e-5, atol=1e-5)
    garbage = ctx.clone()
    garbage[1, 4:] = 1e3
    torch.testing.assert_close(mha(x, garbage, key_padding_mask=mask), out)


@pytest.mark.parametrize("kind", ["softmax", "taylor"])
def test_step_matches_causal_forward(kind):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, kind=kind, causal=True)
    x = torch.randn(3, 9, 16)
    full = mha(x)
    cache, outs = None, []
    for t in range(x.shape[1]):
        y, cache = mha.step(x[:, t], cache)
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dim=10, num_heads=3), "num_heads"),
        (dict(dim=8, num_heads=2, kind="linear"), "kind"),
        (dict(dim=8, num_heads=2, kind="taylor", order=0), "order"),
        (dict(dim=8, num_heads=2, projections=False, identity_init=True), "identity_init"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_bad_input_shape_names_argument():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="x"):
        mha(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="context"):
        mha(torch.randn(2, 3, 8), torch.randn(3, 3, 8))


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_attention_under_cpu_autocast_matches_float32(causal):
    """Under bfloat16 autocast the CPU path (bf16 matmuls, float32 softmax) stays within bf16 rounding,
    padding keys get no weight, and gradients reach q, k and v."""
    from dllab.attention import naive_softmax_attention, softmax_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, requires_grad=True) for _ in range(3))
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    want = naive_softmax_attention(q, k, v, causal=causal, key_padding_mask=pad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = softmax_attention(q, k, v, causal=causal, key_padding_mask=pad)
    assert (got.float() - want).abs().max() < 0.05
    moved = v.detach().clone()
    moved[1, :, 5:] += 100.0  # values behind padding must not leak into any output
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = softmax_attention(q, k, moved, causal=causal, key_padding_mask=pad)
    assert torch.equal(again, got)
    got.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))
