"""Atomic checkpoint writes and safe loads (never unpickling arbitrary objects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dllab.errors import UserError
from dllab.io import atomic_write_bytes


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically. It is serialised in memory first: torch's zip writer turns a
    failed write (no space left) into an opaque RuntimeError, a plain file write gives the OSError that
    `dllab.io` reports as one line naming the path."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, lambda fh: fh.write(buffer.getbuffer()))


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True: tensors, numbers, strings and containers only."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        # torch's messages run to several paragraphs (weights_only advice): keep their first line.
        first = (str(err).strip().splitlines() or [""])[0]
        raise UserError(f"{path}: cannot load checkpoint ({err.__class__.__name__}: {first})") from None
