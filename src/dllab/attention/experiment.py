"""The attention experiments behind `dllab attention ...` and the report: each writes one JSON file.

runs/attention/theory.json      M(D, K) table with the seeds' formulas and Gram ranks, identity errors,
                                the squares-only map's errors, the series minimum per K
runs/attention/error.json       K-term Taylor attention against softmax, per K and score spread
runs/attention/tune.json        causal chunk size and block size against time
runs/attention/bench.json       `dllab bench attention` (bench-quick.json with --quick)
"""

from __future__ import annotations

import time
from pathlib import Path

from dllab.engine.checkpoint import atomic_write_json

RUNS = Path("runs") / "attention"


def theory_results(quick: bool = False) -> dict:
    from dllab.attention import theory

    started = time.perf_counter()
    rank_limit = 200 if quick else 500
    return {
        "feature_dims": theory.feature_dim_rows(rank_limit=rank_limit),
        "rank_limit": rank_limit,
        "seeds": [{"seed": f.seed, "written": f.written, "verdict": f.verdict} for f in theory.SEED_FORMULAS],
        "seed_k3": [
            {"D": d, "M": theory.feature_dim(d, 3), **{f"seed{s}": fn(d) for s, fn in theory.SEED_K3_VALUES.items()}}
            for d in (2, 4, 8, 16, 64)
        ],
        "identity": theory.identity_errors(),
        "squares_only": theory.squares_only_errors(),
        "series_minimum": [{"K": k, "minimum": theory.truncated_series_minimum(k)} for k in range(1, 7)],
        "seconds": time.perf_counter() - started,
    }


def error_results(quick: bool = False) -> dict:
    from dllab.attention.theory import approximation_errors

    started = time.perf_counter()
    length = 128 if quick else 512
    rows = approximation_errors(length=length)
    return {"rows": rows, "length": length, "heads": 4, "dim": 16, "seconds": time.perf_counter() - started}


def tune_results(
    length: int = 16384,
    chunks: tuple[int, ...] = (16, 32, 64, 128, 256),
    blocks: tuple[int, ...] = (1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21),
    repeats: int = 3,
    log=print,
) -> dict:
    """Time the causal path against the chunk size C and both paths against the block size (B=1, H=4, D=16)."""
    import torch

    import dllab.attention.chunk as chunk_module
    from dllab.attention import TaylorFeatureMap, linear_attention
    from dllab.attention.measure import best_time

    g = torch.Generator().manual_seed(0)
    shape = (1, 4, length, 16)
    q, k, v = (torch.randn(shape, generator=g).requires_grad_() for _ in range(3))
    grad = torch.randn(shape, generator=g)
    fm = TaylorFeatureMap(16, 3)

    def timed(mode: str, causal: bool, chunk: int | None) -> float:
        def call():
            out = linear_attention(q, k, v, fm, causal=causal, chunk_size=chunk)
            if mode == "forward+backward":
                torch.autograd.grad(out, (q, k, v), grad)

        with torch.set_grad_enabled(mode == "forward+backward"):
            return best_time(call, repeats)

    chunk_rows, block_rows = [], []
    for mode in ("forward", "forward+backward"):
        reference = timed(mode, False, None)
        for c in chunks:
            seconds = timed(mode, True, c)
            chunk_rows.append({"mode": mode, "chunk": c, "seconds": seconds, "noncausal_seconds": reference})
            log(f"  {mode:<16} causal C={c:<4}: {seconds * 1e3:8.2f} ms   (non-causal {reference * 1e3:.2f} ms)")
    saved = chunk_module.BLOCK_ELEMENTS
    try:
        for elements in blocks:
            chunk_module.BLOCK_ELEMENTS = elements
            for mode in ("forward", "forward+backward"):
                for causal in (False, True):
                    seconds = timed(mode, causal, None)
                    block_rows.append({"mode": mode, "causal": causal, "block_elements": elements, "seconds": seconds})
                    log(
                        f"  {mode:<16} {'causal' if causal else 'non-causal':<10} block {elements:>8}: "
                        f"{seconds * 1e3:8.2f} ms"
                    )
    finally:
        chunk_module.BLOCK_ELEMENTS = saved
    return {"length": length, "threads": torch.get_num_threads(), "chunks": chunk_rows, "blocks": block_rows}


def run_all(runs_root: Path, quick: bool) -> None:
    root = Path(runs_root) / "attention"
    atomic_write_json(root / "theory.json", theory_results(quick))
    atomic_write_json(root / "error.json", error_results(quick))
