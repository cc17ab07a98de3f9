"""Files on the ground floor: atomic writes and the one cache folder.

- `atomic_write_bytes` / `atomic_write_text` / `atomic_write_json`: write a temporary file beside the target,
  fsync it, then rename it over the target, so a kill at any moment leaves the old file or the new one,
  never half of one. The file gets the mode an ordinary `open(path, "w")` would give (0666 less the umask),
  not the 0600 of a bare temporary file.
- `cache_dir()`: where dllab keeps what it derives and can rebuild (compiled kernels, embedded corpora,
  downloads): `$DLLAB_CACHE`, else `$XDG_CACHE_HOME/dllab`, else `~/.cache/dllab`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "DLLAB_CACHE"
_DEPRECATED_CACHE_ENV = "DLLAB_CACHE_DIR"  # the compiled kernels' old name; read with a warning until 0.3


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(file_object)` on a temporary file beside `path`, fsync, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def cache_dir(*parts: str) -> Path:
    """The cache folder (see the module docstring), or a folder inside it: `cache_dir("espeak")`.

    Nothing is created; callers make the folders they write.
    """
    root = os.environ.get(CACHE_ENV)
    if not root and os.environ.get(_DEPRECATED_CACHE_ENV):
        warnings.warn(
            f"${_DEPRECATED_CACHE_ENV} is deprecated: set ${CACHE_ENV} instead (it now covers every cache)",
            DeprecationWarning,
            stacklevel=2,
        )
        root = os.environ[_DEPRECATED_CACHE_ENV]
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dllab")
    return Path(root).joinpath(*parts)
