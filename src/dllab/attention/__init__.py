"""Attention kernels: softmax attention (fused and naive) and Taylor linear attention (2023-24 Question 1).

- `softmax_attention` / `naive_softmax_attention`: softmax(scale q k^T) v, fused (torch SDPA) and L x L.
- `TaylorFeatureMap`: phi with phi(q)^T phi(k) = sum_{n<K} (scale q^T k)^n / n!; `feature_dim(D, K)` = M.
- `linear_attention`: D^-1 Phi(Q) Phi(K)^T V, non-causal or causal (chunked), O(L M D);
  `naive_linear_attention` and `recurrent_linear_attention` are its reference twins.
- `kernel_path(feature_map, q, v, causal)`: "fused" (the compiled kernels) or "plain" (PyTorch), the path
  `linear_attention` takes; `DLLAB_NATIVE=0` turns the fused one off.
- `TaylorState` + `linear_attention_step`: token-by-token causal decoding with a constant-size state.
- `MultiHeadAttention`: an nn.Module switching between softmax and Taylor attention.

Where things live: `linear.py` (the front-end), `taylor/` (feature map, naive twins, the plain chunked
algorithm, the fused kernels in `taylor/fused/`, and `taylor/dispatch.py` choosing between them),
`softmax.py`, `module.py`; then the capability's `cli`, `experiment`, `theory`, `bench`, `plots`, `report`.
"""

from dllab.lazy import lazy_exports

# Exports load lazily (PEP 562), so `dllab --help` can import dllab.attention.cli without importing torch.
_EXPORTS = {
    "MultiHeadAttention": "module",
    "TaylorFeatureMap": "taylor.feature_map",
    "TaylorState": "linear",
    "feature_dim": "taylor.feature_map",
    "kernel_path": "taylor.dispatch",
    "linear_attention": "linear",
    "linear_attention_step": "linear",
    "naive_linear_attention": "taylor.naive",
    "naive_softmax_attention": "softmax",
    "outer_feature_dim": "taylor.feature_map",
    "recurrent_linear_attention": "taylor.naive",
    "softmax_attention": "softmax",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
