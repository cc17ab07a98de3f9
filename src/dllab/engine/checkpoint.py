"""Atomic checkpoint writes and safe loads (never unpickling arbitrary objects)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dllab.errors import UserError


def atomic_write_bytes(path: Path, write) -> None:
    """Call `write(file_object)` on a temp file beside `path`, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


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
