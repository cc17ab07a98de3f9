"""What every `dllab bench <capability>` shares: timing, peak memory, the machine line, the CPU share other
processes took during a run, the allocator setting, and the common command-line flags.

- `flags`: `add_bench_parser`, `add_common_flags` (torch-free, used to build `--help`).
- `measure`: `best_time`, `peak_memory`, `matmul_gflops`, `cpu_counters` / `cpu_shares` / `cpu_line`, `machine`.
- `allocator`: `keep_freed_memory`, which every benchmark turns on before it measures (see its docstring).
"""

from dllab.bench.flags import add_bench_parser, add_common_flags
from dllab.lazy import lazy_exports

_EXPORTS = {
    "best_time": "measure",
    "cpu_counters": "measure",
    "cpu_line": "measure",
    "cpu_shares": "measure",
    "machine": "measure",
    "matmul_gflops": "measure",
    "peak_memory": "measure",
    "shaped_matmul_gflops": "measure",
    "keep_freed_memory": "allocator",
}
__all__ = ["add_bench_parser", "add_common_flags", *sorted(_EXPORTS)]
__getattr__ = lazy_exports(__name__, _EXPORTS)
