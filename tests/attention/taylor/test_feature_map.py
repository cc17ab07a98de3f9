"""TaylorFeatureMap: phi(q)^T phi(k) equals the truncated series exactly; M(D, K); scaling; bad input."""

import itertools
import math

import pytest
import torch

from dllab.attention import TaylorFeatureMap, feature_dim, outer_feature_dim


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("dim", [1, 2, 5, 9, 16], ids=lambda d: f"D{d}")
@pytest.mark.parametrize("form", ["compact", "outer"])
def test_dot_product_is_the_truncated_series(order, dim, form):
    if form == "outer" and dim ** (order - 1) > 5000:
        pytest.skip("outer form too large to be worth testing here")
    g = torch.Generator().manual_seed(dim * 10 + order)
    q = torch.randn(50, dim, generator=g, dtype=torch.float64)
    k = torch.randn(50, dim, generator=g, dtype=torch.float64)
    fm = TaylorFeatureMap(dim, order, scale=1.0 / dim, form=form)
    t = (q * k).sum(-1) / dim
    expected = sum(t**n / math.factorial(n) for n in range(order))
    phi_q, phi_k = fm(q), fm(k)
    assert phi_q.shape == (50, fm.num_features)
    torch.testing.assert_close((phi_q * phi_k).sum(-1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dim", [2, 4, 8, 16, 64])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_feature_dim_formulas(dim, order):
    m = feature_dim(dim, order)
    assert m == math.comb(dim + order - 1, order - 1)  # hockey-stick identity
    if m < 100_000:
        assert m == sum(1 for n in range(order) for _ in itertools.combinations_with_replacement(range(dim), n))
    assert outer_feature_dim(dim, order) == sum(dim**n for n in range(order))


def test_homework_case_d16_k3():
    fm = TaylorFeatureMap(16, 3)
    assert fm.num_features == feature_dim(16, 3) == 1 + 16 + 16 * 17 // 2 == 153
    assert TaylorFeatureMap(16, 3, form="outer").num_features == 1 + 16 + 256


def test_compact_degree2_block_is_the_weighted_upper_triangle():
    x = torch.arange(1.0, 4.0, dtype=torch.float64)  # D = 3
    phi = TaylorFeatureMap(3, 3, scale=1.0)(x)
    r = 1 / math.sqrt(2)
    # x_i x_j for i <= j, grouped by j (colexicographic order), 1/sqrt(2) on the squares
    upper = [x[0] ** 2 * r, x[0] * x[1], x[1] ** 2 * r, x[0] * x[2], x[1] * x[2], x[2] ** 2 * r]
    torch.testing.assert_close(phi, torch.cat([torch.ones(1, dtype=torch.float64), x, torch.stack(upper)]))


@pytest.mark.parametrize("dim", [2, 4, 8, 16])
def test_halving_order_lists_every_pair_once(dim):
    fm = TaylorFeatureMap(dim, 3, scale=1.0)
    monomials = fm.monomials()
    assert len(monomials) == fm.num_features == feature_dim(dim, 3)
    pairs = [m for m in monomials if len(m) == 2]
    assert sorted(pairs) == [(i, j) for i in range(dim) for j in range(i, dim)]
    # the features are the weighted products the monomials name, in that order
    x = torch.randn(dim, dtype=torch.float64)
    bare = torch.stack([torch.prod(x[list(m)]) if m else torch.ones((), dtype=torch.float64) for m in monomials])
    torch.testing.assert_close(fm(x), bare * fm.feature_weights(x))


def test_halving_order_for_d4():
    x = torch.arange(1.0, 5.0, dtype=torch.float64)
    phi = TaylorFeatureMap(4, 3, scale=1.0)(x)
    r = 1 / math.sqrt(2)
    # squares, then x_{0,1} x_{2,3} (the two halves), then x_0 x_1 and x_2 x_3 (the quarters)
    block = [1 * r, 4 * r, 9 * r, 16 * r, 1 * 3, 1 * 4, 2 * 3, 2 * 4, 1 * 2, 3 * 4]
    torch.testing.assert_close(phi[5:], torch.tensor(block, dtype=torch.float64))


def test_default_scale_matches_softmax_convention():
    torch.manual_seed(0)
    q, k = torch.randn(8, 16, dtype=torch.float64) * 0.1, torch.randn(8, 16, dtype=torch.float64) * 0.1
    fm = TaylorFeatureMap(16, 6)
    assert fm.scale == pytest.approx(0.25)
    torch.testing.assert_close((fm(q) * fm(k)).sum(-1), torch.exp((q * k).sum(-1) / 4), rtol=1e-9, atol=1e-9)
    fm1 = TaylorFeatureMap(16, 6, scale=1.0)  # the homework's exp(q^T k)
    torch.testing.assert_close((fm1(q) * fm1(k)).sum(-1), torch.exp((q * k).sum(-1)), rtol=1e-7, atol=1e-7)


def test_transposed_layout_and_batching():
    torch.manual_seed(0)
    fm = TaylorFeatureMap(5, 4)
    x = torch.randn(2, 3, 7, 5)
    torch.testing.assert_close(fm.transposed(x.transpose(-1, -2)).transpose(-1, -2), fm(x))
    torch.testing.assert_close(fm(x[1, 2, 3]), fm(x)[1, 2, 3])


@pytest.mark.parametrize("order", [1, 2, 3, 4, 6], ids=lambda k: f"K{k}")
def test_series_slope_is_the_derivative(order):
    fm = TaylorFeatureMap(4, order)  # scale 1/2
    t = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad((fm.series(t) + 0 * t).sum(), t)  # K = 1: a constant series
    torch.testing.assert_close(fm.series_slope(t.detach()), slope)


@pytest.mark.parametrize("dim, order", [(3, 3), (5, 4), (8, 3), (2, 5)], ids=["D3-K3", "D5-K4", "D8-K3", "D2-K5"])
def test_features_are_the_weighted_monomials_in_order(dim, order):
    """Both constructions (colexicographic degrees, and the halving one for K = 3 with D a power of two)
    give feature m = weights[m] * prod(x[monomials()[m]])."""
    fm = TaylorFeatureMap(dim, order, scale=1.0)
    x = torch.randn(7, dim, dtype=torch.float64)
    bare = torch.stack([x[:, list(m)].prod(-1) for m in fm.monomials()], dim=-1)
    torch.testing.assert_close(fm(x), bare * fm.feature_weights(x))


def test_describes_itself_and_its_monomials_only_when_compact():
    assert repr(TaylorFeatureMap(16, 3)) == "TaylorFeatureMap(dim=16, order=3, scale=0.25, form=compact, M=153)"
    with pytest.raises(ValueError, match="form: monomials"):
        TaylorFeatureMap(3, 3, form="outer").monomials()


def test_map_follows_its_device_and_dtype():
    fm = TaylorFeatureMap(3, 4).to(torch.float32)  # the degree tables are buffers
    x = torch.randn(2, 3, dtype=torch.float64)
    assert fm(x).dtype == torch.float64 and fm(x.float()).dtype == torch.float32
    torch.testing.assert_close(fm(x.float()), fm(x).float())


def test_series_sign_depends_on_parity_of_k():
    t = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    for order in (1, 3, 5):  # even degree: positive everywhere
        assert TaylorFeatureMap(1, order, scale=1.0).series(t).min() > 0
    assert TaylorFeatureMap(1, 3, scale=1.0).series(torch.tensor(-1.0)) == 0.5  # the minimum of 1 + t + t^2/2
    for order in (2, 4, 6):  # odd degree: a real root, negative below it
        assert TaylorFeatureMap(1, order, scale=1.0).series(t).min() < 0


@pytest.mark.parametrize("form", ["compact", "outer"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5], ids=lambda k: f"K{k}")
@pytest.mark.parametrize("dim", [3, 4], ids=lambda d: f"D{d}")  # D = 4, K = 3: the halving construction
def test_gradcheck(form, order, dim):
    fm = TaylorFeatureMap(dim, order, form=form)
    x = torch.randn(2, 5, dim, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fm, (x,))


def test_weights_are_the_multinomial_coefficients():
    # phi_a(x) = x^a / sqrt(a!): at x = 1 every feature is 1/sqrt(a!); their squares sum to sum_n D^n / n!
    for dim, order in [(3, 5), (16, 3), (5, 4)]:
        phi = TaylorFeatureMap(dim, order, scale=1.0)(torch.ones(dim, dtype=torch.float64))
        expected = sum(dim**n / math.factorial(n) for n in range(order))
        assert float((phi**2).sum()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dim=4, order=0), "order"),
        (dict(dim=4, order=-2), "order"),
        (dict(dim=4, order=2.5), "order"),
        (dict(dim=4, order=True), "order"),
        (dict(dim=0, order=3), "dim"),
        (dict(dim=4, order=3, form="dense"), "form"),
        (dict(dim=4, order=3, scale=-1.0), "scale"),
        (dict(dim=4, order=3, scale=float("nan")), "scale"),
        (dict(dim=64, order=6), "order"),  # M = C(69, 5) = 11.2 million features: refused before any table
        (dict(dim=16, order=5, form="outer", max_features=1000), "max_features"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TaylorFeatureMap(**kwargs)


def test_bad_input_names_x():
    fm = TaylorFeatureMap(4, 3)
    with pytest.raises(ValueError, match="x: expected feature dimension 4"):
        fm(torch.randn(3, 5))
    with pytest.raises(ValueError, match="floating-point"):
        fm(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="order"):
        feature_dim(4, 0)
