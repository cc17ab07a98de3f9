"""Linear attention Z = D^-1 Phi(Q) Phi(K)^T V with D = Diag(Phi(Q) Phi(K)^T 1): the front-end. Non-causal,
causal (chunked), and a recurrent step for token-by-token decoding.

Shapes follow torch's SDPA: q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv), usually (B, H, L, D).
`feature_map` is any callable (..., D) -> (..., M); a `TaylorFeatureMap` (it has `series` and `num_features`)
also lets the causal path score inside a chunk from q k^T directly, and the memory check know M up front.

Cost with M features: non-causal O(L M Dv) (two (M x L)(L x Dv) products); causal chunked with chunk size C
O(L M Dv + L C D) (per chunk a prefix-state read, a state update and a masked C x C block). This module
checks the inputs and hands the work to `dllab.attention.taylor.dispatch`, which runs the fused compiled
kernels where they apply and the plain PyTorch algorithm (`dllab.attention.taylor.chunk`) elsewhere; both
are blockwise, so features are never stored for the whole sequence.

The normaliser Phi(Q) Phi(K)^T 1 is computed with the numerator (a column of ones next to V, or the
running sum k_sum), and a padding key is removed exactly by giving it zero weight in both. With an even
number of Taylor terms the normaliser can be ~0 or negative (see `dllab.attention.taylor.feature_map`);
nothing is clamped, so that shows up in the output instead of being hidden.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from dllab.attention.taylor import chunk as chunk_module
from dllab.attention.taylor.dispatch import taylor_attention
from dllab.attention.taylor.inputs import FeatureMap, check_inputs  # noqa: F401 (part of this face)

# Chosen by measurement on the 2-core CPU (`dllab attention tune`; B=1, H=4, D=16, K=3, L=16,384): C = 64 was
# the fastest of 16..256 forward and forward + backward (32: more chunk states; 128+: a costlier C x C block).
DEFAULT_CHUNK_SIZE = 64


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on `device`, or None when unknown (the check is then skipped)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _check_memory(feature_map: FeatureMap, q: Tensor, k: Tensor, v: Tensor, causal: bool, chunk: int) -> None:
    """Refuse, before allocating anything of size L x M or N x M x T, a call that cannot fit in memory."""
    m = getattr(feature_map, "num_features", None)
    if m is None:
        return
    batch = math.prod(q.shape[:-2])
    lq, lk, d, dv = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    elements = None if causal else max(chunk_module.BLOCK_ELEMENTS, chunk_module.FORWARD_BLOCK_ELEMENTS)
    tokens = chunk_module.block_tokens(batch, m, chunk if causal else 1, max(lq, lk), elements)
    elements = 3 * batch * m * tokens  # a block's features (twice when causal) and their gradients
    elements += batch * lq * (2 * dv + 1) + batch * lk * (2 * d + dv + 1)  # outputs, padded copies
    states = math.ceil(lk / tokens) if causal else 2  # the state entering each causal block
    elements += batch * m * (dv + 1) * (states + 4)
    needed = 2 * elements * q.element_size()  # autograd keeps about as much again for backward
    if needed < 1 << 28:  # below 256 MiB: not worth reading the system's free memory on every call
        return
    free = available_memory(q.device)
    if free is not None and needed > free:
        raise ValueError(
            f"feature_map: M={m:,} features per token; blocks of {tokens:,} tokens and the outputs for {batch} x "
            f"{max(lq, lk):,} tokens need about {needed / 2**30:.1f} GiB, but only {free / 2**30:.1f} GiB is "
            f"available on {q.device}; use a smaller order (K), head dimension, batch or sequence length"
        )


# -- the recurrent state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaylorState:
    """What causal linear attention remembers after t tokens: two running sums, per batch and head.

    kv:    (..., M, Dv)  sum_{j<=t} phi(k_j) v_j^T
    k_sum: (..., M)      sum_{j<=t} phi(k_j)        (the normaliser's state)
    steps: t, the number of tokens absorbed (informational)

    The state has a fixed size whatever t is: decoding costs O(M Dv) per token instead of the O(t D) of a
    softmax KV cache. States are immutable; `update` returns a new one, so a beam search can keep several.
    """

    kv: Tensor
    k_sum: Tensor
    steps: int = 0

    @classmethod
    def zeros(
        cls,
        feature_map: FeatureMap,
        batch_shape: tuple[int, ...],
        value_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> TaylorState:
        """The empty state for `batch_shape` (usually (B, H)); needs `feature_map.num_features`."""
        m = getattr(feature_map, "num_features", None)
        if m is None:
            raise ValueError("feature_map: needs a num_features attribute to build an empty state")
        kv = torch.zeros(*batch_shape, m, value_dim, dtype=dtype, device=device)
        return cls(kv, torch.zeros(*batch_shape, m, dtype=dtype, device=device), 0)

    @classmethod
    def from_keys_values(
        cls, k: Tensor, v: Tensor, feature_map: FeatureMap, key_padding_mask: Tensor | None = None
    ) -> TaylorState:
        """The state after all of k (..., L, D), v (..., L, Dv): for cross-attention to a fixed memory
        (an encoder output) read it with `read` at every decoding step."""
        # the memory, read by one throw-away query
        return linear_attention(k[..., :1, :], k, v, feature_map, False, key_padding_mask, return_state=True)[1]

    def update(self, k_t: Tensor, v_t: Tensor, feature_map: FeatureMap) -> TaylorState:
        """Absorb one token: k_t (..., D), v_t (..., Dv) -> the state after t + 1 tokens."""
        phi_k = feature_map(k_t)  # (..., M)
        return TaylorState(self.kv + phi_k.unsqueeze(-1) * v_t.unsqueeze(-2), self.k_sum + phi_k, self.steps + 1)

    def read(self, q_t: Tensor, feature_map: FeatureMap) -> Tensor:
        """Attention output of queries q_t (..., D) or (..., Lq, D) against the absorbed tokens."""
        phi_q = feature_map(q_t)
        if q_t.dim() == self.kv.dim() - 1:  # one token per (batch, head): (..., D)
            num = (phi_q.unsqueeze(-2) @ self.kv).squeeze(-2)  # (..., Dv)
            den = (phi_q * self.k_sum).sum(-1, keepdim=True)  # (..., 1)
        else:  # (..., Lq, D)
            num = phi_q @ self.kv
            den = phi_q @ self.k_sum.unsqueeze(-1)
        return num / den


def linear_attention_step(
    q_t: Tensor, k_t: Tensor, v_t: Tensor, state: TaylorState | None, feature_map: FeatureMap
) -> tuple[Tensor, TaylorState]:
    """One decoding step of causal linear attention: absorb (k_t, v_t), then read with q_t.

    Args:
        q_t, k_t: (..., D) the current token's query and key, e.g. (B, H, D).
        v_t: (..., Dv) its value.
        state: the state after the previous tokens, or None for the first token.
        feature_map: the map used for the whole sequence (e.g. TaylorFeatureMap(D, order=3)).
    Returns:
        out (..., Dv), equal to row t of linear_attention(q, k, v, feature_map, causal=True); the new state.
    """
    for name, t in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        if not isinstance(t, Tensor) or t.dim() < 1 or not t.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor of shape (..., D)")
    if q_t.shape != k_t.shape:
        raise ValueError(f"k_t: expected the shape of q_t {tuple(q_t.shape)}, got {tuple(k_t.shape)}")
    if v_t.shape[:-1] != q_t.shape[:-1]:
        raise ValueError(f"v_t: leading dimensions must match q_t's {tuple(q_t.shape[:-1])}, got {tuple(v_t.shape)}")
    if not (q_t.dtype == k_t.dtype == v_t.dtype):
        raise ValueError(f"q_t, k_t, v_t: must share a dtype, got {q_t.dtype}, {k_t.dtype}, {v_t.dtype}")
    if state is None:
        state = TaylorState.zeros(feature_map, tuple(q_t.shape[:-1]), v_t.shape[-1], q_t.dtype, q_t.device)
    elif state.kv.shape[:-2] != q_t.shape[:-1] or state.kv.shape[-1] != v_t.shape[-1]:
        raise ValueError(
            f"state: holds (..., M, Dv) = {tuple(state.kv.shape)}, which does not fit q_t {tuple(q_t.shape)} "
            f"and v_t {tuple(v_t.shape)}"
        )
    state = state.update(k_t, v_t, feature_map)
    return state.read(q_t, feature_map), state


# -- the whole sequence --------------------------------------------------------------------------------


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    feature_map: FeatureMap,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    chunk_size: int | None = None,
    return_state: bool = False,
) -> Tensor | tuple[Tensor, TaylorState]:
    """Z = D^-1 Phi(Q) Phi(K)^T V in time linear in L.

    Args:
        q: (..., Lq, D); k: (..., Lk, D); v: (..., Lk, Dv). float32 or float64, any device, differentiable.
        feature_map: e.g. TaylorFeatureMap(D, order=3); phi(q)^T phi(k) replaces exp(scale q^T k).
        causal: query i sees keys j <= i (needs Lq == Lk); computed in chunks of `chunk_size` tokens: a
            masked C x C block inside each chunk plus a running prefix state across chunks.
        key_padding_mask: (B, Lk) bool, True marks padding keys to ignore (q must then be (B, H, Lq, D)).
        chunk_size: C for the causal path (default DEFAULT_CHUNK_SIZE, chosen by measurement).
        return_state: also return the TaylorState after all keys, to continue with linear_attention_step.
    Returns:
        (..., Lq, Dv), contiguous, and the TaylorState when return_state. Which kernels ran (fused or
        plain) is `dllab.attention.kernel_path(feature_map, q, v, causal)`.
    """
    check_inputs(q, k, v, feature_map, key_padding_mask)
    chunk = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"causal: causal linear attention needs as many queries as keys, got Lq={q.shape[-2]}, Lk={k.shape[-2]}"
        )
    _check_memory(feature_map, q, k, v, causal, chunk)
    keep = None if key_padding_mask is None else ~key_padding_mask.bool()
    out, kv, k_sum = taylor_attention(q, k, v, keep, feature_map, causal, chunk)
    if return_state:
        return out, TaylorState(kv, k_sum, k.shape[-2])
    return out
