"""The experiment engine: configs, run directories, the training loop, checkpoints, sweeps.

Names are loaded on first use, so that `from dllab.engine.options import TrainConfig` (used to build
`--help` texts) does not import torch.
"""

from __future__ import annotations

from dllab.lazy import lazy_exports

_EXPORTS = {
    "FitResult": "loop",
    "average_checkpoints": "loop",
    "top_checkpoints": "loop",
    "eval_batches": "loop",
    "fit": "loop",
    "load_best": "loop",
    "resolve_device": "loop",
    "resolve_precision": "loop",
    "seed_everything": "loop",
    "torch_threads": "loop",
    "OptimConfig": "options",
    "TrainConfig": "options",
    "RunDir": "rundir",
    "find_runs": "rundir",
    "distributed": None,
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

