"""Attention kernels: softmax attention (fused and naive) and Taylor linear attention (2023-24 Question 1).

- `softmax_attention` / `naive_softmax_attention`: softmax(scale q k^T) v, fused (torch SDPA) and L x L.
- `TaylorFeatureMap`: phi with phi(q)^T phi(k) = sum_{n<K} (scale q^T k)^n / n!; `feature_dim(D, K)` = M.
- `linear_attention`: D^-1 Phi(Q) Phi(K)^T V, non-causal or causal (chunked), O(L M D);
  `naive_linear_attention` and `recurrent_linear_attention` are its reference twins.
- `TaylorState` + `linear_attention_step`: token-by-token causal decoding with a constant-size state.
- `MultiHeadAttention`: an nn.Module switching between softmax and Taylor attention.
"""

from dllab.lazy import lazy_exports

# Exports load lazily (PEP 562), so `dllab --help` can import dllab.attention.cli without importing torch.
_EXPORTS = {
    "MultiHeadAttention": "module",
    "TaylorFeatureMap": "feature_map",
    "TaylorState": "linear",
    "feature_dim": "feature_map",
    "linear_attention": "linear",
    "linear_attention_step": "linear",
    "naive_linear_attention": "linear",
    "naive_softmax_attention": "softmax",
    "outer_feature_dim": "feature_map",
    "recurrent_linear_attention": "linear",
    "softmax_attention": "softmax",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
