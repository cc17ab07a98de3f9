"""keep_freed_memory: a freed block's pages stay and are reused instead of faulted in again (each case in a
fresh process: the setting is process-wide)."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc mallopt only"
)

# Frees a 12 MiB tensor (three 4 MiB gradients' worth), as each training step or benchmark call does; prints
# whether the setting applied, the resident memory the free gave back to the system (MiB; what the next
# call would fault in again) and the allocator line.
SCRIPT = """
import resource, sys, torch
from dllab.bench import allocator
applied = allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
x = torch.empty(3 << 20).fill_(1.0)
before = rss()
del x
print(applied, (before - rss()) >> 20, allocator.describe())
"""


def _run(mode: str, **env) -> tuple[str, int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=environ, check=True
    ).stdout.split(maxsplit=2)
    return out[0], int(out[1]), out[2]


def test_freed_memory_stays_with_the_process():
    applied, returned, line = _run("keep")
    assert applied == "True" and "keeps freed memory" in line and returned < 2
    applied, returned, line = _run("default")
    assert applied == "False" and "defaults" in line and returned >= 11  # glibc's default: unmapped on free


def test_steps_aside_when_the_user_tuned_glibc_or_opted_out():
    assert _run("keep", MALLOC_TRIM_THRESHOLD_="131072")[0] == "False"
    assert _run("keep", DLLAB_KEEP_FREED_MEMORY="0")[0] == "False"
