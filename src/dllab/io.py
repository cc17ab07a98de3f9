"""Files on the ground floor: atomic writes and the one cache folder.

- `atomic_write_bytes` / `atomic_write_text` / `atomic_write_json`: write a temporary file beside the target,
  fsync it, then rename it over the target, so a kill at any moment leaves the old file or the new one,
  never half of one. The file gets the mode an ordinary `open(path, "w")` would give (0666 less the umask),
  not the 0600 of a bare temporary file. `atomic_write_json(..., strict=True)` writes strict JSON: a
  non-finite float (NaN, +-Infinity, which Python's json would write as the bare, non-JSON tokens `NaN` /
  `Infinity`) is written as null (`strict_json`): a reader then sees "no value" rather than a file no JSON
  parser outside Python accepts, and a run that measured one NaN does not lose its other figures by refusing
  to save them. Every file of a run directory and every result file of vision and hopfield is written so.
  The default is still Python's (strict=False) because one reader depends on it: the attention theory
  check stores an even-K Taylor series' minimum as -Infinity and its report reads it back as -inf.
- A file-system failure (permission denied, read-only file system, no space, not a directory) raises a
  `UserError` naming the path and the operation (`file_system_error`), and the old file is left as it was.
- `cache_dir()`: where dllab keeps what it derives and can rebuild (compiled kernels, embedded corpora,
  downloads): `$DLLAB_CACHE`, else `$XDG_CACHE_HOME/dllab`, else `~/.cache/dllab`. A cache is keyed by what
  it was derived from: `file_stamp` (size and modification time) of each input and output file, a
  `sha256_file` / `sha256_text` where hashing is cheap; a cache whose recorded key no longer matches is
  rebuilt.
- `building(target)`: the build lock of a cache folder or file. Of two processes (or threads) building the
  same cache at once, the second waits, logging "waiting for another dllab process building <target>", and
  then finds the first one's result, instead of both doing the work and racing on the files.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dllab.errors import UserError

log = logging.getLogger(__name__)

CACHE_ENV = "DLLAB_CACHE"
_DEPRECATED_CACHE_ENV = "DLLAB_CACHE_DIR"  # the compiled kernels' old name; read with a warning until 0.3


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_system_error(err: OSError, operation: str, path: str | Path) -> UserError:
    """A one-line UserError for a failed file-system `operation` on `path`: `cannot write x: No space left`."""
    reason = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM):
        reason += " (check the folder's permissions)"
    elif err.errno == errno.EROFS:
        reason += " (the file system is mounted read-only)"
    elif err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += " (free some space or write elsewhere)"
    where = err.filename if err.filename and str(err.filename) != str(path) else None
    return UserError(f"cannot {operation} {path}: {reason}" + (f" ({where})" if where else ""))


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(file_object)` on a temporary file beside `path`, fsync, then rename it over `path`.

    A file-system failure is a UserError naming `path` (see `file_system_error`); `path` is then untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise file_system_error(err, "write", path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
        except OSError:
            pass  # the folder itself became unwritable: the stray temporary file is all that is left
        if isinstance(err, OSError):
            raise file_system_error(err, "write", path) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode("utf-8")))


def strict_json(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, +-inf) replaced by None, so that it dumps as strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any, strict: bool = False) -> None:
    """Write `obj` as JSON, atomically; `strict`: non-finite numbers as null (see the module docstring)."""
    if strict:
        obj = strict_json(obj)
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=not strict) + "\n")


def file_stamp(path: str | Path) -> dict[str, int]:
    """{"size": bytes, "mtime_ns": modification time} of `path`: what a cache records of its inputs."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stamps_match(recorded: dict[str, Any], folder: str | Path) -> bool:
    """Whether every file named in `recorded` ({name: file_stamp}) still has that stamp inside `folder`."""
    try:
        return all(file_stamp(Path(folder) / name) == stamp for name, stamp in recorded.items())
    except OSError:
        return False


def sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_json_or_none(path: str | Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable (a cache stamp: rebuild then)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextmanager
def building(target: str | Path) -> Iterator[None]:
    """Hold the build lock of `target` (a cache folder or file) for the block: a `filelock` flock on
    `.<name>.lock` beside it. When another process (or thread) holds it, log that we wait, then wait.

    A builder checks whether `target` is finished again once inside the block: the process it waited for
    has usually just finished it. The operating system drops the lock of a killed process, so a crashed
    build never blocks the next one; the lock file itself stays (deleting it would race with a waiter)."""
    import filelock

    target = Path(target)
    lock_path = target.parent / f".{target.name}.lock"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(lock_path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            log.warning("waiting for another dllab process building %s", target)
            lock.acquire()
    except OSError as err:
        raise file_system_error(err, "lock", lock_path) from None
    try:
        yield
    finally:
        lock.release()


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
