"""Keeping freed CPU memory for reuse (glibc malloc), the way a caching allocator does.

torch's CPU tensors come from malloc. By default glibc serves a block over M_MMAP_THRESHOLD (128 KiB, raised
as large blocks are freed) with a fresh mmap, and hands freed memory at the top of the heap back to the
operating system once more than M_TRIM_THRESHOLD is free. Either way the next call that allocates the same
tensors touches new pages, and every page fault costs about a microsecond here: writing 12 MiB of fresh
pages took 4.2 ms against 0.7 ms for the same pages again (2-core VM, 2026-12-03). A benchmark call or a
training step that frees and reallocates its outputs and gradients pays that every time; the Taylor
attention forward + backward at L = 16,384 took about 2,900 faults per call, some 3 ms of 40 ms.

PyTorch's CPU performance guide suggests a caching allocator (jemalloc, tcmalloc) for this reason.
`keep_freed_memory` gets the same effect from glibc itself through mallopt: blocks up to 32 MiB come from
the heap, and up to 256 MiB of freed memory stays with the process. It is process-wide, so it is set where it
pays, not for every command: by every `dllab bench` command before it measures anything, and by the compiled
Taylor attention kernels when they load (their calls free and reallocate large outputs). A library user may
call it too. It steps aside when the user has set
glibc's own MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_ or DLLAB_KEEP_FREED_MEMORY=0, and off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 256 << 20
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit

_applied: str | None = None  # what keep_freed_memory set, for the benchmarks' machine line
_LIBC: ctypes.CDLL | None | bool = None  # loaded on first use; False where there is none to load


def libc() -> ctypes.CDLL | None:
    """The C library (for mallopt here, malloc_trim in the peak-memory measurement), or None."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        _LIBC = ctypes.CDLL(name) if name else False
    return _LIBC or None


def keep_freed_memory(trim_threshold: int = TRIM_THRESHOLD, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Ask glibc to keep up to `trim_threshold` bytes of freed memory and to serve blocks under
    `mmap_threshold` from the heap. Returns whether the setting is in effect."""
    global _applied
    if _applied is not None:
        return True
    if os.environ.get("DLLAB_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if any(name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False  # the user tuned glibc already
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, mmap_threshold) and mallopt(M_TRIM_THRESHOLD, trim_threshold)):
        return False
    _applied = f"glibc keeps freed memory (trim threshold {trim_threshold >> 20} MiB, mmap {mmap_threshold >> 20} MiB)"
    return True


def describe() -> str:
    """One line for a benchmark's machine description."""
    return _applied or "malloc defaults (freed memory returned to the system)"
