"""Attention kernels: softmax attention (fused and naive) and Taylor linear attention (2023-24 Question 1).

- `softmax_attention` / `naive_softmax_attention`: softmax(scale q k^T) v, fused (torch SDPA) and L x L.
- `TaylorFeatureMap`: phi with phi(q)^T phi(k) = sum_{n<K} (scale q^T k)^n / n!; `feature_dim(D, K)` = M.
- `linear_attention`: D^-1 Phi(Q) Phi(K)^T V, non-causal or causal (chunked), O(L M D);
  `naive_linear_attention` and `recurrent_linear_attention` are its reference twins.
- `TaylorState` + `linear_attention_step`: token-by-token causal decoding with a constant-size state.
- `MultiHeadAttention`: an nn.Module switching between softmax and Taylor attention.
"""

from dllab.attention.feature_map import TaylorFeatureMap, feature_dim, outer_feature_dim
from dllab.attention.linear import (
    TaylorState,
    linear_attention,
    linear_attention_step,
    naive_linear_attention,
    recurrent_linear_attention,
)
from dllab.attention.module import MultiHeadAttention
from dllab.attention.softmax import naive_softmax_attention, softmax_attention

__all__ = [
    "MultiHeadAttention",
    "TaylorFeatureMap",
    "TaylorState",
    "feature_dim",
    "linear_attention",
    "linear_attention_step",
    "naive_linear_attention",
    "naive_softmax_attention",
    "outer_feature_dim",
    "recurrent_linear_attention",
    "softmax_attention",
]
