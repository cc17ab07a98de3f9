"""Measuring on the CPU: wall time (best of n), peak memory (resident-set growth), matmul rate, and what else
ran on the machine meanwhile (other processes' and the hypervisor's share of the CPUs).

Peak memory. tracemalloc does not see torch's allocations and torch has no CPU counterpart of
`torch.cuda.max_memory_allocated`, so `peak_memory` measures what the operating system sees: the growth of
the process's peak resident set (VmHWM in /proc/self/status) during one call, after freeing what can be
freed (gc, glibc malloc_trim) and resetting VmHWM through /proc/self/clear_refs. That counts every byte
the call touched — torch tensors, autograd buffers, MKL/oneDNN scratch — and not the inputs, which exist
before the call. It needs Linux; elsewhere it returns None.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import torch

from dllab.bench.allocator import libc


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Seconds of the fastest of `repeats` calls after `warmup` untimed ones (the least disturbed by others)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    c = libc()
    if c is not None and hasattr(c, "malloc_trim"):
        c.malloc_trim(0)


def peak_memory(fn: Callable[[], object]) -> int | None:
    """Bytes by which the peak resident set grew during one call of fn (see the module docstring)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current resident set
    except OSError:
        return None
    base = _status_bytes("VmRSS")
    result = fn()
    peak = _status_bytes("VmHWM")
    del result
    if base is None or peak is None:
        return None
    return max(0, peak - base)


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The machine's measured rate on a square n x n matmul (GFLOP/s), with torch's current thread count."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / best_time(lambda: a @ b, repeats) / 1e9


def shaped_matmul_gflops(batch: int, m: int, k: int, n: int, repeats: int = 20) -> float:
    """GFLOP/s of a batched (m x k)(k x n) product, e.g. the Taylor kernel's (M x T)(T x Dv+1)."""
    a, b = torch.randn(batch, m, k), torch.randn(batch, k, n)
    return 2 * batch * m * k * n / best_time(lambda: torch.bmm(a, b), repeats) / 1e9


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_counters() -> tuple[float, float, float] | None:
    """(busy, stolen, own) CPU seconds so far: all CPUs' busy time and the hypervisor's steal from
    /proc/stat, and this process's own CPU time (all threads). None off Linux."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    times = os.times()
    return (user + nice + system + irq + softirq) / tick, steal / tick, times.user + times.system


def cpu_shares(start: tuple[float, float, float] | None, seconds: float, cpus: int) -> dict | None:
    """Between `start` (cpu_counters()) and now, over `seconds` of wall time on `cpus` CPUs: the share of
    the CPUs that other processes used and the share the hypervisor took (steal). Contention hidden from
    the guest (another VM on the same cores' hyperthreads) shows in neither."""
    end = cpu_counters()
    if start is None or end is None or seconds <= 0:
        return None
    capacity = seconds * cpus
    others = (end[0] - start[0]) - (end[2] - start[2])
    return {"others": max(0.0, others) / capacity, "steal": max(0.0, end[1] - start[1]) / capacity}


def cpu_line(shares: dict) -> str:
    """One sentence on `cpu_shares`' figures, for the end of a benchmark's printout."""
    busy = shares["others"] > 0.05 or shares["steal"] > 0.05
    return (
        f"CPU during the run: other processes used {shares['others']:.0%} of the machine's CPUs and the hypervisor "
        f"took {shares['steal']:.0%} (steal)"
        + (", so times are pessimistic (each is the best of several calls)." if busy else ".")
    )


def machine() -> dict:
    """The facts every benchmark's machine line starts with: platform, processor, torch, threads, allocator."""
    import platform

    from dllab.bench import allocator

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": load_average(),
        "allocator": allocator.describe(),
    }
