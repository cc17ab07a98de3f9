"""A run directory: everything one training run leaves behind, and the only thing plots and reports read.

    runs/<experiment>/<name>/
        config.json          the resolved config (+ experiment, dllab version, parameter count)
        metrics.jsonl        one JSON record per epoch: epoch, train_loss, val_*, lr, seconds
        checkpoints/last.pt  model + optimizer + RNG state after the latest epoch (for --resume)
        checkpoints/best.pt  model weights at the best validation epoch
        test_metrics.json    test metrics of the final and of the best model; present = run complete
        figures/             figures drawn from this directory
        .lock                the run's lock (see below); holds the pid of the last process that took it

One process at a time. `prepare()` creates the directory atomically (`mkdir` without exist_ok: of two
processes starting the same new run, one creates it) and takes the run's lock, a `filelock` flock on
`.lock`, for the rest of the process (`claim()`; `release()` lets it go earlier). Every write into the
directory (config, metrics, test metrics) happens under that lock, so a second process on the same run
(training, resuming, testing into it, or one run of a sweep) stops with a `UserError` naming the run and the
holder's pid instead of interleaving its epochs with the first one's. The operating system drops the lock
when its process dies, so a killed run never stays locked.

Every JSON file here is strict JSON: a non-finite number is written as null (see `dllab.io`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dllab import __version__
from dllab.config import diff, from_dict, to_dict
from dllab.errors import UserError
from dllab.io import atomic_write_json, atomic_write_text, file_system_error, strict_json

LOCK_NAME = ".lock"
# A resumed run may change these and go on: more epochs, other CPU settings, and a lower learning rate or a
# gradient clip (the way out of a run stopped by a non-finite loss).
RESUMABLE_CHANGES = ("train.epochs", "train.threads", "train.mkldnn", "optim.lr", "optim.grad_clip")


def check_run_name(name: str, option: str = "--name") -> str:
    """`name` when it is one plain path component (a folder name), else a UserError naming `option`."""
    problem = None
    if not name or not name.strip():
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is not a folder name"
    elif "/" in name or "\\" in name or os.sep in name:
        problem = "holds a path separator"
    elif any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        problem = "holds a control character"
    elif len(name.encode("utf-8", "surrogateescape")) > 255:
        problem = "is longer than 255 bytes"
    if problem:
        raise UserError(f"{option} {name!r} {problem}: a run name is one folder name, like lr0.01 or my-run")
    return name


@dataclass
class _Hold:
    """This process's hold on one run's lock: `claimed` for the rest of the process, plus scoped holds."""

    lock: Any  # filelock.FileLock
    claimed: bool = False
    scoped: int = 0


_HELD: dict[str, _Hold] = {}  # resolved run path -> this process's hold


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def named(cls, root: str | Path, experiment: str, name: str) -> RunDir:
        """`root/experiment/name`, once `name` is checked to be one folder name (`check_run_name`)."""
        return cls(Path(root) / experiment / check_run_name(name))

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def test_metrics_path(self) -> Path:
        return self.path / "test_metrics.json"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.config_path.exists()

    def is_complete(self) -> bool:
        return self.test_metrics_path.exists()

    def has_progress(self) -> bool:
        """Whether the run has anything to lose: a metrics record, a checkpoint or test metrics."""
        has_metrics = self.metrics_path.exists() and self.metrics_path.stat().st_size > 0
        return has_metrics or self.last_checkpoint.exists() or self.best_checkpoint.exists() or self.is_complete()

    # -- lock --------------------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def claim(self) -> RunDir:
        """Take the run's lock for the rest of this process (or until `release()`); returns self.

        A UserError names the run and the holder's pid when another process holds it."""
        self._hold().claimed = True
        return self

    def release(self) -> None:
        """Let go of a `claim()` (scoped holds of `locked()` still running keep the lock until they end)."""
        hold = _HELD.get(self._key())
        if hold is not None:
            hold.claimed = False
            self._drop_if_unused(hold)

    @contextmanager
    def locked(self) -> Iterator[RunDir]:
        """Hold the run's lock for the block (a no-op when this process holds it already); creates the
        directory when it is missing."""
        hold = self._hold(create=True)
        hold.scoped += 1
        try:
            yield self
        finally:
            hold.scoped -= 1
            self._drop_if_unused(hold)

    def holder_pid(self) -> int | None:
        """The pid written into `.lock` by the process that took it last (None when unreadable)."""
        try:
            return int(self.lock_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _key(self) -> str:
        return str(self.path.resolve())

    def _hold(self, create: bool = False) -> _Hold:
        key = self._key()
        if key in _HELD:
            return _HELD[key]
        if create:
            self.create()
        if not self.path.exists():
            raise UserError(f"{self.config_path}: not a run directory (no config.json)")
        if not self.path.is_dir():
            raise UserError(f"{self.path}: not a directory (expected a run directory)")
        import filelock

        lock = filelock.FileLock(self.lock_path, timeout=0, thread_local=False, on_acquired=_write_pid)
        try:
            lock.acquire()
        except filelock.Timeout:
            pid = self.holder_pid()
            raise UserError(
                f"run {self.path} is in use by another dllab process (pid {pid if pid else 'unknown'}): wait for it "
                "to finish or stop it; two processes must not write one run"
            ) from None
        except OSError as err:
            raise file_system_error(err, "lock", self.lock_path) from None
        _HELD[key] = hold = _Hold(lock)
        return hold

    def _drop_if_unused(self, hold: _Hold) -> None:
        if not hold.claimed and hold.scoped == 0:
            _HELD.pop(self._key(), None)
            hold.lock.release()

    # -- config ------------------------------------------------------------------------------------
    def write_config(self, experiment: str, cfg: Any, extra: dict[str, Any] | None = None) -> None:
        """Write config.json (under the run's lock)."""
        record = {
            "experiment": experiment,
            "config_class": type(cfg).__name__,
            "config": to_dict(cfg),
            "dllab_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **(extra or {}),
        }
        with self.locked():
            atomic_write_json(self.config_path, record, strict=True)

    def read_config_record(self) -> dict[str, Any]:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise UserError(f"{self.config_path}: not a run directory (no config.json)") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{self.config_path}: invalid JSON ({err})") from None

    def read_config(self, cls: type) -> Any:
        return from_dict(cls, self.read_config_record()["config"], where=str(self.config_path))

    def prepare(self, experiment: str, cfg: Any, resume: bool, overwrite: bool = False, extra=None) -> None:
        """Create the directory for a new run, or check that a resumed run has the same config; then hold
        the run's lock for the rest of the process (`claim`).

        A finished run is left alone unless `overwrite`; a partial run needs `resume` (or `overwrite`). A
        directory without progress (a start that failed before its first epoch) is started afresh.
        """
        self.create()
        self.claim()
        if self.exists() and self.has_progress():
            if overwrite:
                for p in (self.metrics_path, self.test_metrics_path, self.last_checkpoint, self.best_checkpoint):
                    if p.exists():
                        p.unlink()
            elif resume:
                saved = self.read_config(type(cfg))
                changed = [k for k in diff(saved, cfg) if k not in RESUMABLE_CHANGES]
                if changed:
                    raise UserError(
                        f"{self.path}: cannot resume with a different config ({', '.join(changed)} changed); "
                        "use another --name or --overwrite"
                    )
            else:
                state = "finished" if self.is_complete() else "unfinished"
                raise UserError(
                    f"{self.path} already holds a {state} run: pass --resume to continue it, "
                    "--overwrite to start again, or --name for a new run"
                )
        self.write_config(experiment, cfg, extra)

    def create(self) -> None:
        """mkdir the run directory (its parents as needed), atomically: an existing one is opened as it is."""
        for parent in reversed(self.path.parents):
            if parent.exists() and not parent.is_dir():
                raise UserError(f"{parent}: not a directory (cannot create the run {self.path} inside it)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
        except FileExistsError:
            if not self.path.is_dir():
                raise UserError(f"{self.path}: exists and is not a directory") from None
        except OSError as err:
            raise file_system_error(err, "create the run directory", self.path) from None

    # -- metrics -----------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl as strict JSON (non-finite numbers as null), under the lock."""
        line = json.dumps(strict_json(record), allow_nan=False) + "\n"
        with self.locked():
            try:
                with open(self.metrics_path, "a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as err:
                raise file_system_error(err, "append to", self.metrics_path) from None

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # A kill mid-append can leave a partial last line; anything earlier is corruption.
                if number == len(self.metrics_path.read_text().splitlines()):
                    break
                raise UserError(f"{self.metrics_path}:{number}: invalid JSON") from None
        return records

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only the records up to `last_epoch` (the epoch of the checkpoint being resumed)."""
        kept = [r for r in self.read_metrics() if r["epoch"] <= last_epoch]
        text = "".join(json.dumps(strict_json(r), allow_nan=False) + "\n" for r in kept)
        with self.locked():
            atomic_write_text(self.metrics_path, text)

    def write_test_metrics(self, metrics: dict[str, Any]) -> None:
        with self.locked():
            atomic_write_json(self.test_metrics_path, metrics, strict=True)

    def read_test_metrics(self) -> dict[str, Any] | None:
        if not self.test_metrics_path.exists():
            return None
        try:
            return json.loads(self.test_metrics_path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{self.test_metrics_path}: invalid JSON ({err})") from None


def find_runs(root: str | Path) -> list[RunDir]:
    """Every run directory (a folder with config.json) below `root`, sorted by path."""
    root = Path(root)
    if not root.exists():
        return []
    return [RunDir(p.parent) for p in sorted(root.rglob("config.json"))]
