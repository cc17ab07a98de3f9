"""The LSTM cell step that the spellers' incremental decoders run by hand (torch-only, no dllab imports).

    tanh(x)              tanh as 2σ(2x) − 1
    lstm_cell(gates, c)  one step of the torch.nn.LSTM cell equations from the gates' pre-activations
"""

from __future__ import annotations

import torch
from torch import Tensor


def tanh(x: Tensor) -> Tensor:
    """tanh(x) as 2σ(2x) − 1 (within 2e-7 of torch.tanh in float32, differentiable).

    torch's CPU tanh goes through MKL's vector math library, which is several times slower than torch's own
    sigmoid on AMD CPUs: 117 µs against 17 µs for 38,400 floats on the EPYC of 2026-12-03 (torch 2.13)."""
    return torch.sigmoid(2 * x) * 2 - 1


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One step of the torch.nn.LSTM cell equations from the pre-activations gates (B, 4H) (order i f g o,
    overwritten) and the cell c (B, H) -> h, c. One sigmoid for all four gates, tanh(g) as 2σ(2g) − 1 (see
    `tanh`): for a batch of one step several times faster than nn.LSTM's kernel."""
    H = gates.shape[1] // 4
    gates[:, 2 * H : 3 * H] *= 2
    i, f, g, o = gates.sigmoid_().chunk(4, dim=1)
    c = torch.addcmul(f * c, i, g * 2 - 1)
    return o * tanh(c), c
