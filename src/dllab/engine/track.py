"""Watching training the way users do: TensorBoard event files beside metrics.jsonl (`--train.track tensorboard`).

metrics.jsonl stays the record the report reads; the tracker writes the same numbers again, one scalar per
metric per epoch (step = epoch), into `<run>/tensorboard/`, so `tensorboard --logdir runs` shows every run.
It needs the optional extra (`pip install -e '.[tensorboard]'`); PyTorch's own `torch.utils.tensorboard`
writes the files. A resumed run purges the events after its checkpoint's epoch, as metrics.jsonl is truncated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dllab.errors import UserError

NOT_SCALARS = ("epoch",)


def check_available(track: str) -> None:
    """Raise a UserError before a run starts when `track` needs a package that is missing."""
    if track != "tensorboard":
        return
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError(
            "--train.track tensorboard needs the tensorboard package: pip install -e '.[tensorboard]'"
        ) from None


class Tracker:
    """Writes each epoch's record; a no-op for `track == "none"`."""

    def __init__(self, track: str, folder: Path, first_epoch: int):
        self.writer = None
        if track == "tensorboard":
            check_available(track)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(folder), purge_step=first_epoch)

    def log(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
