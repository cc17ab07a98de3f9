"""How long the Hopfield plan tasks will take on this machine, from short real runs of the same code.

Each estimate runs the smallest part of its experiment that still has the experiment's structure, here, on
the task's threads, and scales what it timed to the configured sizes. No timing constants: a faster machine,
another BLAS or a slower code path (float32 denormals at some beta, say) shows up in the measurement.

- theory: `draws` random problems, each about as costly as the next. One untimed warm-up draw first (the
  first torch.func call builds machinery that a plan worker has preloaded), then a few draws timed; the
  estimate is draws x seconds per draw.
- retrieval: its cost is the (B x N x D) products, B = min(queries, N): a CCCP step is two, the last energy
  and the scores three more per (N, beta) row. The configured rows with N <= `reference` run as configured;
  the reference N runs too. A larger row costs per product what the reference row at the same beta did,
  times N B / (N_ref B_ref). Its steps are not measured (a run to convergence at that N costs the real run):
  they usually grow with N (more patterns lie near each query; at beta = 0.3 the homework's defaults take 17
  steps at N = 1,000 and 48 at 60,000), between the steps at the reference and max_steps, and the estimate
  takes the geometric mean of those two bounds (off by at most their square-root ratio either way).
- capacity: every search runs as configured (every query, every step) up to N = `reference` (the image pool
  and the random bank cut there). A search still passing there is assumed to go on to its largest N (as the
  28 x 28 images and D = 32 do), each further point costing what its point at the reference cost, times
  N B over the reference's (the steps to converge taken as at the reference); one that stopped below is
  exact. Pooling the images, linear in the pool's size, is scaled from the cut pool to the whole one.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dllab.hopfield.config import CapacityConfig, RetrievalConfig

RETRIEVAL_REFERENCE = 1000  # N measured to convergence; larger N are scaled from it
CAPACITY_REFERENCE = 2048  # searches run up to this N (a power of 2: a point of every search's grid)
THEORY_PROBE = 10  # draws timed after the warm-up


def estimate_theory(draws: int, probe: int = THEORY_PROBE) -> float:
    """Seconds of `theory_checks(draws)` plus writing its table, from `probe` draws timed after a warm-up."""
    from dllab.hopfield.theory import save_checks, theory_checks

    theory_checks(1, 0)  # warm-up, untimed
    probe = max(1, min(probe, draws))
    with tempfile.TemporaryDirectory(prefix="dllab-calibrate-") as tmp:
        began = time.perf_counter()
        save_checks(theory_checks(probe, 0), Path(tmp) / "theory.json", probe, 0)
        seconds = time.perf_counter() - began
    return seconds * draws / probe


def products(steps: float) -> float:
    """(B x N x D) products in one retrieval row of `steps` CCCP steps: two per step, one for the last
    energy, two for scoring the fixed points (the distances and the effective number of patterns)."""
    return 2 * steps + 3


def retrieval_calibration(cfg: RetrievalConfig, reference: int = RETRIEVAL_REFERENCE) -> RetrievalConfig:
    """The configured N up to `reference` (and `reference` itself when the config has larger N); the image
    grids at no more than `reference` patterns."""
    small = [n for n in cfg.n_patterns if n <= reference]
    if max(cfg.n_patterns) > reference:
        small.append(reference)
    return replace(cfg, n_patterns=tuple(sorted(set(small))), grid_patterns=min(cfg.grid_patterns, reference))


def scale_retrieval(cfg: RetrievalConfig, measured: dict, wall: float) -> float:
    """Seconds of `run_retrieval(cfg)` from `measured`, the results of `run_retrieval` on
    `retrieval_calibration(cfg)` (its rows: n_patterns, beta, steps, seconds), which took `wall` seconds."""
    rows = measured["rows"]
    fixed = wall - sum(r["seconds"] for r in rows)  # the patterns, the image grids, writing the results
    reference = max(r["n_patterns"] for r in rows)
    at_reference = {r["beta"]: r for r in rows if r["n_patterns"] == reference}
    total = fixed + sum(r["seconds"] for r in rows if r["n_patterns"] in cfg.n_patterns)
    for n in (n for n in cfg.n_patterns if n > reference):
        for beta in cfg.betas:
            ref = at_reference[beta]
            per_product = ref["seconds"] / (products(ref["steps"]) * reference * min(cfg.queries, reference))
            steps = math.sqrt(ref["steps"] * cfg.max_steps)
            total += per_product * products(steps) * n * min(cfg.queries, n)
    return total


def estimate_retrieval(cfg: RetrievalConfig, images, reference: int | None = None) -> float:
    """Seconds of `run_retrieval(cfg, out, images)`, images (P, 28, 28) already loaded; reference: the N
    run to convergence (default RETRIEVAL_REFERENCE; see the module docstring)."""
    from dllab.hopfield.experiment import run_retrieval

    small = retrieval_calibration(cfg, min(reference or RETRIEVAL_REFERENCE, len(images)))
    with tempfile.TemporaryDirectory(prefix="dllab-calibrate-") as tmp:
        began = time.perf_counter()
        measured = run_retrieval(small, Path(tmp) / "retrieval", images)
        wall = time.perf_counter() - began
    return scale_retrieval(cfg, measured, wall)


def scale_capacity(cfg: CapacityConfig, measured: dict, wall: float, pool: int, cut: int, pooling: float) -> float:
    """Seconds of `run_capacity(cfg)` on `pool` images from `measured`, the results of `run_capacity` with
    every search cut at N = `cut` (rows: family, capacity, capped, curve of n_patterns and seconds), which
    took `wall` seconds of which `pooling` went to pooling the cut pool's images."""
    from dllab.hopfield.experiment import search_grid

    total = wall + pooling * (pool / cut - 1)  # the whole pool is pooled, not the cut one
    for row in measured["rows"]:
        n_max = pool if row["family"] == "fashion-mnist" else cfg.max_random_patterns
        last = row["curve"][-1]
        if not row["capped"] or n_max <= last["n_patterns"]:
            continue  # the search stopped where the real one does
        per_pattern = last["seconds"] / (last["n_patterns"] * min(cfg.queries, last["n_patterns"]))
        total += sum(per_pattern * n * min(cfg.queries, n) for n in search_grid(n_max) if n > last["n_patterns"])
    return total


def estimate_capacity(cfg: CapacityConfig, images=None, reference: int | None = None) -> float:
    """Seconds of `run_capacity(cfg, out, images)`, images (P, 28, 28) already loaded (unused, may be None,
    when cfg.sides is empty); reference: the N where the searches are cut (default CAPACITY_REFERENCE, a
    power of 2; see the module docstring)."""
    from dllab.hopfield.experiment import run_capacity, to_patterns

    reference = reference or CAPACITY_REFERENCE
    pool = len(images) if cfg.sides else 0
    cut = min(reference, pool) if cfg.sides else reference
    small = replace(cfg, max_random_patterns=min(cfg.max_random_patterns, reference))
    cut_images = images[:cut] if cfg.sides else None
    with tempfile.TemporaryDirectory(prefix="dllab-calibrate-") as tmp:
        began = time.perf_counter()
        measured = run_capacity(small, Path(tmp) / "capacity", cut_images)
        wall = time.perf_counter() - began
    began = time.perf_counter()
    for side in cfg.sides:
        to_patterns(cut_images, "standardize", side)
    pooling = time.perf_counter() - began
    return scale_capacity(cfg, measured, wall, pool, cut, pooling)
