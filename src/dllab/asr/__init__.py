"""Speech recognition (2023-24 Question 3): log-mel features -> Transformer encoder -> LSTM / Transformer /
Taylor linear-attention decoders, decoded incrementally through `dllab.seq2seq.decoding`.

    config       ASRConfig, ModelConfig, DataConfig, FeatureConfig, AugmentConfig (torch-free)
    text         the notebook's 35-symbol vocabulary (a `dllab.seq2seq.Vocab`) and course mode's 99-token cap
    features     log-mel features, cached per corpus split, and padded speech batches
    model        the audio encoder and the three decoders, on `dllab.attention.MultiHeadAttention`
    experiment   corpus splits, lengths resolved from the data, training, greedy / beam / joint CTC evaluation
    cli, bench, report   `dllab asr ...`, `dllab bench asr`, the report section

    from dllab.asr import ASRConfig, ASRModel, SpeechData, load_splits, transcribe
    from dllab.engine import RunDir, load_best

    run = RunDir("runs/asr/transformer")
    cfg = run.read_config(ASRConfig)
    model = load_best(ASRModel(cfg.model), run).eval()
    transcribe(model, SpeechData(load_splits(cfg)["test"]), cfg)   # one transcript per test utterance
"""

from dllab.lazy import lazy_exports

# Lazy (PEP 562): the configs and the vocabulary load without torch, so `dllab --help` stays quick.
_EXPORTS = {
    # config
    "ASRConfig": "config",
    "AugmentConfig": "config",
    "DataConfig": "config",
    "FeatureConfig": "config",
    "ModelConfig": "config",
    # text
    "MAX_TOKENS": "text",
    "VOCAB": "text",
    # features
    "FeatureSet": "features",
    "SpeechData": "features",
    "compute_features": "features",
    "log_mel_spectrogram": "features",
    "spec_augment": "features",
    # model
    "ASRModel": "model",
    "loss_fn": "model",
    # experiment
    "load_splits": "experiment",
    "score": "experiment",
    "test_run": "experiment",
    "train_run": "experiment",
    "transcribe": "experiment",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
