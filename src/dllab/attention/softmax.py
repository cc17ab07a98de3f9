"""Softmax attention: the fast path on torch's scaled_dot_product_attention and a naive L x L reference."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(
            f"q, k, v must have the same rank >= 2, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last (feature) dimension, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length, got {k.shape[-2]} and {v.shape[-2]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")


def _bool_mask(lq: int, lk: int, causal: bool, key_padding_mask: Tensor | None, device: torch.device) -> Tensor | None:
    """A boolean mask, True where attention is allowed, broadcastable to (..., Lq, Lk)."""
    mask = None
    if causal:
        # Query i sees keys j <= i + (lk - lq): aligned at the end, as when decoding with a prefix cache.
        mask = torch.ones(lq, lk, dtype=torch.bool, device=device).tril(diagonal=lk - lq)
    if key_padding_mask is not None:
        # key_padding_mask: (B, Lk), True where the key is padding (torch.nn.MultiheadAttention convention).
        keep = ~key_padding_mask.bool()
        keep = keep.reshape(keep.shape[0], 1, 1, keep.shape[-1])  # (B, 1, 1, Lk)
        mask = keep if mask is None else mask & keep
    return mask


def softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """softmax(scale * q k^T) v through torch's fused scaled_dot_product_attention.

    Args:
        q: (..., Lq, D) queries; k: (..., Lk, D) keys; v: (..., Lk, Dv) values.
        causal: query i attends to keys j <= i (aligned at the end when Lk > Lq).
        key_padding_mask: (B, Lk) bool, True marks padding keys to ignore; q must then be (B, H, Lq, D).
        scale: multiplier of q k^T; default 1/sqrt(D).
    Returns:
        (..., Lq, Dv)
    """
    _check(q, k, v)
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # Under CPU autocast, SDPA runs its bfloat16 flash kernel, whose backward is slower than two
        # bfloat16 matmuls (AMX) around a float32 softmax: `dllab bench asr` times the training step.
        return naive_softmax_attention(q, k, v, causal, key_padding_mask, scale)
    if key_padding_mask is None and (not causal or q.shape[-2] == k.shape[-2]):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    mask = _bool_mask(q.shape[-2], k.shape[-2], causal, key_padding_mask, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def naive_softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """The textbook form, building the full (..., Lq, Lk) score matrix; the reference for tests, and the
    path under CPU autocast (matmuls in bfloat16, the softmax in at least float32)."""
    _check(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = scale * q @ k.transpose(-2, -1)  # (..., Lq, Lk)
    mask = _bool_mask(q.shape[-2], k.shape[-2], causal, key_padding_mask, q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
    return probs.to(v.dtype) @ v
