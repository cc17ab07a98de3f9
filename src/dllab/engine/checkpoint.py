"""Atomic checkpoint writes and safe loads (never unpickling arbitrary objects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dllab.errors import UserError
from dllab.io import atomic_write_bytes


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    atomic_write_bytes(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True: tensors, numbers, strings and containers only."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise UserError(f"{path}: cannot load checkpoint ({err.__class__.__name__}: {err})") from None
