"""Logging and progress: progress bars on a terminal, plain log lines when output is not a TTY."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each record (not the stream of the first call), so
    that commands run in one process one after another (tests, notebooks) never log into a closed stream."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_dllab", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler._dllab = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def is_terminal() -> bool:
    return sys.stderr.isatty()


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True):
    """A tqdm bar on a terminal; the bare iterable otherwise (callers log one line per epoch)."""
    if not (enabled and is_terminal()):
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
