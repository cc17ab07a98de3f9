"""Modern Hopfield networks (2024-25 Q1): the energy, the CCCP update, retrieval, the attention identity.

- `energy`, `convex_part`, `concave_part` (landscape.py): E = E1 + E2, and the closed-form gradients/Hessians.
- `update`, `retrieve` (retrieval.py): q <- X^T softmax(beta X q), written as `softmax_attention(q, X, X,
  scale=beta)`, and its iteration to a fixed point with the energy trace.
- `HopfieldRetrieval` (module.py): the nn.Module form, stored or learned patterns, optional projections.
- theory.py: the derivation checks against autograd; experiment.py: retrieval and capacity on Fashion-MNIST.
"""

from dllab.lazy import lazy_exports

# Exports load lazily (PEP 562), so `dllab --help` can import dllab.hopfield.cli without importing torch.
_EXPORTS = {
    "concave_part": "landscape",
    "convex_part": "landscape",
    "energy": "landscape",
    "grad_convex": "landscape",
    "grad_neg_concave": "landscape",
    "hessian_convex": "landscape",
    "hessian_neg_concave": "landscape",
    "lse": "landscape",
    "HopfieldRetrieval": "module",
    "Retrieval": "retrieval",
    "retrieve": "retrieval",
    "update": "retrieval",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
