"""Speech-recognition configs, torch-free so that `dllab asr ... --help` stays quick.

    ASRConfig       model, data, corpus, features, optim, train and the evaluation settings
    ModelConfig     the recogniser's sizes and decoder kind (`dllab.asr.model` re-exports it, and DecoderKind)
    DataConfig      which corpus (embedded espeak-ng, LJSpeech or a folder) and how much of it
    FeatureConfig   the log-mel settings (`dllab.asr.features` re-exports it)

`CorpusConfig` stays in `dllab.data.espeak_corpus` (torch-free too); `dllab.asr.experiment` re-exports
ASRConfig and DataConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dllab.asr import text as vocab
from dllab.config import option
from dllab.data.espeak_corpus import CorpusConfig
from dllab.data.ljspeech import SAMPLE_RATE
from dllab.engine.options import OptimConfig, TrainConfig

DecoderKind = Literal["lstm", "transformer", "taylor"]


@dataclass(frozen=True)
class ModelConfig:
    decoder: DecoderKind = option("transformer", "lstm | transformer | taylor")
    n_mels: int = option(80, "input mel bands", ge=1, eq_field="/features.n_mels")
    hidden: int = option(200, "model width (the notebook's n_state)", ge=1)
    heads: int = option(
        2, "attention heads (encoder, cross-attention, softmax self-attention)", ge=1, divides_field="hidden"
    )
    ff: int = option(400, "feed-forward width of each block", ge=1)
    encoder_layers: int = option(2, "audio encoder blocks", ge=1)
    decoder_layers: int = option(1, "decoder blocks (transformer / taylor); the LSTM decoder has one", ge=1)
    taylor_heads: int = option(
        4, "heads of the Taylor self-attention (M grows as head_dim^2 / 2)", ge=1, divides_field="hidden"
    )
    taylor_order: int = option(3, "Taylor terms K (3 = 1 + t + t^2/2, the homework's map)", ge=1, le=8)
    max_tokens: int = option(vocab.MAX_TOKENS, "longest token sequence (learned positions)", ge=2)
    ctc_weight: float = option(
        0.0,
        "weight of an auxiliary CTC loss on the encoder (joint CTC-attention training); 0 = off, as the notebook",
        ge=0,
        lt=1,
    )


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = option(SAMPLE_RATE, "audio sample rate in Hz (other rates are resampled)", ge=1000, le=192_000)
    n_fft: int = option(400, "STFT window and FFT size in samples", ge=16)
    hop_length: int = option(160, "STFT hop in samples", ge=1, le_field="n_fft")
    n_mels: int = option(80, "mel bands (slaney scale and normalisation)", ge=1)


@dataclass(frozen=True)
class AugmentConfig:
    """SpecAugment (Park et al. 2019) on the training batches: masks drawn per utterance, filled with 0."""

    freq_masks: int = option(0, "SpecAugment: frequency masks per training utterance (0 = off, as the notebook)", ge=0)
    freq_width: int = option(15, "SpecAugment: widest frequency mask, in mel bands", ge=0)
    time_masks: int = option(0, "SpecAugment: time masks per training utterance (0 = off)", ge=0)
    time_width: int = option(25, "SpecAugment: widest time mask, in frames (10 ms each)", ge=0)
    time_ratio: float = option(
        0.2, "SpecAugment: no time mask covers more than this share of its utterance", ge=0, le=1
    )


@dataclass(frozen=True)
class DataConfig:
    corpus: str = option(
        "espeak", "espeak (embedded, built by `dllab asr build-corpus`), ljspeech, or a folder"
    )
    train_limit: int = option(0, "use the first N training utterances (0 = all)", ge=0)
    eval_limit: int = option(0, "use the first N validation and test utterances (0 = all)", ge=0)


@dataclass(frozen=True)
class ASRConfig:
    model: ModelConfig = option(ModelConfig(), "")
    data: DataConfig = option(DataConfig(), "")
    corpus: CorpusConfig = option(CorpusConfig(), "")
    features: FeatureConfig = option(FeatureConfig(), "")
    augment: AugmentConfig = option(AugmentConfig(), "")
    optim: OptimConfig = option(
        OptimConfig(optimizer="adamw", lr=1e-3, schedule="warmup_linear", warmup_steps=200), ""
    )
    train: TrainConfig = option(TrainConfig(epochs=15, batch_size=16), "")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy (padding is ignored)", ge=0, lt=1)
    eval_batch_size: int = option(64, "utterances decoded at once during evaluation", ge=1)
    decode_max_len: int = option(
        vocab.MAX_TOKENS - 1, "most tokens decoded per utterance (EOS included)", ge=1, lt_field="model.max_tokens"
    )
