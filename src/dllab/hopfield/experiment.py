"""Retrieval and storage-capacity experiments with modern Hopfield networks on Fashion-MNIST.

Patterns. A Fashion-MNIST image (train + validation splits: a pool of 60,000) is flattened to D = 784 pixels
(or average-pooled to side x side first, D = side^2, for the capacity sweep) and, by default, standardised
per image: minus its own mean, divided by its own standard deviation, so every pattern has zero mean, unit
pixel variance and norm sqrt(D). (Raw [0, 1] pixels make bright images win every dot product.)

Queries. A stored pattern, corrupted: "mask" hides the bottom `mask_fraction` of the image's rows (the hidden
pixels are set to 0, the image mean after standardising); "noise" adds N(0, noise_std^2) to every pixel.

Retrieved. The fixed point q* of the CCCP iteration retrieves the stored pattern x when
||q* - x|| <= tolerance * ||x|| (default 0.1). A metastable state (an average of several patterns) fails this
even when x is its largest component; `nearest_acc` (x is the stored pattern nearest to q*) is reported too.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from dllab.config import to_dict
from dllab.errors import UserError
from dllab.hopfield.config import QUICK_CAPACITY, QUICK_RETRIEVAL, CapacityConfig, Normalise, RetrievalConfig
from dllab.hopfield.retrieval import retrieve
from dllab.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)
__all__ = ["QUICK_CAPACITY", "QUICK_RETRIEVAL", "CapacityConfig", "RetrievalConfig", "run_capacity", "run_retrieval"]

def validate_retrieval(cfg: RetrievalConfig, pool: int | None = None) -> None:
    """UserError naming the config key for values the experiment cannot use (N is checked once pool is known)."""
    for n in (*cfg.n_patterns, cfg.grid_patterns):
        if not 1 <= n <= (pool or n):
            raise UserError(f"--n_patterns / --grid_patterns: {n} is outside 1..{pool or 'the pool size'}")
    for b in (*cfg.betas, *cfg.grid_betas):
        if not (b > 0 and math.isfinite(b)):
            raise UserError(f"--betas / --grid_betas: beta must be > 0, got {b}")
    if not cfg.betas or not cfg.n_patterns:
        raise UserError("--betas and --n_patterns: give at least one value each")
    if not 0 < cfg.mask_fraction < 1:
        raise UserError(f"--mask_fraction: must be in (0, 1), got {cfg.mask_fraction}")
    if cfg.noise_std < 0:
        raise UserError(f"--noise_std: must be >= 0, got {cfg.noise_std}")
    for key in ("queries", "max_steps", "grid_queries"):
        if getattr(cfg, key) < 1:
            raise UserError(f"--{key}: must be >= 1, got {getattr(cfg, key)}")


# ---------------------------------------------------------------------------------------------------- data


def image_pool(root: str | Path | None = None) -> Tensor:
    """Fashion-MNIST train + validation images, (60000, 28, 28) float in [0, 1]."""
    from dllab.data.fashion_mnist import load_fashion_mnist

    data = load_fashion_mnist(root)
    return torch.cat([data.train.tensors[0], data.val.tensors[0]])[:, 0]


def to_patterns(images: Tensor, normalise: Normalise = "standardize", side: int | None = None) -> Tensor:
    """(P, H, W) images -> (P, D) patterns, D = H W (or side^2 after average pooling), normalised."""
    if side is not None and side != images.shape[-1]:
        images = F.adaptive_avg_pool2d(images[:, None], side)[:, 0]
    x = images.flatten(1).float()  # (P, D)
    if normalise == "standardize":
        x = x - x.mean(1, keepdim=True)
        x = x / x.std(1, unbiased=False, keepdim=True).clamp_min(1e-6)
    elif normalise == "center":
        x = x - x.mean(0, keepdim=True)
    return x


def corrupt(x: Tensor, cfg: RetrievalConfig, gen: torch.Generator, height: int = 28) -> Tensor:
    """Queries from patterns x (B, D): bottom rows masked to 0, or Gaussian noise added."""
    if cfg.corruption == "mask":
        q = x.clone().view(x.shape[0], height, -1)  # (B, H, W)
        q[:, height - round(cfg.mask_fraction * height) :] = 0.0
        return q.view_as(x)
    return x + cfg.noise_std * torch.randn(x.shape, generator=gen)


def retrieval_scores(state: Tensor, X: Tensor, target: Tensor, tolerance: float) -> dict[str, Tensor]:
    """Per query: retrieved (bool), relative error, and whether the target is the nearest stored pattern."""
    x = X[target]  # (B, D)
    rel = torch.linalg.vector_norm(state - x, dim=1) / torch.linalg.vector_norm(x, dim=1)
    dist = torch.cdist(state, X)  # (B, N)
    nearest = dist.argmin(1) == target
    return {"retrieved": rel <= tolerance, "rel_error": rel, "nearest": nearest}


def effective_patterns(state: Tensor, X: Tensor, beta: float) -> Tensor:
    """exp(entropy of softmax(beta X q*)): ~1 for a retrieved pattern, k for an average of k. (B,)"""
    logp = torch.log_softmax(beta * state @ X.T, dim=1)
    return torch.exp(-(logp.exp() * logp).sum(1))


# --------------------------------------------------------------------------------------------- retrieval


def run_retrieval(cfg: RetrievalConfig, out: Path, images: Tensor | None = None) -> dict:
    """Accuracy against beta and N, image grids, energy traces; writes out/results.json and out/grids.npz."""
    validate_retrieval(cfg)
    images = image_pool() if images is None else images
    validate_retrieval(cfg, len(images))
    patterns = to_patterns(images, cfg.normalise)  # (P, 784)
    height = images.shape[1]
    gen = torch.Generator().manual_seed(cfg.seed)
    rows = []
    began = time.perf_counter()
    for n in cfg.n_patterns:
        X = patterns[:n]
        target = torch.randint(0, n, (min(cfg.queries, n),), generator=gen)
        q0 = corrupt(X[target], cfg, gen, height)
        for beta in cfg.betas:
            t = time.perf_counter()
            r = retrieve(q0, X, beta, cfg.max_steps, cfg.tol)
            s = retrieval_scores(r.state, X, target, cfg.tolerance)
            rows.append({
                "n_patterns": n, "beta": beta, "accuracy": s["retrieved"].float().mean().item(),
                "nearest_acc": s["nearest"].float().mean().item(), "rel_error": s["rel_error"].mean().item(),
                "effective_patterns": effective_patterns(r.state, X, beta).mean().item(),
                "steps": r.steps, "converged": r.converged, "seconds": time.perf_counter() - t,
                "energy_start": r.energies[0].mean().item(), "energy_end": r.energies[-1].mean().item(),
            })  # fmt: skip
            log.info("N=%d beta=%g: retrieved %.3f, nearest %.3f, %d steps", n, beta, rows[-1]["accuracy"],
                     rows[-1]["nearest_acc"], r.steps)  # fmt: skip

    # Image grids and energy traces at N = grid_patterns.
    X = patterns[: cfg.grid_patterns]
    target = torch.randperm(cfg.grid_patterns, generator=gen)[: cfg.grid_queries]
    q0 = corrupt(X[target], cfg, gen, height)
    grids = {"stored": X[target].view(-1, height, height), "query": q0.view(-1, height, height)}
    traces = []
    for beta in cfg.grid_betas:
        r = retrieve(q0, X, beta, cfg.max_steps, cfg.tol)
        traces.append({"beta": beta, "energy": r.energies.mean(1).tolist(), "steps": r.steps})
        grids[f"beta={beta:g}"] = r.state.view(-1, height, height)
        grids[f"ok beta={beta:g}"] = retrieval_scores(r.state, X, target, cfg.tolerance)["retrieved"]
    result = {
        "config": to_dict(cfg), "pattern_dim": patterns.shape[1], "pool": len(images), "rows": rows,
        "energy_traces": traces, "grid_patterns": cfg.grid_patterns, "seconds": time.perf_counter() - began,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    out = Path(out)
    atomic_write_bytes(out / "grids.npz", lambda fh: np.savez_compressed(fh, **{
        k: v.numpy() for k, v in grids.items()}))  # fmt: skip
    atomic_write_json(out / "results.json", result, strict=True)
    return result


# ---------------------------------------------------------------------------------------------- capacity


def modern_retrieved(X: Tensor, target: Tensor, q0: Tensor, beta: float, cfg: CapacityConfig) -> Tensor:
    r = retrieve(q0, X, beta, cfg.max_steps, 1e-4)
    return retrieval_scores(r.state, X, target, cfg.tolerance)["retrieved"]


def classical_retrieved(
    X: Tensor, target: Tensor, q0: Tensor, gen: torch.Generator, sweeps: int = 20
) -> Tensor:
    """The classical Hopfield net: Hebbian W = X^T X / D (zero diagonal), asynchronous sign updates from
    sign(q0); retrieved when the final binary state equals the +-1 pattern exactly."""
    d = X.shape[1]
    W = X.T @ X / d  # (D, D)
    W.fill_diagonal_(0)
    s = torch.sign(q0)
    s[s == 0] = 1
    for _ in range(sweeps):
        before = s.clone()
        for i in torch.randperm(d, generator=gen).tolist():
            h = s @ W[:, i]  # (B,)
            s[:, i] = torch.where(h >= 0, 1.0, -1.0)
        if torch.equal(s, before):
            break
    return (s == X[target]).all(1)


def search_grid(n_max: int) -> list[int]:
    """The N a capacity search tries, in order: 2, 4, 8, ... below n_max, then n_max."""
    return [2**k for k in range(1, max(1, n_max.bit_length())) if 2**k < n_max] + [n_max]


def capacity_search(
    family_patterns, d: int, n_max: int, cfg: CapacityConfig, gen: torch.Generator, beta: float | None
) -> dict:
    """Double N from 2 (then n_max) until accuracy < threshold; returns the largest passing N and the curve.

    beta: the modern network's inverse temperature; None -> the classical network.

    `capped` is True when even N = n_max passed: the capacity is then at least n_max, not measured.
    Each curve point has the accuracy at N and the seconds it took (what `dllab.hopfield.calibrate` scales)."""
    curve, capacity = [], 0
    for n in search_grid(n_max):
        began = time.perf_counter()
        X = family_patterns(n)  # (n, d)
        target = torch.randint(0, n, (min(cfg.queries, n),), generator=gen)
        q0 = X[target] + cfg.noise_std * torch.randn(len(target), d, generator=gen)
        if beta is None:
            ok = classical_retrieved(X, target, q0, gen)
        else:
            ok = modern_retrieved(X, target, q0, beta, cfg)
        acc = ok.float().mean().item()
        curve.append({"n_patterns": n, "accuracy": acc, "seconds": time.perf_counter() - began})
        if acc < cfg.threshold:
            break
        capacity = n
    return {"capacity": capacity, "capped": capacity == n_max, "curve": curve}


def run_capacity(cfg: CapacityConfig, out: Path, images: Tensor | None = None) -> dict:
    """Largest N retrieved at >= threshold against D: pooled images and random +-1 patterns (modern and
    classical), next to 0.14 D; writes out/results.json."""
    for key in ("queries", "max_steps", "max_random_patterns"):
        if not getattr(cfg, key) > 0:
            raise UserError(f"--{key}: must be > 0, got {getattr(cfg, key)}")
    if not cfg.betas or not all(b > 0 and math.isfinite(b) for b in cfg.betas):
        raise UserError(f"--betas: give one or more inverse temperatures > 0, got {cfg.betas}")
    if any(s < 1 or s > 28 for s in cfg.sides) or any(d < 1 for d in cfg.random_dims):
        raise UserError("--sides must lie in 1..28 and --random_dims must be >= 1")
    gen = torch.Generator().manual_seed(cfg.seed)
    began = time.perf_counter()
    rows = []
    if cfg.sides:
        images = image_pool() if images is None else images
        for side in cfg.sides:
            pool = to_patterns(images, "standardize", side)  # (P, side^2)
            for beta in cfg.betas:
                res = capacity_search(lambda n, pool=pool: pool[:n], side * side, len(pool), cfg, gen, beta)
                row = {"family": "fashion-mnist", "network": "modern", "beta": beta, "dim": side**2}
                rows.append(row | res)
                log.info("images %dx%d beta=%g: capacity %d", side, side, beta, res["capacity"])
    for d in cfg.random_dims:
        pgen = torch.Generator().manual_seed(cfg.seed + d)
        bank = torch.randint(0, 2, (cfg.max_random_patterns, d), generator=pgen).float() * 2 - 1

        def draw(n: int, bank: Tensor = bank) -> Tensor:
            return bank[:n]

        for beta in (*cfg.betas, None):
            res = capacity_search(draw, d, cfg.max_random_patterns, cfg, gen, beta)
            network = "classical" if beta is None else "modern"
            rows.append({"family": "random +-1", "network": network, "beta": beta, "dim": d, **res})
            log.info("random d=%d %s beta=%s: capacity %d", d, network, beta, res["capacity"])
    result = {"config": to_dict(cfg), "rows": rows, "seconds": time.perf_counter() - began,
              "threads": torch.get_num_threads()}  # fmt: skip
    atomic_write_json(Path(out) / "results.json", result, strict=True)
    return result
