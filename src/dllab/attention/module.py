"""Multi-head attention with a switch between softmax attention and Taylor linear attention."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from dllab.attention.linear import TaylorState, linear_attention
from dllab.attention.softmax import softmax_attention
from dllab.attention.taylor.feature_map import TaylorFeatureMap

AttentionKind = Literal["softmax", "taylor"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention: softmax (torch SDPA) or Taylor linear attention, causal or not.

    Args:
        dim: model width E (input and output size); must be divisible by num_heads.
        num_heads: H; each head has D = dim // num_heads channels.
        kind: "softmax" -> softmax(q k^T / sqrt(D)) v; "taylor" -> linear attention with the K-term Taylor
            feature map of exp(q^T k / sqrt(D)), so both kinds approximate the same attention.
        causal: query i attends only to positions j <= i (self-attention; Taylor needs Lq == Lk).
        order: K, the number of Taylor terms (kind="taylor" only; K = 3 is the homework's 1 + t + t^2/2).
        projections: True -> learned q, k, v and output projections (nn.Linear, bias=`bias`);
            False -> none at all: q = x, k = v = context, the heads are slices of the channels and the output
            is the concatenation of the heads. Then MultiHeadAttention(dim, 1, projections=False)(x, ctx) is
            exactly softmax_attention(x, ctx, ctx) with scale 1/sqrt(dim), batched over B.
        identity_init: with projections=True, start every projection at the identity (and zero bias), so the
            untrained module equals the projections=False one while remaining trainable.
        bias: whether the projections have biases.
        chunk_size: the causal Taylor path's chunk size (None: the measured default).
        scale: multiplier of q^T k (default 1/sqrt(D)), for both kinds.

    forward(x, context=None, key_padding_mask=None):
        x: (B, Lq, E) queries. context: (B, Lk, E) keys/values for cross-attention; None -> self-attention.
        key_padding_mask: (B, Lk) bool, True marks padding positions of the keys to ignore.
        returns (B, Lq, E).

    step(x_t, cache=None) -> (y_t, cache): causal self-attention one token at a time, x_t (B, E) -> (B, E).
        The cache is a TaylorState (kind="taylor": constant size, O(M D) per token) or a (k, v) pair of
        (B, H, t, D) tensors (kind="softmax"). Matches forward(x, causal=True) row by row.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kind: AttentionKind = "softmax",
        causal: bool = False,
        order: int = 3,
        projections: bool = True,
        identity_init: bool = False,
        bias: bool = True,
        chunk_size: int | None = None,
        scale: float | None = None,
    ):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if not isinstance(num_heads, int) or num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads: must be a positive divisor of dim={dim}, got {num_heads!r}")
        if kind not in ("softmax", "taylor"):
            raise ValueError(f"kind: expected 'softmax' or 'taylor', got {kind!r}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.kind, self.causal, self.chunk_size = kind, causal, chunk_size
        self.scale = scale
        self.feature_map = TaylorFeatureMap(self.head_dim, order, scale) if kind == "taylor" else None
        self.projections = projections
        if projections:
            self.q_proj = nn.Linear(dim, dim, bias=bias)
            self.k_proj = nn.Linear(dim, dim, bias=bias)
            self.v_proj = nn.Linear(dim, dim, bias=bias)
            self.out_proj = nn.Linear(dim, dim, bias=bias)
            if identity_init:
                with torch.no_grad():
                    for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
                        layer.weight.copy_(torch.eye(dim))
                        if layer.bias is not None:
                            layer.bias.zero_()
        elif identity_init:
            raise ValueError("identity_init: needs projections=True (projections=False already means identity)")

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, kind={self.kind}, causal={self.causal}, "
            f"projections={self.projections}"
        )

    def _project(self, layer: str, x: Tensor) -> Tensor:
        return getattr(self, layer)(x) if self.projections else x

    def _split(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)  # (B, H, L, D)

    def _merge(self, x: Tensor) -> Tensor:
        return x.transpose(-3, -2).flatten(-2)  # (B, L, E)

    def forward(self, x: Tensor, context: Tensor | None = None, key_padding_mask: Tensor | None = None) -> Tensor:
        source = x if context is None else context
        for name, t in (("x", x), ("context", source)):
            if t.dim() != 3 or t.shape[-1] != self.dim:
                raise ValueError(f"{name}: expected shape (B, L, {self.dim}), got {tuple(t.shape)}")
        if source.shape[0] != x.shape[0]:
            raise ValueError(f"context: batch size {source.shape[0]} differs from x's {x.shape[0]}")
        q = self._split(self._project("q_proj", x))  # (B, H, Lq, D)
        k = self._split(self._project("k_proj", source))  # (B, H, Lk, D)
        v = self._split(self._project("v_proj", source))
        if self.kind == "softmax":
            z = softmax_attention(q, k, v, self.causal, key_padding_mask, self.scale)
        else:
            z = linear_attention(q, k, v, self.feature_map, self.causal, key_padding_mask, self.chunk_size)
        return self._project("out_proj", self._merge(z))

    def step(self, x_t: Tensor, cache: TaylorState | tuple[Tensor, Tensor] | None = None):
        """Causal self-attention for one new token x_t (B, E); returns (y_t (B, E), the updated cache)."""
        if x_t.dim() != 2 or x_t.shape[-1] != self.dim:
            raise ValueError(f"x_t: expected shape (B, {self.dim}), got {tuple(x_t.shape)}")
        x = x_t.unsqueeze(1)  # (B, 1, E)
        q = self._split(self._project("q_proj", x))  # (B, H, 1, D)
        k = self._split(self._project("k_proj", x))
        v = self._split(self._project("v_proj", x))
        if self.kind == "taylor":
            if cache is None:
                cache = TaylorState.zeros(self.feature_map, q.shape[:2], self.head_dim, q.dtype, q.device)
            cache = cache.update(k[..., 0, :], v[..., 0, :], self.feature_map)
            z = cache.read(q, self.feature_map)  # (B, H, 1, D)
        else:
            if cache is not None:
                k, v = torch.cat([cache[0], k], dim=-2), torch.cat([cache[1], v], dim=-2)
            cache = (k, v)
            z = softmax_attention(q, k, v, scale=self.scale)
        return self._project("out_proj", self._merge(z))[:, 0], cache
