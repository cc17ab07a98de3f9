"""What every linear-attention path checks before anything of size L x M is allocated: the inputs' shapes,
dtypes and devices, the feature map's dimension, the padding mask. Shared by the front-end
(`dllab.attention.linear`) and the naive twins (`naive.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

FeatureMap = Callable[[Tensor], Tensor]


def check_inputs(
    q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap, key_padding_mask: Tensor | None = None
) -> None:
    """ValueError (or TypeError) naming the argument, for inputs linear attention cannot take."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name}: expected shape (..., L, D) with at least 2 dimensions, got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v: must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v: must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"k: last dimension must equal q's ({q.shape[-1]}), got shape {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"v: length must equal k's ({k.shape[-2]}), got shape {tuple(v.shape)}")
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"q, k, v: leading (batch, head) dimensions differ: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    map_dim = getattr(feature_map, "dim", None)
    if map_dim is not None and map_dim != q.shape[-1]:
        raise ValueError(f"feature_map: built for dim={map_dim}, but q and k have last dimension {q.shape[-1]}")
    mask = key_padding_mask
    if mask is not None and (mask.dim() != 2 or k.dim() < 3 or mask.shape != (k.shape[0], k.shape[-2])):
        raise ValueError(
            f"key_padding_mask: expected shape (B, Lk) = ({k.shape[0]}, {k.shape[-2]}) for keys of shape "
            f"{tuple(k.shape)}, got {tuple(mask.shape)}"
        )
