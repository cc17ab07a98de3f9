"""The naive twins of linear attention, for the tests: the formula as written, and the recurrence.

Both take any feature map and are deliberately simple: the quadratic twin builds the L x L matrix
(O(L^2 M)), the recurrent one walks the tokens one by one. `linear_attention` (`dllab.attention.linear`) must
match them in outputs and gradients on every path it can take.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dllab.attention.taylor.inputs import FeatureMap, check_inputs


def naive_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    feature_map: FeatureMap,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """A = Phi(Q) Phi(K)^T (masked), Z = Diag(A 1)^-1 A V: q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv)
    -> (..., Lq, Dv). key_padding_mask (B, Lk) bool, True for padding keys."""
    check_inputs(q, k, v, feature_map, key_padding_mask)
    a = feature_map(q) @ feature_map(k).transpose(-2, -1)  # (..., Lq, Lk)
    if causal:
        a = a.tril()
    if key_padding_mask is not None:
        keep = ~key_padding_mask.bool()
        a = a * keep.reshape(keep.shape[0], *([1] * (a.dim() - 2)), keep.shape[1]).to(a.dtype)
    return (a @ v) / a.sum(dim=-1, keepdim=True)


def recurrent_linear_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap) -> Tensor:
    """Causal linear attention token by token: S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t),
    out_t = phi(q_t)^T S_t / phi(q_t)^T z_t. q, k (..., L, D), v (..., L, Dv) -> (..., L, Dv)."""
    check_inputs(q, k, v, feature_map)
    phi_q, phi_k = feature_map(q), feature_map(k)  # (..., L, M)
    kv = q.new_zeros(*phi_k.shape[:-2], phi_k.shape[-1], v.shape[-1])  # (..., M, Dv)
    k_sum = q.new_zeros(*phi_k.shape[:-2], phi_k.shape[-1])  # (..., M)
    outs = []
    for t in range(q.shape[-2]):
        kv = kv + phi_k[..., t, :, None] * v[..., t, None, :]
        k_sum = k_sum + phi_k[..., t, :]
        numerator = (phi_q[..., t, None, :] @ kv).squeeze(-2)  # (..., Dv)
        outs.append(numerator / (phi_q[..., t, :] * k_sum).sum(-1, keepdim=True))
    return torch.stack(outs, dim=-2)
