"""The numerical settlement of M(D, K) and the seeds' formulas."""

import math

import pytest
import torch

from dllab.attention import TaylorFeatureMap, feature_dim
from dllab.attention.theory import (
    SEED_FORMULAS,
    SEED_K3_VALUES,
    SquaresOnlyFeatureMap,
    approximation_errors,
    feature_dim_rows,
    gram_rank,
    squares_only_errors,
    truncated_series_minimum,
)


@pytest.mark.parametrize("dim, order", [(2, 2), (2, 5), (3, 3), (4, 4), (8, 3), (16, 3)], ids=lambda x: str(x))
def test_gram_rank_equals_the_compact_feature_count(dim, order):
    assert gram_rank(dim, order) == feature_dim(dim, order)


def test_seed_formulas_against_m():
    by_seed = {f.seed: f for f in SEED_FORMULAS}
    for d in (2, 4, 8, 16, 64):
        m = feature_dim(d, 3)
        assert SEED_K3_VALUES["001"](d) == m  # (D^2 + 3D + 2)/2 is right
        assert SEED_K3_VALUES["000"](d) == SEED_K3_VALUES["003"](d) == 2 * d + 1 < m  # squares only
        assert SEED_K3_VALUES["002"](d) == 1 + d + d * (d + 1) > m  # miscounted cross terms
        for k in (2, 3, 4, 5):
            assert by_seed["002"].general(d, k) == feature_dim(d, k)  # their general formula is right
            assert by_seed["001"].general(d, k) != feature_dim(d, k)  # the sum to K with K in the summand


def test_feature_dim_rows_table():
    rows = feature_dim_rows(dims=(2, 4), orders=(2, 3), rank_limit=50)
    assert [(r["D"], r["K"], r["M"], r["gram_rank"], r["outer"]) for r in rows] == [
        (2, 2, 3, 3, 3),
        (2, 3, 6, 6, 7),
        (4, 2, 5, 5, 5),
        (4, 3, 15, 15, 21),
    ]


def test_squares_only_map_drops_exactly_the_cross_terms():
    torch.manual_seed(0)
    q, k = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    sq, exact = SquaresOnlyFeatureMap(6, scale=1.0), TaylorFeatureMap(6, 3, scale=1.0)
    missing = (exact(q) * exact(k)).sum(-1) - (sq(q) * sq(k)).sum(-1)
    cross = sum(q[:, i] * q[:, j] * k[:, i] * k[:, j] for i in range(6) for j in range(i + 1, 6))
    torch.testing.assert_close(missing, cross)
    rows = squares_only_errors(dims=(4, 16), length=32)
    assert all(r["kernel_rel_error"] > 0.05 and r["quadratic_part_lost"] > 0.3 for r in rows)


def test_series_minimum_by_parity():
    assert truncated_series_minimum(3) == pytest.approx(0.5, abs=1e-6)
    assert truncated_series_minimum(1) == 1.0 and truncated_series_minimum(5) > 0.27
    assert truncated_series_minimum(2) == truncated_series_minimum(4) == -math.inf


def test_approximation_error_falls_with_k_for_small_scores():
    rows = approximation_errors(orders=(1, 3, 5), spreads=(0.25,), length=32, heads=1, dim=8)
    errors = [r["rel_error"] for r in sorted(rows, key=lambda r: r["K"])]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2
    assert all(r["bad_normaliser_rows"] == 0 for r in rows)
