"""The experiment engine: configs, run directories, the training loop, checkpoints, sweeps.

Names are loaded on first use, so that `from dllab.engine.options import TrainConfig` (used to build
`--help` texts) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FitResult": "dllab.engine.loop",
    "eval_batches": "dllab.engine.loop",
    "fit": "dllab.engine.loop",
    "load_best": "dllab.engine.loop",
    "resolve_device": "dllab.engine.loop",
    "seed_everything": "dllab.engine.loop",
    "OptimConfig": "dllab.engine.options",
    "TrainConfig": "dllab.engine.options",
    "RunDir": "dllab.engine.rundir",
    "find_runs": "dllab.engine.rundir",
}

__all__ = [*_EXPORTS, "distributed"]


def __getattr__(name: str) -> Any:
    if name == "distributed":
        return importlib.import_module("dllab.engine.distributed")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dllab.engine' has no attribute {name!r}")
