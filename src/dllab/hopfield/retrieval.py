"""The CCCP update q <- X^T softmax(beta X q) and retrieval by iterating it to a fixed point.

The concave-convex procedure sets grad E1(q_{t+1}) = grad(-E2)(q_t), i.e. q_{t+1} = X^T softmax(beta X q_t):
one step of single-head cross-attention with the query q, keys = values = X and scale beta (so beta =
1/sqrt(D) with identity projections is exactly a Transformer attention head). `update` is written as that
attention call. `retrieve` iterates the same step with the scores written out once per step, because the
energy trace needs the log-sum-exp of those same scores: one step is two (B, N, D) products and no more.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dllab.attention import softmax_attention
from dllab.hopfield.landscape import check_inputs, energy_constant, energy_from_lse, max_norm


def update(q: Tensor, X: Tensor, beta: float) -> Tensor:
    """One CCCP step X^T softmax(beta X q) for a batch of queries.

    Args:
        q: (..., D) queries; X: (N, D) stored patterns; beta > 0 the inverse temperature.
    Returns:
        (..., D), the new states (each a convex combination of the patterns).
    """
    check_inputs(q, X, beta)
    lead = q.shape[:-1]
    q2 = q.reshape(1, -1, q.shape[-1])  # (1, B, D): one "sequence" of B queries
    out = softmax_attention(q2, X.unsqueeze(0), X.unsqueeze(0), scale=float(beta))  # (1, B, D)
    return out.reshape(*lead, X.shape[1])


@dataclass(frozen=True)
class Retrieval:
    """The result of `retrieve`.

    state: (B, D) the final iterates (the fixed points when `converged`).
    steps: the number of updates applied.
    energies: (steps + 1, B) E(q_t) for t = 0..steps.
    converged: True when every query moved by at most tol * M in the last step.
    """

    state: Tensor
    steps: int
    energies: Tensor
    converged: bool


def retrieve(q: Tensor, X: Tensor, beta: float, max_steps: int = 100, tol: float = 1e-5) -> Retrieval:
    """Iterate the CCCP update from q until every query moves by at most tol * M (M = max_i ||x_i||).

    Args:
        q: (B, D) or (D,) initial states (queries); X: (N, D) stored patterns; beta > 0.
        max_steps: the most updates to apply (>= 1).
        tol: the stopping threshold on ||q_{t+1} - q_t||, relative to M (>= 0; 0 runs max_steps updates).
    Returns:
        Retrieval(state (B, D) or (D,), steps, energies (steps + 1, B) or (steps + 1,), converged).
    """
    check_inputs(q, X, beta)
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps: expected an integer >= 1, got {max_steps!r}")
    if not tol >= 0:
        raise ValueError(f"tol: expected a number >= 0, got {tol!r}")
    single = q.dim() == 1
    state = q.reshape(-1, q.shape[-1])  # (B, D)
    m = float(max_norm(X))
    threshold, constant = tol * m, energy_constant(X.shape[0], m, beta)
    energies, steps, converged = [], 0, False
    with torch.no_grad():
        while True:
            logits = (state @ X.T).mul_(beta)  # (B, N)
            lse = torch.logsumexp(logits, dim=-1)  # (B,)
            energies.append(energy_from_lse(lse, state, beta, constant))
            if converged or steps == max_steps:
                break
            new = logits.sub_(lse[:, None]).exp_() @ X  # softmax(beta X q) X, (B, D)
            moved = torch.linalg.vector_norm(new - state, dim=-1).max()  # worst query, (,)
            state, steps = new, steps + 1
            converged = tol > 0 and bool(moved <= threshold)
    trace = torch.stack(energies)  # (steps + 1, B)
    if single:
        return Retrieval(state[0], steps, trace[:, 0], converged)
    return Retrieval(state, steps, trace, converged)
