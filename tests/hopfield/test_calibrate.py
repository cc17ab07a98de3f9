"""The Hopfield plan estimates: the scaling arithmetic on made-up measurements (exact), and the calibration
runs end to end on tiny generated images (quick sizes must estimate less than the homework's)."""

import math
from dataclasses import replace

import pytest
import torch

from dllab.hopfield import calibrate, report
from dllab.hopfield.calibrate import products, retrieval_calibration, scale_capacity, scale_retrieval
from dllab.hopfield.config import CapacityConfig, RetrievalConfig


def _rows(ns, betas, steps, seconds_per_product):
    """Made-up retrieval rows: `steps[beta]` steps, each product taking seconds_per_product * N * B."""
    return [{"n_patterns": n, "beta": b, "steps": steps[b], "seconds": seconds_per_product * products(steps[b]) * n
             * min(10, n)} for n in ns for b in betas]  # fmt: skip


def test_retrieval_calibration_runs_the_small_n_and_the_reference():
    assert retrieval_calibration(RetrievalConfig(), 1000).n_patterns == (100, 1000)
    quick = RetrievalConfig(n_patterns=(100, 500, 2000), grid_patterns=5000)
    assert retrieval_calibration(quick, 1000).n_patterns == (100, 500, 1000)
    assert retrieval_calibration(quick, 1000).grid_patterns == 1000
    assert retrieval_calibration(RetrievalConfig(n_patterns=(10, 20)), 1000).n_patterns == (10, 20)


def test_retrieval_rows_at_or_below_the_reference_are_counted_as_measured():
    cfg = RetrievalConfig(n_patterns=(100, 1000), betas=(0.1, 1.0), queries=10, max_steps=50)
    measured = {"rows": _rows((100, 1000), cfg.betas, {0.1: 7, 1.0: 2}, 1e-6)}
    wall = 2.5 + sum(r["seconds"] for r in measured["rows"])
    assert scale_retrieval(cfg, measured, wall) == pytest.approx(wall)


def test_retrieval_scales_larger_n_by_products_and_brackets_the_steps():
    cfg = RetrievalConfig(n_patterns=(100, 4000), betas=(0.1, 1.0), queries=10, max_steps=64)
    steps = {0.1: 4, 1.0: 64}
    measured = {"rows": _rows((100, 1000), cfg.betas, steps, 1e-6)}  # 1000: the reference, not configured
    fixed = 0.5
    wall = fixed + sum(r["seconds"] for r in measured["rows"])
    at_100 = sum(r["seconds"] for r in measured["rows"] if r["n_patterns"] == 100)
    larger = scale_retrieval(cfg, measured, wall) - fixed - at_100
    # beta 0.1 took 4 steps at the reference: between 4 and 64 at N = 4000, the geometric mean 16; beta 1.0
    # hit max_steps, which stays the bound
    assert larger == pytest.approx(1e-6 * 4000 * 10 * (products(16) + products(64)))
    lower = 1e-6 * 4000 * 10 * (products(4) + products(64))
    upper = 1e-6 * 4000 * 10 * 2 * products(64)
    assert lower < larger < upper


def test_retrieval_estimate_grows_with_n_queries_and_max_steps():
    base = RetrievalConfig(n_patterns=(100, 4000), betas=(0.1,), queries=10, max_steps=64)
    measured = {"rows": _rows((100, 1000), base.betas, {0.1: 4}, 1e-6)}
    wall = sum(r["seconds"] for r in measured["rows"])

    def estimate(**changes):
        return scale_retrieval(replace(base, **changes), measured, wall)

    assert estimate(n_patterns=(100, 8000)) > estimate() > estimate(n_patterns=(100, 1000))
    assert estimate(n_patterns=(100, 4000, 8000)) > estimate(n_patterns=(100, 8000))
    assert estimate(max_steps=100) > estimate()


def _capacity_row(family, capped, curve):
    return {"family": family, "network": "modern", "beta": 8.0, "capped": capped,
            "capacity": curve[-1][0] if capped else curve[-2][0],
            "curve": [{"n_patterns": n, "accuracy": 1.0, "seconds": s} for n, s in curve]}  # fmt: skip


def test_capacity_stopped_searches_are_exact_and_capped_ones_go_on_to_their_largest_n():
    cfg = CapacityConfig(queries=100, max_random_patterns=8192)
    stopped = _capacity_row("random +-1", False, [(2, 0.001), (4, 0.002)])
    wall = 1.0
    assert scale_capacity(cfg, {"rows": [stopped]}, wall, pool=0, cut=2048, pooling=0.0) == pytest.approx(wall)
    capped = _capacity_row("random +-1", True, [(1024, 0.01), (2048, 0.02)])
    # goes on to 4096 and 8192, each costing 0.02 s per 2048 patterns (B = 100 throughout)
    got = scale_capacity(cfg, {"rows": [stopped, capped]}, wall, pool=0, cut=2048, pooling=0.0)
    assert got == pytest.approx(wall + 0.02 * (4096 + 8192) / 2048)
    images = _capacity_row("fashion-mnist", True, [(2048, 0.05)])
    got = scale_capacity(cfg, {"rows": [images]}, wall, pool=60000, cut=2048, pooling=0.1)
    rest = sum(n for n in (4096, 8192, 16384, 32768, 60000))
    assert got == pytest.approx(wall + 0.1 * (60000 / 2048 - 1) + 0.05 * rest / 2048)


def test_capacity_scales_by_the_queries_below_the_reference():
    # a cut below the query count: the batch grows with N as well (B = min(queries, N))
    cfg = CapacityConfig(queries=100, max_random_patterns=128)
    capped = _capacity_row("random +-1", True, [(32, 0.032)])
    got = scale_capacity(cfg, {"rows": [capped]}, 0.0, pool=0, cut=32, pooling=0.0)
    per = 0.032 / (32 * 32)
    assert got == pytest.approx(per * (64 * 64 + 128 * 100))


def test_theory_estimate_is_per_draw():
    one, many = calibrate.estimate_theory(4, probe=2), calibrate.estimate_theory(400, probe=2)
    assert 0 < one < many and math.isfinite(many)


def test_plan_estimates_quick_below_full(monkeypatch):
    # Tiny images and small references keep the calibrations short; the homework's sizes still extrapolate.
    monkeypatch.setattr(calibrate, "RETRIEVAL_REFERENCE", 60)
    monkeypatch.setattr(calibrate, "CAPACITY_REFERENCE", 64)
    monkeypatch.setattr("dllab.hopfield.experiment.image_pool", lambda: torch.rand(300, 28, 28))
    before = torch.get_num_threads()
    quick = {t.name: t.seconds for t in report.experiments("runs", quick=True)}
    full = {t.name: t.seconds for t in report.experiments("runs", quick=False)}
    assert torch.get_num_threads() == before
    assert set(quick) == set(full) == {"hopfield/theory", "hopfield/retrieval", "hopfield/capacity"}
    assert all(0 < quick[name] < full[name] and math.isfinite(full[name]) for name in full)
    # up to N = 60,000 x 200 queries against 2,000 x 64: the full retrieval far above the quick one
    assert full["hopfield/retrieval"] > 10 * quick["hopfield/retrieval"]
