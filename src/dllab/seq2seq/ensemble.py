"""An ensemble of IncrementalDecoders is itself an IncrementalDecoder: the mean of the members' next-token
distributions, so every decoding strategy works on it unchanged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dllab.seq2seq.decoding import IncrementalDecoder


class EnsembleDecoder:
    """log p(y | prefix) = log mean_m p_m(y | prefix) over the member models (same target vocabulary)."""

    def __init__(self, members: Sequence[IncrementalDecoder]):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    def start(self, src: Any) -> list[Any]:
        return [m.start(src) for m in self.members]

    def step(self, tokens: Tensor, state: list[Any]) -> tuple[Tensor, list[Any]]:
        logps, states = [], []
        for member, s in zip(self.members, state, strict=True):
            logp, s = member.step(tokens, s)  # (B, V)
            logps.append(logp)
            states.append(s)
        return torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(logps)), states

    def reorder(self, state: list[Any], index: Tensor) -> list[Any]:
        return [m.reorder(s, index) for m, s in zip(self.members, state, strict=True)]
