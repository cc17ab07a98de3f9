"""`HopfieldRetrieval`: a Hopfield retrieval layer whose softmax step is dllab's softmax attention."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dllab.attention import softmax_attention


class HopfieldRetrieval(nn.Module):
    """Retrieve from stored patterns with `steps` CCCP updates, optionally in learned projected spaces.

    Without projections, forward(q, X) applies q <- X^T softmax(beta X q) `steps` times, i.e. equals
    `dllab.hopfield.retrieve(q, X, beta, max_steps=steps, tol=0).state`. With projections (Ramsauer et al.'s
    Hopfield layer) the states live in a key space: q = W_Q r, k = W_K y, v = W_V y; the first steps - 1
    updates are q <- softmax(beta q k^T) k (retrieval among the projected patterns) and the last one reads the
    values, softmax(beta q k^T) v.

    Args:
        dim: D, the width of the queries and the stored patterns.
        num_patterns: when given, the module owns N = num_patterns learned patterns (an (N, D) parameter) used
            whenever forward() gets no patterns.
        beta: the inverse temperature (default 1/sqrt(D), the attention scale).
        steps: the number of updates per forward (>= 1).
        projections: learned W_Q, W_K, W_V (D x D, no bias), initialised at the identity.

    forward(query, patterns=None):
        query: (B, L, D) or (B, D) states; patterns: (B, N, D) per-example or (N, D) shared; None -> the
        learned patterns. Returns the same shape as query.
    """

    def __init__(
        self,
        dim: int,
        num_patterns: int | None = None,
        beta: float | None = None,
        steps: int = 1,
        projections: bool = False,
    ):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if num_patterns is not None and (not isinstance(num_patterns, int) or num_patterns < 1):
            raise ValueError(f"num_patterns: expected a positive integer or None, got {num_patterns!r}")
        beta = 1.0 / math.sqrt(dim) if beta is None else beta
        if not isinstance(beta, int | float) or not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"beta: the inverse temperature must be a finite number > 0, got {beta!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
        self.dim, self.beta, self.steps, self.projections = dim, float(beta), steps, projections
        self.patterns = nn.Parameter(torch.randn(num_patterns, dim)) if num_patterns is not None else None
        if projections:
            self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim, bias=False) for _ in range(3))
            with torch.no_grad():
                for layer in (self.q_proj, self.k_proj, self.v_proj):
                    layer.weight.copy_(torch.eye(dim))

    def extra_repr(self) -> str:
        n = None if self.patterns is None else self.patterns.shape[0]
        proj = self.projections
        return f"dim={self.dim}, num_patterns={n}, beta={self.beta:.4g}, steps={self.steps}, projections={proj}"

    def forward(self, query: Tensor, patterns: Tensor | None = None) -> Tensor:
        if patterns is None:
            if self.patterns is None:
                raise ValueError("patterns: none given and the module has no learned patterns (num_patterns)")
            patterns = self.patterns
        d = self.dim
        if query.dim() not in (2, 3) or query.shape[-1] != d:
            raise ValueError(f"query: expected (B, L, {d}) or (B, {d}), got {tuple(query.shape)}")
        if patterns.dim() not in (2, 3) or patterns.shape[-1] != self.dim or patterns.shape[-2] == 0:
            raise ValueError(
                f"patterns: expected a non-empty (B, N, {self.dim}) or (N, {self.dim}), "
                f"got {tuple(patterns.shape)}"
            )
        if patterns.dim() == 3 and patterns.shape[0] != query.shape[0]:
            raise ValueError(f"patterns: batch {patterns.shape[0]} differs from query batch {query.shape[0]}")
        squeeze = query.dim() == 2
        r = query.unsqueeze(1) if squeeze else query  # (B, L, D)
        y = patterns.expand(r.shape[0], *patterns.shape) if patterns.dim() == 2 else patterns  # (B, N, D)
        q = self.q_proj(r) if self.projections else r
        k = self.k_proj(y) if self.projections else y
        v = self.v_proj(y) if self.projections else y
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)  # (B, 1, L, D), (B, 1, N, D): one head
        for _ in range(self.steps - 1):
            q = softmax_attention(q, k, k, scale=self.beta)  # (B, 1, L, D)
        out = softmax_attention(q, k, v, scale=self.beta)[:, 0]  # (B, L, D)
        return out[:, 0] if squeeze else out
