"""Torch-free configs of the seq2seq models (`dllab p2g train --help` lists them without importing torch).

    LSTMConfig   the LSTM encoder-decoder of `dllab.seq2seq.lstm` (re-exported there)
"""

from __future__ import annotations

from dataclasses import dataclass

from dllab.config import option


@dataclass(frozen=True)
class LSTMConfig:
    hidden: int = option(128, "hidden size H of encoder (both directions together) and decoder", ge=2, multiple_of=2)
    dropout: float = option(0.3, "dropout on embeddings and on encoder / decoder outputs", ge=0, lt=1)
    attn: bool = option(False, "Bahdanau attention in the decoder (the homework's --use_attn)")
    layers: int = option(1, "stacked LSTM layers in encoder and decoder (the homework uses 1)", ge=1)
