"""The Hopfield experiments' configurations (torch-free, so `dllab --help` can show their defaults quickly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dllab.config import option

Normalise = Literal["standardize", "center", "none"]


@dataclass(frozen=True)
class RetrievalConfig:
    n_patterns: tuple[int, ...] = option(
        (100, 1000, 10000, 60000), "numbers N of stored patterns to try", ge=1, min_len=1
    )
    betas: tuple[float, ...] = option(
        (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0), "inverse temperatures beta (1/sqrt(784) = 0.036)", gt=0, min_len=1
    )
    corruption: Literal["mask", "noise"] = option("mask", "how a query is made from its stored pattern")
    mask_fraction: float = option(0.5, "mask: fraction of the image's rows hidden, from the bottom", gt=0, lt=1)
    noise_std: float = option(1.0, "noise: std of the Gaussian noise, in standardised pixel units", ge=0)
    normalise: Normalise = option("standardize", "per-image standardize, center (minus the mean image), none")
    queries: int = option(200, "stored patterns queried per (N, beta)", ge=1)
    tolerance: float = option(0.1, "retrieved when ||q* - x|| <= tolerance * ||x||", gt=0)
    max_steps: int = option(100, "most CCCP updates per retrieval", ge=1)
    tol: float = option(1e-4, "stop when no query moves more than tol * max_i ||x_i||", ge=0)
    grid_patterns: int = option(1000, "N for the image grids and the energy traces", ge=1)
    grid_betas: tuple[float, ...] = option((0.003, 0.01, 0.03, 1.0), "betas shown in the image grids", gt=0)
    grid_queries: int = option(8, "queries shown in the image grids", ge=1)
    seed: int = option(0, "seed of the query choice and the noise", ge=0, lt=2**32)


@dataclass(frozen=True)
class CapacityConfig:
    sides: tuple[int, ...] = option((4, 7, 10, 14, 28), "Fashion-MNIST pooled to side x side: D = side^2", ge=1, le=28)
    random_dims: tuple[int, ...] = option((8, 12, 16, 20, 24, 32), "D of the random +-1 patterns", ge=1)
    betas: tuple[float, ...] = option(
        (1.0, 8.0), "inverse temperatures (patterns: unit-variance components)", gt=0, min_len=1
    )
    noise_std: float = option(0.5, "query = pattern + N(0, noise_std^2) per component", ge=0)
    queries: int = option(100, "queries per N (at most N); 99% allows one miss in 100", ge=1)
    threshold: float = option(0.99, "capacity: the largest N retrieved at least this often", gt=0, le=1)
    tolerance: float = option(0.1, "retrieved when ||q* - x|| <= tolerance * ||x||", gt=0)
    max_random_patterns: int = option(131072, "largest N tried for random patterns (a power of 2)", ge=1)
    max_steps: int = option(50, "most CCCP updates per retrieval", ge=1)
    seed: int = option(0, "seed of the patterns, queries and noise", ge=0, lt=2**32)


QUICK_RETRIEVAL = [
    "--n_patterns=100,500,2000", "--betas=0.003,0.01,0.03,0.1,1.0", "--queries=64", "--max_steps=20",
    "--grid_patterns=500", "--grid_betas=0.003,0.03,1.0",
]  # fmt: skip
QUICK_CAPACITY = ["--sides=4,7", "--random_dims=8,12,16,20", "--queries=100", "--max_random_patterns=16384"]
