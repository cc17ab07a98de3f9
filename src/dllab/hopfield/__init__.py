"""Modern Hopfield networks (2024-25 Q1): the energy, the CCCP update, retrieval, the attention identity.

- `energy`, `convex_part`, `concave_part` (energy.py): E = E1 + E2, and the closed-form gradients/Hessians.
- `update`, `retrieve` (retrieval.py): q <- X^T softmax(beta X q), written as `softmax_attention(q, X, X,
  scale=beta)`, and its iteration to a fixed point with the energy trace.
- `HopfieldRetrieval` (module.py): the nn.Module form, stored or learned patterns, optional projections.
- theory.py: the derivation checks against autograd; experiment.py: retrieval and capacity on Fashion-MNIST.
"""

from dllab.hopfield.energy import (
    concave_part,
    convex_part,
    energy,
    grad_convex,
    grad_neg_concave,
    hessian_convex,
    hessian_neg_concave,
    lse,
)
from dllab.hopfield.module import HopfieldRetrieval
from dllab.hopfield.retrieval import Retrieval, retrieve, update

__all__ = [
    "HopfieldRetrieval",
    "Retrieval",
    "concave_part",
    "convex_part",
    "energy",
    "grad_convex",
    "grad_neg_concave",
    "hessian_convex",
    "hessian_neg_concave",
    "lse",
    "retrieve",
    "update",
]
