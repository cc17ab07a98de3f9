"""Which Taylor linear-attention kernels run: the one place that chooses.

- "fused": the compiled loops of `dllab.attention.taylor.fused` (a compact TaylorFeatureMap with K = 2 or
  3, on the CPU in float32 / float64, once native.c compiled; causal also needs D <= 32 and Dv <= 32);
- "plain": `dllab.attention.taylor.chunk`, the same algorithm in plain PyTorch, for everything else (any
  feature map, K, device or dtype), and everywhere with DLLAB_NATIVE=0.

`kernel_path(...)` says which one a call takes, `status()` whether the fused kernels are available at all
(the benchmarks print it on their machine line). Both return the same results to rounding; the tests hold
each to the naive twins.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from dllab.attention.taylor.chunk import FeatureMap, chunked_attention
from dllab.attention.taylor.feature_map import TaylorFeatureMap
from dllab.attention.taylor.fused import chunk as fused
from dllab.attention.taylor.fused import native


def kernel_path(feature_map: FeatureMap, q: Tensor, v: Tensor, causal: bool) -> Literal["fused", "plain"]:
    """ "fused" or "plain": the kernels `linear_attention(q, k, v, feature_map, causal)` runs on."""
    if isinstance(feature_map, TaylorFeatureMap) and fused.applies(feature_map, q, v.shape[-1], causal):
        return "fused"
    return "plain"


def status() -> str:
    """One line: whether the fused kernels are on (compact K <= 3 maps on the CPU take them), or why not."""
    if native.library() is not None:
        return f"Taylor attention: fused kernels (native.c {native.status()})"
    return f"Taylor attention: plain PyTorch kernels, fused {native.status()}"


def taylor_attention(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, feature_map: FeatureMap, causal: bool, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised output (..., Lq, Dv), contiguous, and the final state kv (..., M, Dv), k_sum (..., M).

    q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv); keep (B, Lk) float, 1 for real keys and 0 for padding,
    or None (q is then (B, ..., Lq, D))."""
    batch = q.shape[:-2]
    flat = [t.reshape(-1, *t.shape[-2:]) for t in (q, k, v)]  # (N, L, X), N = batch x heads
    if keep is not None:
        per_key = keep.reshape(keep.shape[0], *([1] * (len(batch) - 1)), keep.shape[-1])
        keep = per_key.expand(*batch, keep.shape[-1]).reshape(-1, keep.shape[-1]).to(q.dtype)
    run = fused.fused_attention if kernel_path(feature_map, q, v, causal) == "fused" else chunked_attention
    out, kv, k_sum = run(*flat, keep, feature_map, causal, chunk)
    return out.reshape(*batch, *out.shape[-2:]), kv.reshape(*batch, *kv.shape[-2:]), k_sum.reshape(*batch, -1)
