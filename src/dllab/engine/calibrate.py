"""How long a training run will take on this machine, from a short real run of the same code.

`time_small_run` trains a small version of a run (a few hundred examples, one epoch) into a temporary run
directory through the capability's own training function, then reads its metrics.jsonl: the training seconds
per example, the validation seconds per example, and what the run spent outside its epochs (data, model,
test). `Timing.estimate` scales those to the real run's sizes and epochs. No constants: a faster machine, more
threads or another model show up in the measurement.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dllab.engine.rundir import RunDir


@dataclass(frozen=True)
class Timing:
    fixed: float  # seconds outside the epochs: loading data, building the model, testing
    train_per_item: float  # training seconds per example (one epoch = n_train of them)
    eval_per_item: float  # validation seconds per example

    def estimate(self, epochs: int, n_train: int, n_eval: int) -> float:
        """Wall seconds of a run of `epochs` over `n_train` examples, validating on `n_eval` each epoch."""
        return self.fixed + epochs * (n_train * self.train_per_item + n_eval * self.eval_per_item)


def time_small_run(train: Callable[[Path], object], n_train: int, n_eval: int, threads: int = 1) -> Timing:
    """Call `train(run_path)`, which must train one epoch on `n_train` examples validating on `n_eval`, on
    `threads` torch threads (a plan runs its tasks on one thread each by default)."""
    import logging

    from dllab.engine.loop import torch_threads

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # the calibration run's epoch lines are not news
    try:
        with torch_threads(threads), tempfile.TemporaryDirectory(prefix="dllab-calibrate-") as tmp:
            path = Path(tmp) / "calibration"
            began = time.perf_counter()
            train(path)
            wall = time.perf_counter() - began
            metrics = RunDir(path).read_metrics()
    finally:
        logging.getLogger().setLevel(level)
    if not metrics:
        raise RuntimeError("calibration run wrote no metrics")
    epoch = metrics[0]
    train_seconds = float(epoch["train_seconds"])
    eval_seconds = max(0.0, float(epoch["seconds"]) - train_seconds)
    return Timing(
        fixed=max(0.0, wall - sum(float(m["seconds"]) for m in metrics)),
        train_per_item=train_seconds / max(1, n_train),
        eval_per_item=eval_seconds / max(1, n_eval),
    )
