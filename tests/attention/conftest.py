"""Fixtures shared by the attention tests: the block sizes, and which Taylor kernels run."""

import pytest

from dllab.attention.taylor import chunk as plain
from dllab.attention.taylor.fused import chunk as fused
from dllab.attention.taylor.fused import native


@pytest.fixture(
    params=[(1 << 19, 1 << 20), (64, 64), (64, 1 << 20)], ids=["one-block", "many-blocks", "forward-one-block"]
)
def block_elements(request, monkeypatch):
    """Run each test with the default block sizes, with tiny blocks (several blocks per sequence), and with
    a non-causal forward in one block but a backward in several (their block sizes are separate settings).
    Both kernel paths size their blocks from these."""
    elements, forward = request.param
    monkeypatch.setattr(plain, "BLOCK_ELEMENTS", elements)
    monkeypatch.setattr(plain, "FORWARD_BLOCK_ELEMENTS", forward)
    return elements


@pytest.fixture(params=["fused", "plain"])
def kernels(request, monkeypatch):
    """Run with the fused compiled kernels where they apply (dllab.attention.taylor.fused), and with the plain
    PyTorch path everywhere (the fused path declared inapplicable)."""
    if request.param == "fused" and native.library() is None:
        pytest.skip(native.status())
    if request.param == "plain":
        monkeypatch.setattr(fused, "applies", lambda *args: False)
    fused.clear_buffers()
    yield request.param
    fused.clear_buffers()
