"""The report's theory-check table: every claim holds over random draws, and a wrong claim would fail."""

import torch

from dllab.hopfield import theory


def test_every_theory_check_passes():
    checks = theory.theory_checks(draws=8, seed=1)
    assert len(checks) == 10
    failed = [c for c in checks if not c.passed]
    assert not failed, failed


def test_a_wrong_hessian_is_caught(monkeypatch):
    # The seed report's Hessian without the -p p^T term: the check must notice.
    def wrong(q, X, beta):
        p = torch.softmax(beta * (X @ q), dim=-1)
        return beta * X.T @ torch.diag(p) @ X

    monkeypatch.setattr(theory, "hessian_neg_concave", wrong)
    checks = {c.claim: c for c in theory.theory_checks(draws=4, seed=2)}
    assert not checks["Hessian of -E2 = beta X^T (diag p - p p^T) X"].passed
