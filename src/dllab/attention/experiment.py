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

from dllab.io import atomic_write_json

RUNS = Path("runs") / "attention"
MODES = ("forward", "forward+backward")


def theory_results(quick: bool = False) -> dict:
    from dllab.attention import theory

    started = time.perf_counter()
    rank_limit = 200 if quick else 1000
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
    repeats: int = 5,
    log=print,
) -> dict:
    """Time the causal path against the chunk size C and both paths against the block size (B=1, H=4, D=16).

    Every setting is timed once per round, `repeats` rounds, keeping each one's best: on a shared CPU a
    burst of load then spoils one round of a setting, not all of them.
    """
    import torch

    from dllab.attention import TaylorFeatureMap, linear_attention
    from dllab.attention.linear import DEFAULT_CHUNK_SIZE
    from dllab.attention.taylor import chunk as chunk_module  # the block sizes both paths use

    g = torch.Generator().manual_seed(0)
    shape = (1, 4, length, 16)
    q, k, v = (torch.randn(shape, generator=g).requires_grad_() for _ in range(3))
    grad = torch.randn(shape, generator=g)
    fm = TaylorFeatureMap(16, 3)
    # A block row sets every pass's block size (the non-causal forward's default differs: FORWARD_BLOCK_ELEMENTS)
    default_block, default_forward = chunk_module.BLOCK_ELEMENTS, chunk_module.FORWARD_BLOCK_ELEMENTS
    settings = [
        (mode, causal, c, None) for mode in MODES for causal, c in [(False, None)] + [(True, c) for c in chunks]
    ]
    settings += [(mode, causal, DEFAULT_CHUNK_SIZE, b) for b in blocks for mode in MODES for causal in (False, True)]
    best = {s: float("inf") for s in settings}
    try:
        for round_ in range(repeats):
            for mode, causal, c, b in settings:
                chunk_module.BLOCK_ELEMENTS = default_block if b is None else b
                chunk_module.FORWARD_BLOCK_ELEMENTS = default_forward if b is None else b
                with torch.set_grad_enabled(mode == "forward+backward"):
                    start = time.perf_counter()
                    out = linear_attention(q, k, v, fm, causal=causal, chunk_size=c)
                    if mode == "forward+backward":
                        torch.autograd.grad(out, (q, k, v), grad)
                    best[(mode, causal, c, b)] = min(best[(mode, causal, c, b)], time.perf_counter() - start)
            log(f"  round {round_ + 1}/{repeats} done")
    finally:
        chunk_module.BLOCK_ELEMENTS, chunk_module.FORWARD_BLOCK_ELEMENTS = default_block, default_forward
    chunk_rows = [
        {"mode": mode, "chunk": c, "seconds": best[(mode, True, c, None)],
         "noncausal_seconds": best[(mode, False, None, None)]}
        for mode in MODES for c in chunks
    ]  # fmt: skip
    block_rows = [
        {"mode": mode, "causal": causal, "block_elements": b, "seconds": best[(mode, causal, DEFAULT_CHUNK_SIZE, b)]}
        for b in blocks for mode in MODES for causal in (False, True)
    ]  # fmt: skip
    for r in chunk_rows:
        log(f"  {r['mode']:<16} causal C={r['chunk']:<4}: {r['seconds'] * 1e3:8.2f} ms "
            f"(non-causal {r['noncausal_seconds'] * 1e3:.2f} ms)")  # fmt: skip
    for r in block_rows:
        log(f"  {r['mode']:<16} {'causal' if r['causal'] else 'non-causal':<10} block {r['block_elements']:>8}: "
            f"{r['seconds'] * 1e3:8.2f} ms")  # fmt: skip
    return {"length": length, "threads": torch.get_num_threads(), "repeats": repeats, "chunks": chunk_rows,
            "blocks": block_rows}  # fmt: skip


def run_all(runs_root: Path, quick: bool) -> None:
    root = Path(runs_root) / "attention"
    atomic_write_json(root / "theory.json", theory_results(quick))
    atomic_write_json(root / "error.json", error_results(quick))
