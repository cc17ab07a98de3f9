"""Linear attention Z = D^-1 Phi(Q) Phi(K)^T V with D = Diag(Phi(Q) Phi(K)^T 1): non-causal, causal chunked,
and a recurrent step for token-by-token decoding. Each fast path has a naive twin for the tests.

Shapes follow torch's SDPA: q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv), usually (B, H, L, D).
`feature_map` is any callable (..., D) -> (..., M); a `TaylorFeatureMap` (it has `series` and `num_features`)
also lets the causal path score inside a chunk from q k^T directly, and the memory check know M up front.

Cost with M features: non-causal O(L M Dv) (two (M x L)(L x Dv) products); causal chunked with chunk size C
O(L M Dv + L C D) (per chunk a prefix-state read, a state update and a masked C x C block). A
`TaylorFeatureMap` runs on the blockwise kernels of `dllab.attention.chunk` (features never stored for the
whole sequence); any other map runs the same algorithm through plain autograd.

The normaliser Phi(Q) Phi(K)^T 1 is computed with the numerator (a column of ones next to V, or the
running sum k_sum), and a padding key is removed exactly by giving it zero weight in both. With an even
number of Taylor terms the normaliser can be ~0 or negative (see `dllab.attention.feature_map`); nothing is
clamped, so that shows up in the output instead of being hidden.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from dllab.attention import chunk as chunk_module
from dllab.attention.chunk import block_tokens, taylor_attention
from dllab.attention.feature_map import TaylorFeatureMap

FeatureMap = Callable[[Tensor], Tensor]

# Chosen by measurement on the 2-core CPU (`dllab attention tune`; B=1, H=4, D=16, K=3, L=16,384): C = 64 was
# the fastest of 16..256 forward and forward + backward (32: more chunk states; 128+: a costlier C x C block).
DEFAULT_CHUNK_SIZE = 64


# -- input checks (before anything of size L x M is allocated) ------------------------------------------


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap) -> None:
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


def _check_padding_mask(mask: Tensor | None, k: Tensor) -> None:
    if mask is None:
        return
    if mask.dim() != 2 or k.dim() < 3 or mask.shape != (k.shape[0], k.shape[-2]):
        raise ValueError(
            f"key_padding_mask: expected shape (B, Lk) = ({k.shape[0]}, {k.shape[-2]}) for keys of shape "
            f"{tuple(k.shape)}, got {tuple(mask.shape)}"
        )


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
    if isinstance(feature_map, TaylorFeatureMap):  # the blockwise kernels (dllab.attention.chunk)
        elements = None if causal else max(chunk_module.BLOCK_ELEMENTS, chunk_module.FORWARD_BLOCK_ELEMENTS)
        tokens = block_tokens(batch, m, chunk if causal else 1, max(lq, lk), elements)
        elements = 3 * batch * m * tokens  # a block's features (twice when causal) and their gradients
        elements += batch * lq * (2 * dv + 1) + batch * lk * (2 * d + dv + 1)  # outputs, padded copies
        states = math.ceil(lk / tokens) if causal else 2  # the state entering each causal block
        elements += batch * m * (dv + 1) * (states + 4)
        what = f"blocks of {tokens:,} tokens and the outputs"
    else:  # the plain path materialises Phi(Q) and Phi(K)
        elements = batch * (lq + lk) * m + batch * m * (dv + 1) * (math.ceil(lk / chunk) if causal else 1)
        what = "Phi(Q) and Phi(K)"
    needed = 2 * elements * q.element_size()  # autograd keeps about as much again for backward
    if needed < 1 << 28:  # below 256 MiB: not worth reading the system's free memory on every call
        return
    free = available_memory(q.device)
    if free is not None and needed > free:
        raise ValueError(
            f"feature_map: M={m:,} features per token; {what} for {batch} x {max(lq, lk):,} tokens need about "
            f"{needed / 2**30:.1f} GiB, but only {free / 2**30:.1f} GiB is available on {q.device}; "
            "use a smaller order (K), head dimension, batch or sequence length"
        )


def _values_with_ones(v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """V' = [V, 1] (..., Lk, Dv + 1), with the rows of padding keys zeroed."""
    v1 = F.pad(v, (0, 1), value=1.0)
    if key_padding_mask is not None:
        keep = (~key_padding_mask.bool()).to(v.dtype)  # (B, Lk)
        v1 = v1 * keep.reshape(keep.shape[0], *([1] * (v.dim() - 3)), keep.shape[1], 1)
    return v1


def _normalise(out: Tensor) -> Tensor:
    """(..., L, Dv + 1) numerator and normaliser -> (..., L, Dv)."""
    return out[..., :-1] / out[..., -1:]


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
        _check_qkv(k, k, v, feature_map)
        _check_padding_mask(key_padding_mask, k)
        if isinstance(feature_map, TaylorFeatureMap):  # the blockwise kernel, read by one throw-away query
            return linear_attention(k[..., :1, :], k, v, feature_map, False, key_padding_mask, return_state=True)[1]
        kv1 = feature_map(k).transpose(-2, -1) @ _values_with_ones(v, key_padding_mask)  # (..., M, Dv + 1)
        return cls(kv1[..., :-1].contiguous(), kv1[..., -1].contiguous(), k.shape[-2])

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


# -- the fast paths ------------------------------------------------------------------------------------


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
        (..., Lq, Dv), and the TaylorState when return_state. With a TaylorFeatureMap the output is a
        transposed view of (..., Dv, Lq) storage, not contiguous (the kernels write it faster that way): use
        `.reshape` or `.contiguous()` rather than `.view` on it.
    """
    _check_qkv(q, k, v, feature_map)
    _check_padding_mask(key_padding_mask, k)
    chunk = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"causal: causal linear attention needs as many queries as keys, got Lq={q.shape[-2]}, Lk={k.shape[-2]}"
        )
    _check_memory(feature_map, q, k, v, causal, chunk)
    if isinstance(feature_map, TaylorFeatureMap):
        keep = None if key_padding_mask is None else ~key_padding_mask.bool()
        out, kv, k_sum = taylor_attention(q, k, v, keep, feature_map, causal, chunk)
    else:  # any other feature map: plain autograd through the same algorithm
        v1 = _values_with_ones(v, key_padding_mask)  # (..., Lk, Dv + 1)
        if causal:
            out, kv1 = _causal_chunked(q, k, v1, feature_map, chunk)
        else:
            kv1 = feature_map(k).transpose(-2, -1) @ v1  # (..., M, Dv + 1)
            out = feature_map(q) @ kv1  # (..., Lq, Dv + 1)
        out, kv, k_sum = _normalise(out), kv1[..., :-1], kv1[..., -1]
    if return_state:
        return out, TaylorState(kv, k_sum, k.shape[-2])
    return out


def _causal_chunked(q: Tensor, k: Tensor, v1: Tensor, feature_map: FeatureMap, chunk: int) -> tuple[Tensor, Tensor]:
    """Causal numerator and normaliser (..., L, Dv + 1), and the final state (..., M, Dv + 1).

    All chunks are processed at once (no Python loop over chunks): per-chunk states by one batched product,
    an exclusive cumulative sum over chunks, then a read of the prefix state plus the masked in-chunk block.
    """
    length = q.shape[-2]
    chunk = min(chunk, length)
    pad = -length % chunk
    if pad:  # zero rows of V' make padded keys contribute nothing; padded queries are dropped at the end
        q, k, v1 = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v1))
    n = q.shape[-2] // chunk
    qc = q.unflatten(-2, (n, chunk))  # (..., N, C, D)
    kc = k.unflatten(-2, (n, chunk))
    vc = v1.unflatten(-2, (n, chunk))  # (..., N, C, Dv + 1)
    phi_k = feature_map(kc)  # (..., N, C, M)
    chunk_kv = phi_k.transpose(-2, -1) @ vc  # (..., N, M, Dv + 1)
    total = chunk_kv.cumsum(dim=-3)
    prefix = F.pad(total[..., :-1, :, :], (0, 0, 0, 0, 1, 0))  # state before each chunk
    out = feature_map(qc) @ prefix  # (..., N, C, Dv + 1)
    series = getattr(feature_map, "series", None)
    if series is not None:  # phi(q)^T phi(k) is the truncated series of q^T k: C x C x D, not C x C x M
        scores = series(qc @ kc.transpose(-2, -1))  # (..., N, C, C)
    else:
        scores = feature_map(qc) @ phi_k.transpose(-2, -1)
    mask = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    out = out + scores.masked_fill(~mask, 0.0) @ vc
    out = out.flatten(-3, -2)[..., :length, :]
    return out, total[..., -1, :, :]


# -- the naive twins (tests only: they build the L x L matrix) ------------------------------------------


def naive_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    feature_map: FeatureMap,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """The formula as written: A = Phi(Q) Phi(K)^T (masked), Z = Diag(A 1)^-1 A V. O(L^2 M)."""
    _check_qkv(q, k, v, feature_map)
    _check_padding_mask(key_padding_mask, k)
    a = feature_map(q) @ feature_map(k).transpose(-2, -1)  # (..., Lq, Lk)
    if causal:
        a = a.tril()
    if key_padding_mask is not None:
        keep = ~key_padding_mask.bool()
        a = a * keep.reshape(keep.shape[0], *([1] * (a.dim() - 2)), keep.shape[1]).to(a.dtype)
    return (a @ v) / a.sum(dim=-1, keepdim=True)


def recurrent_linear_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap) -> Tensor:
    """Causal linear attention token by token through `linear_attention_step` (the chunked twin)."""
    _check_qkv(q, k, v, feature_map)
    state, outs = None, []
    for t in range(q.shape[-2]):
        out, state = linear_attention_step(q[..., t, :], k[..., t, :], v[..., t, :], state, feature_map)
        outs.append(out)
    return torch.stack(outs, dim=-2)
