"""The benchmarks' measurements: peak memory as the OS sees it, other processes' share of the CPUs."""

import os
import subprocess
import sys
import time

import pytest

from dllab.bench.measure import best_time, cpu_counters, cpu_line, cpu_shares, peak_memory


def test_best_time_keeps_the_fastest_call():
    delays = iter([0.05, 0.0, 0.02, 0.0])
    assert best_time(lambda: time.sleep(next(delays)), repeats=3, warmup=1) < 0.01


def test_peak_memory_sees_torch_allocations():
    import torch

    grown = peak_memory(lambda: torch.ones(50_000_000 // 4))  # 50 MB
    assert grown is None or 45e6 < grown < 80e6


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_cpu_shares_count_other_processes_not_this_one():
    def window(work):
        start, began = cpu_counters(), time.perf_counter()
        work()
        return cpu_shares(start, time.perf_counter() - began, os.cpu_count() or 1)

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    background = window(lambda: time.sleep(0.3))["others"]
    if background > 0.15:  # other jobs share this machine now: their load would drown what is measured here
        pytest.skip(f"other processes use {background:.0%} of the CPUs")
    own = window(lambda: spin(0.4))  # this process busy: not "others"
    assert 0 <= own["others"] < 0.25 and 0 <= own["steal"] <= 1
    child = "import time\nend = time.perf_counter() + 0.6\nwhile time.perf_counter() < end: pass"
    other = window(lambda: subprocess.run([sys.executable, "-c", child], check=True))
    assert other["others"] > 0.2 / (os.cpu_count() or 1)  # one CPU busy for most of the window


def test_cpu_line_says_when_times_are_pessimistic():
    assert "pessimistic" in cpu_line({"others": 0.3, "steal": 0.0})
    assert "pessimistic" not in cpu_line({"others": 0.01, "steal": 0.01})
