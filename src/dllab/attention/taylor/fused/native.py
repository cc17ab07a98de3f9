"""The compiled kernels of `native.c`, built with the system's C compiler on first use and called via ctypes.

Why: the Taylor kernels' work is products with the M = 153 features of every token (D = 16, K = 3). In
PyTorch each product needs the features built first, (B, M, T) per block of tokens, and small batched
matmuls around them; the blocks' buffers leave the 1 MiB L2 cache and MKL runs the skinny products at
60-65% of its square-matmul rate. Each kernel here builds a tile's features in registers or L1 and uses them
at once, so no features are ever stored:

- `quadratic_gradient`: dL/dx through the features, from a state and an output gradient (both directions of
  the backward; 140-180 us against 300-400 us per non-causal block of 856 tokens x 4 heads);
- `feature_read`: A u(X), a state read by the queries (forward) or the keys (backward, grad V);
- `feature_sum`: G u(X)^T, a state summed over tokens (forward) or its gradient (backward); as a scan over
  a block's chunks it also gives the causal states before each chunk (and their gradients, in reverse);
- `causal_chunks`: the causal kernel's masked C x C block, forward and backward.

The tests compare each with plain products over built features, and the fused kernels built on them
(`dllab.attention.taylor.fused.chunk`) with the plain path (`dllab.attention.taylor.chunk`). Against the
best PyTorch path of the time they took the forward + backward at L = 16,384 (B = 1, H = 4, 2 threads)
from 37-47 ms to 22-29 ms non-causal and from 60-100 ms to 39-49 ms causal (2026-12-03). The whole file
builds in about 7 s (gcc 12, one core); keep helpers that run between loops out of line, as `emit` is:
inlined into every instance of the sum kernel it took the build to 150 s.

How: `cc -O3 -march=native -fopenmp -shared` (the compiler from $CC, else cc or gcc) writes a library into the
user's cache (`dllab.io.cache_dir()`: $DLLAB_CACHE, else $XDG_CACHE_HOME/dllab or ~/.cache/dllab), under a
name that hashes the source, the compiler, the flags and the CPU, so an edit or another machine sharing the
home directory builds its own. It is compiled to a temporary name and renamed, so processes building at once
never load a half-written file. OpenMP is libgomp.so.1, the runtime torch's CPU wheel has already loaded: the
kernel runs on torch's threads, as many as `torch.get_num_threads()`.

Without a compiler, when the build fails, off Linux, or with DLLAB_NATIVE=0, `library()` returns None,
`status()` says why, and `dllab.attention.taylor.dispatch` runs the plain path instead. Loading the library
also calls `dllab.bench.allocator.keep_freed_memory()`: the kernels' callers free and reallocate large
outputs every call. Tensors are passed as pointers and element strides (any layout), with two batch levels
where chunks are read or written in place.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from dllab.bench.allocator import keep_freed_memory
from dllab.io import cache_dir

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_KERNELS = ("quadratic_gradient", "feature_read", "feature_sum", "causal_chunks")  # C names: dllab_<kernel>_<f32|f64>

_lock = threading.Lock()
_loaded: ctypes.CDLL | None = None
_status: str | None = None  # None until the first library() call


def find_compiler() -> str | None:
    """$CC, else cc, else gcc: the path of a C compiler, or None."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name:
            path = shutil.which(name)
            if path:
                return path
    return None


def _cpu() -> str:
    """The CPU's model and feature flags (-march=native builds for exactly these)."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [line for line in fh if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def build(compiler: str, directory: Path) -> Path:
    """Compile native.c with `compiler` into `directory` (unless that build exists) and return its path.

    Raises RuntimeError with the compiler's message when the build fails."""
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(FLAGS).encode(), _cpu().encode()]))
    target = directory / f"dllab-native-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    # once per source and machine, and seconds long: say so rather than stall silently inside a first call
    print(f"dllab: compiling the attention kernels once ({SOURCE.name} -> {target})", file=sys.stderr, flush=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *FLAGS, "-o", temporary, str(SOURCE)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(f"{compiler} failed on {SOURCE.name}: {' / '.join(message[-3:]) or 'no message'}")
        os.replace(temporary, target)  # atomic: another process sees the whole library or none
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def load(compiler: str | None, directory: Path) -> tuple[ctypes.CDLL | None, str]:
    """Build (if needed) and load the library: (library or None, a line saying what happened)."""
    if platform.system() != "Linux":
        return None, f"off: the compiled kernels are built for Linux only, this is {platform.system()}"
    if compiler is None:
        return None, "off: no C compiler found ($CC, cc, gcc)"
    try:
        path = build(compiler, directory)
        library = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        return None, f"off: {err}"
    for kernel in _KERNELS:
        for suffix in _SUFFIX.values():
            getattr(library, f"dllab_{kernel}_{suffix}").restype = ctypes.c_int
    return library, f"built with {Path(compiler).name} {' '.join(FLAGS[:3])}, {path.name}"


def library() -> ctypes.CDLL | None:
    """The loaded library, built on the first call; None when it is off or could not be built."""
    global _loaded, _status
    if _status is None:
        with _lock:
            if _status is None:
                if os.environ.get("DLLAB_NATIVE", "1") == "0":
                    _loaded, _status = None, "off (DLLAB_NATIVE=0)"
                else:
                    _loaded, _status = load(find_compiler(), cache_dir())
                if _loaded is not None:
                    # The kernels' callers free and reallocate large outputs every call: keep those pages.
                    keep_freed_memory()
    return _loaded


def status() -> str:
    """Whether the library loaded: "built with <compiler and flags>, <file>", or "off..." and why."""
    library()
    return _status


def supports(t: Tensor) -> bool:
    """Whether the kernel can take tensors like t (on the CPU, float32 or float64) and is available."""
    return t.device.type == "cpu" and t.dtype in _SUFFIX and library() is not None


def _batches(what: str, tensors: dict[str, Tensor]) -> tuple[int, int]:
    """(B, inner) for tensors that are each (B, X, Y) or (B1, inner, X, Y) with B = B1 inner (two batch levels:
    chunks read or written in place in a sequence), after checking that they agree."""
    inner = next((t.shape[1] for t in tensors.values() if t.dim() == 4), 1)
    outer = None
    for name, t in tensors.items():
        if t.dim() not in (3, 4) or (t.dim() == 4 and t.shape[1] != inner) or (t.dim() == 3 and t.shape[0] % inner):
            raise ValueError(
                f"{what}: {name} must be (B, X, Y) or (B1, {inner}, X, Y) like the others, got {tuple(t.shape)}"
            )
        b1 = t.shape[0] if t.dim() == 4 else t.shape[0] // inner
        if outer is not None and b1 != outer:
            raise ValueError(f"{what}: shapes do not fit: {name} {tuple(t.shape)} has another batch size")
        outer = b1
    return outer * inner, inner


def _args(t: Tensor, inner: int) -> list:
    """Pointer, the two batch strides and the other two strides, in elements."""
    strides = t.stride() if t.dim() == 4 else (t.stride(0) * inner, t.stride(0), *t.stride()[1:])
    return [ctypes.c_void_p(t.data_ptr()), *(ctypes.c_int64(s) for s in strides)]


def _scalar(value: float, like: Tensor):
    return (ctypes.c_float if like.dtype == torch.float32 else ctypes.c_double)(value)


def _same_dtype(what: str, first: Tensor, *others: Tensor | None) -> None:
    if any(t is not None and t.dtype != first.dtype for t in others):
        raise ValueError(f"{what}: all tensors must share a dtype ({first.dtype})")


def _call(kernel: str, like: Tensor, *args) -> None:
    failed = getattr(library(), f"dllab_{kernel}_{_SUFFIX[like.dtype]}")(ctypes.c_int64(torch.get_num_threads()), *args)
    if failed:
        raise MemoryError(f"{kernel}: the native kernel could not allocate its buffers (or took sizes out of range)")


def quadratic_gradient(
    state: Tensor,
    g: Tensor,
    x: Tensor,
    x_scale: float,
    out: Tensor,
    start: Tensor,
    rows: Tensor,
    partners: Tensor,
    factors: Tensor,
) -> Tensor:
    """out (B, D, T) = the terms' sum (see native.c) for a state (B, M, C), g (B, C, T) and the inputs
    x_scale * x (B, D, T).

    Any strides, and each tensor may have two batch levels (B1, B2, ...); `start` (D + 1,) int64 group offsets,
    `rows` (P,) int64, `partners` (P,) int32 (-1: a linear term), `factors` (P,) of the tensors' dtype. The
    caller checks `supports` first."""
    _same_dtype("quadratic_gradient", state, g, x, out, factors)
    batch, inner = _batches("quadratic_gradient", {"state": state, "g": g, "x": x, "out": out})
    channels, (tokens, d) = state.shape[-1], (g.shape[-1], x.shape[-2])
    if state.shape[-1] != g.shape[-2] or x.shape[-1] != tokens or out.shape[-2:] != (d, tokens) or d != len(start) - 1:
        raise ValueError(
            f"quadratic_gradient: shapes do not fit: state {tuple(state.shape)}, g {tuple(g.shape)}, "
            f"x {tuple(x.shape)}, out {tuple(out.shape)}"
        )
    if batch and tokens:
        _call(
            "quadratic_gradient", state, ctypes.c_int64(batch), ctypes.c_int64(inner), ctypes.c_int64(tokens),
            ctypes.c_int64(channels), ctypes.c_int64(d), *_args(state, inner), *_args(g, inner), *_args(x, inner),
            _scalar(x_scale, x), *_args(out, inner), ctypes.c_void_p(start.data_ptr()),
            ctypes.c_void_p(rows.data_ptr()), ctypes.c_void_p(partners.data_ptr()), ctypes.c_void_p(factors.data_ptr()),
        )  # fmt: skip
    return out


def feature_read(
    a: Tensor, x: Tensor, x_scale: float, out: Tensor, first: Tensor, second: Tensor, weights: Tensor | None = None
) -> Tensor:
    """out (B, C, T) = A (B, C, M) times diag(weights) times the bare monomials u (B, M, T) of x_scale * x
    (B, D, T), u = [1, x, x_first[m] x_second[m] for m > D], without forming u (see native.c).

    Any strides, two batch levels allowed; `first`, `second` (M,) int32; weights (M,) or None for ones. The
    caller checks `supports`."""
    _same_dtype("feature_read", a, x, out, weights)
    batch, inner = _batches("feature_read", {"a": a, "x": x, "out": out})
    (channels, m), (d, tokens) = a.shape[-2:], x.shape[-2:]
    if out.shape[-2:] != (channels, tokens):
        raise ValueError(
            f"feature_read: shapes do not fit: a {tuple(a.shape)}, x {tuple(x.shape)}, out {tuple(out.shape)}"
        )
    if not (first.shape == second.shape == (m,)) or m < 1 + d:
        raise ValueError(f"feature_read: {m} features do not fit inputs of dimension {d}")
    if batch and tokens:
        _call(
            "feature_read", a, ctypes.c_int64(batch), ctypes.c_int64(inner), ctypes.c_int64(tokens),
            ctypes.c_int64(channels), ctypes.c_int64(d), ctypes.c_int64(m), *_args(a, inner), *_args(x, inner),
            _scalar(x_scale, x), *_args(out, inner), ctypes.c_void_p(first.data_ptr()),
            ctypes.c_void_p(second.data_ptr()), ctypes.c_void_p(None if weights is None else weights.data_ptr()),
        )  # fmt: skip
    return out


def feature_sum(
    g: Tensor,
    x: Tensor,
    x_scale: float,
    out: Tensor,
    first: Tensor,
    second: Tensor,
    weights: Tensor | None = None,
    add: bool = False,
    scan: int = 0,
    init: Tensor | None = None,
    last: Tensor | None = None,
) -> Tensor:
    """out (B, C, M) = G (B, C, T) times the weighted bare monomials of x_scale * x (B, D, T), transposed:
    sum_t g_t (w u(x_t))^T, without forming u; `add` adds it to out instead (see native.c).

    scan = 1 (or -1, in reverse), with two batch levels (B1, B2, ...): out[b1, b2] = init[b1] plus the sums
    of the chunks before b2 (after b2), an exclusive prefix (suffix) sum over chunks, and last[b1] = init[b1]
    plus all of them; init and last are (B1, C, M).

    Any strides, two batch levels allowed; `first`, `second` (M,) int32; weights (M,) or None. The caller
    checks `supports`."""
    _same_dtype("feature_sum", g, x, out, weights, init, last)
    batch, inner = _batches("feature_sum", {"g": g, "x": x, "out": out})
    (channels, tokens), (d, _), m = g.shape[-2:], x.shape[-2:], out.shape[-1]
    if x.shape[-1] != tokens or out.shape[-2] != channels:
        raise ValueError(
            f"feature_sum: shapes do not fit: g {tuple(g.shape)}, x {tuple(x.shape)}, out {tuple(out.shape)}"
        )
    if not (first.shape == second.shape == (m,)) or m < 1 + d:
        raise ValueError(f"feature_sum: {m} features do not fit inputs of dimension {d}")
    null = [ctypes.c_void_p(None)] + [ctypes.c_int64(0)] * 3
    scan_args = null * 2
    if scan:
        outer = batch // inner
        if init is None or last is None or init.shape != (outer, channels, m) or last.shape != init.shape:
            raise ValueError(f"feature_sum: a scan needs init and last of shape {(outer, channels, m)}")
        scan_args = [a for t in (init, last) for a in (ctypes.c_void_p(t.data_ptr()), *map(ctypes.c_int64, t.stride()))]
    if batch:
        _call(
            "feature_sum", g, ctypes.c_int64(batch), ctypes.c_int64(inner), ctypes.c_int64(tokens),
            ctypes.c_int64(channels), ctypes.c_int64(d), ctypes.c_int64(m), *_args(g, inner), *_args(x, inner),
            _scalar(x_scale, g), *_args(out, inner), ctypes.c_int(int(add)), ctypes.c_void_p(first.data_ptr()),
            ctypes.c_void_p(second.data_ptr()), ctypes.c_void_p(None if weights is None else weights.data_ptr()),
            ctypes.c_int(scan), *scan_args,
        )  # fmt: skip
    return out


def causal_chunks_apply(like: Tensor, dim: int, order: int) -> bool:
    """Whether `causal_chunks` takes inputs like `like` of dimension D = dim, K = order: D <= 32, K <= 16."""
    return supports(like) and dim <= 32 and 1 <= order <= 16


def causal_chunks(
    q: Tensor,
    k: Tensor,
    v1: Tensor,
    scale: float,
    order: int,
    out: Tensor | None = None,
    g: Tensor | None = None,
    grads: tuple[Tensor, Tensor, Tensor] | None = None,
) -> None:
    """The part inside each chunk of causal Taylor attention (see native.c), added into its destinations.

    q, k: (B, C, D) raw chunks; v1 (B, C, V) values with the normaliser's column. Forward: out (B, V, C) += the
    masked series times V1. Backward (g (B, V, C) given): grads = (grad_q (B, D, C), grad_k (B, D, C),
    grad_v (B, >= V - 1, C)) += the chunk's parts. Any strides, two batch levels allowed (B1, B2, ...)."""
    backward = g is not None
    if backward == (grads is None) or (not backward and out is None):
        raise ValueError("causal_chunks: the forward takes out, the backward g and grads")
    named = {"q": q, "k": k, "v1": v1} | ({"g": g, "grad_q": grads[0], "grad_k": grads[1], "grad_v": grads[2]}
                                         if backward else {"out": out})  # fmt: skip
    _same_dtype("causal_chunks", q, *named.values())
    batch, inner = _batches("causal_chunks", named)
    (chunk, d), channels = q.shape[-2:], v1.shape[-1]
    if k.shape[-2:] != (chunk, d) or v1.shape[-2] != chunk or channels > 33 or d > 32:
        raise ValueError(
            f"causal_chunks: shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v1 {tuple(v1.shape)}"
        )
    if not batch or not chunk:
        return
    null = [ctypes.c_void_p(None)] + [ctypes.c_int64(0)] * 4
    if backward:
        g_args, out_args, grad_args = _args(g, inner), null, [a for t in grads for a in _args(t, inner)]
    else:
        g_args, out_args, grad_args = null, _args(out, inner), null * 3
    _call(
        "causal_chunks", q, ctypes.c_int64(batch), ctypes.c_int64(inner), ctypes.c_int64(chunk), ctypes.c_int64(d),
        ctypes.c_int64(channels), ctypes.c_int(order), _scalar(scale, q), ctypes.c_int(backward),
        *_args(q, inner), *_args(k, inner), *_args(v1, inner), *g_args, *out_args, *grad_args,
    )  # fmt: skip
