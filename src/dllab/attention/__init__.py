"""Attention kernels: softmax attention (fused and naive) and, later, Taylor linear attention."""

from dllab.attention.softmax import naive_softmax_attention, softmax_attention

__all__ = ["softmax_attention", "naive_softmax_attention"]
