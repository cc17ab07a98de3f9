"""Phoneme-to-spelling configs, torch-free so that `dllab p2g train --help` stays quick.

    P2GConfig          data, model, optim, train and decode settings
    LSTMConfig         the LSTM encoder-decoder of `dllab.p2g.model`
    TransformerConfig  the Transformer encoder-decoder of `dllab.p2g.transformer` (`--arch transformer`)
    DataConfig         course TSV files, the embedded CMUdict set, or a SIGMORPHON 2021 Task 1 language;
                       the direction (p2g: phones -> spelling, g2p: spelling -> phones) and spelling units
    DecodeConfig       maximum output length and decoding batch size
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dllab.config import option
from dllab.engine.options import OptimConfig, TrainConfig

COURSE_DIR = "../shared/data/wikipron-p2g"
SIGMORPHON_DIR = "../shared/data/sigmorphon2021"


@dataclass(frozen=True)
class LSTMConfig:
    hidden: int = option(128, "hidden size H of encoder (both directions together) and decoder", ge=2, multiple_of=2)
    dropout: float = option(0.3, "dropout on embeddings and on encoder / decoder outputs", ge=0, lt=1)
    attn: bool = option(False, "Bahdanau attention in the decoder (the homework's --use_attn)")
    layers: int = option(1, "stacked LSTM layers in encoder and decoder (the homework uses 1)", ge=1)


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = option(128, "model width", ge=1)
    heads: int = option(4, "attention heads", ge=1, divides_field="d_model")
    ff: int = option(512, "feed-forward width", ge=1)
    encoder_layers: int = option(2, "encoder layers", ge=1)
    decoder_layers: int = option(2, "decoder layers", ge=1)
    dropout: float = option(0.2, "dropout on embeddings, attention weights and sublayer outputs", ge=0, lt=1)


@dataclass(frozen=True)
class DataConfig:
    source: Literal["course", "cmudict", "sigmorphon"] = option(
        "cmudict", "course TSV files, the embedded CMUdict set, or a SIGMORPHON 2021 Task 1 language"
    )
    dir: str = option(COURSE_DIR, "course split directory: train.tsv, valid.tsv [, test.tsv]")
    seed: int = option(0, "seed that draws the CMUdict words", ge=0, lt=2**32)
    limit_train: int = option(0, "use only the first N training pairs (0 = all)", ge=0)
    limit_valid: int = option(0, "use only the first N validation / test pairs (0 = all)", ge=0)
    skip_bad_lines: bool = option(False, "skip malformed TSV lines (and report how many) instead of failing")
    reverse: bool = option(False, "spell right to left (train on reversed spellings): a model for `p2g test --rescore`")
    language: str = option("", "SIGMORPHON 2021 language code (eng_us, kor, ady, ...) with source sigmorphon")
    sigmorphon_dir: str = option(SIGMORPHON_DIR, "the task's data folder (high/, medium/, low/)")
    direction: Literal["p2g", "g2p"] = option("p2g", "p2g: phones -> spelling; g2p: spelling -> phones")
    spelling_units: Literal["auto", "graphemes", "codepoints", "decomposed"] = option(
        "auto", "spelling symbols: grapheme clusters, code points, or NFD code points (Hangul as jamo); "
        "auto = graphemes for sigmorphon, code points for the course"
    )


@dataclass(frozen=True)
class DecodeConfig:
    max_len: int = option(50, "maximum output length in characters (the homework's max length)", ge=1)
    batch_size: int = option(500, "words decoded together", ge=1)


@dataclass(frozen=True)
class P2GConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: LSTMConfig = field(default_factory=LSTMConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="adam", lr=0.003))
    # One thread: these small LSTM steps gain little from a second one and lose a lot when cores are shared.
    # Length buckets of 50 batches: ~1.7x faster epochs (less padding in the L x T attention), same words seen.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=64, threads=1, bucket=50))
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    label_smoothing: float = option(
        0.0, "label smoothing of the cross-entropy, padding ignored (homework: 0)", ge=0, lt=1
    )
    arch: Literal["lstm", "transformer", "transducer"] = option(
        "lstm", "the homework's LSTM speller, a Transformer, or a hard-attention transducer (sizes from --model.*)"
    )
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    select: Literal["cer", "wer"] = option("cer", "keep the checkpoint with the best validation CER or WER")
    rollin: float = option(
        0.0, "transducer: imitation learning, the share of steps that follow the model's own sampled action "
        "(dllab.p2g.imitation); 0 = teacher forcing on the static oracle", ge=0, le=1
    )
    average: int = option(
        0, "average the weights of the best N checkpoints (by --select) after training; 0/1 = off", ge=0
    )
