"""The experiment engine: configs, run directories, the training loop, checkpoints, sweeps."""

from dllab.engine import distributed
from dllab.engine.fit import (
    FitResult,
    OptimConfig,
    TrainConfig,
    eval_batches,
    fit,
    load_best,
    resolve_device,
    seed_everything,
)
from dllab.engine.rundir import RunDir, find_runs

__all__ = [
    "distributed",
    "FitResult",
    "OptimConfig",
    "TrainConfig",
    "RunDir",
    "eval_batches",
    "find_runs",
    "fit",
    "load_best",
    "resolve_device",
    "seed_everything",
]
