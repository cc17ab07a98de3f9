"""HopfieldRetrieval: the nn.Module form (given or learned patterns, optional projections)."""

import pytest
import torch

import dllab.hopfield.module as module
from dllab.hopfield import HopfieldRetrieval, retrieve


def test_equals_retrieve_with_given_patterns():
    torch.manual_seed(0)
    X, q = torch.randn(12, 6), torch.randn(4, 6)
    for steps in (1, 3):
        layer = HopfieldRetrieval(6, beta=0.8, steps=steps)
        expected = retrieve(q, X, 0.8, max_steps=steps, tol=0).state
        torch.testing.assert_close(layer(q, X), expected)
        # per-example patterns (B, N, D) and a length axis (B, L, D)
        torch.testing.assert_close(layer(q[:, None], X.expand(4, 12, 6))[:, 0], expected)


def test_softmax_step_goes_through_dllab_attention(monkeypatch):
    calls = []
    real = module.softmax_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("scale"))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "softmax_attention", spy)
    HopfieldRetrieval(4, beta=0.5, steps=2)(torch.randn(3, 4), torch.randn(5, 4))
    assert calls == [0.5, 0.5]


def test_learned_patterns_and_projections_train():
    torch.manual_seed(0)
    layer = HopfieldRetrieval(5, num_patterns=7, projections=True)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"patterns", "q_proj.weight", "k_proj.weight", "v_proj.weight"}
    q = torch.randn(3, 2, 5)
    # identity-initialised projections: the same as retrieving from the learned patterns directly
    plain = retrieve(q.reshape(6, 5), layer.patterns.detach(), layer.beta, max_steps=1, tol=0).state
    torch.testing.assert_close(layer(q).reshape(6, 5), plain)
    layer(q).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="beta"):
        HopfieldRetrieval(4, beta=0.0)
    with pytest.raises(ValueError, match="steps"):
        HopfieldRetrieval(4, steps=0)
    layer = HopfieldRetrieval(4)
    with pytest.raises(ValueError, match="patterns: none given"):
        layer(torch.randn(2, 4))
    with pytest.raises(ValueError, match="patterns: expected a non-empty"):
        layer(torch.randn(2, 4), torch.randn(0, 4))
    with pytest.raises(ValueError, match="query"):
        layer(torch.randn(2, 3), torch.randn(5, 4))
