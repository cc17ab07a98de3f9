"""Training and testing a speech recogniser: config, data splits, the engine's `fit`, greedy evaluation.

    cfg = ASRConfig()                               the notebook's defaults on the embedded espeak-ng corpus
    summary = train_run(cfg, Path("runs/asr/transformer"))
    test_run(Path("runs/asr/transformer"))           decode the test split with the best checkpoint

Per epoch the run records train loss, validation loss (label-smoothed, padding ignored), and on greedy
transcripts of the validation split: CER, WER and the 2023-24 course's Jaccard / cosine /
Damerau-Levenshtein similarities averaged per utterance (`dllab.seq2seq.metrics`).
`ASRConfig` and `DataConfig` live in the torch-free `dllab.asr.config` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import torch

from dllab.asr import text as vocab
from dllab.asr.config import ASRConfig, DataConfig  # noqa: F401 (DataConfig re-exported)
from dllab.asr.features import BF16_PAD_MULTIPLE, FeatureSet, SpeechData, compute_features
from dllab.asr.model import ASRModel, count_parameters, loss_fn
from dllab.data.espeak_corpus import build_corpus
from dllab.data.ljspeech import download_ljspeech, read_metadata, split_ranges
from dllab.engine import RunDir, distributed, eval_batches, fit, load_best, seed_everything
from dllab.errors import UserError
from dllab.io import atomic_write_json, cache_dir
from dllab.seq2seq import metrics
from dllab.seq2seq.decoding import GreedyDecoder, Strategy, decode

log = logging.getLogger(__name__)
EXPERIMENT = "asr"


# -- data ----------------------------------------------------------------------------------------------


def corpus_root(cfg: ASRConfig, show_progress: bool = True) -> Path:
    if cfg.data.corpus == "espeak":
        return build_corpus(cfg.corpus, show_progress=show_progress)
    if cfg.data.corpus == "ljspeech":
        return download_ljspeech(cache_dir() / "ljspeech")
    root = Path(cfg.data.corpus).expanduser()
    if not root.is_dir():
        raise UserError(f"--data.corpus: {root} is not a folder (nor 'espeak' or 'ljspeech')")
    return root


def load_splits(cfg: ASRConfig, show_progress: bool = True) -> dict[str, FeatureSet]:
    """train / val / test features of the configured corpus (the course's split by index), cached."""
    root = corpus_root(cfg, show_progress).resolve()
    utterances = read_metadata(root)
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    cache = cache_dir() / "features" / f"{root.name}-{tag}"
    limits = {"train": cfg.data.train_limit, "val": cfg.data.eval_limit, "test": cfg.data.eval_limit}
    out = {}
    for split, rng in split_ranges(len(utterances)).items():
        chosen = [utterances[i] for i in rng]
        if limits[split]:
            chosen = chosen[: limits[split]]
        if not chosen:
            raise UserError(f"{root}: the {split} split is empty ({len(utterances)} utterances in all)")
        suffix = f"-{limits[split]}" if limits[split] else ""
        out[split] = compute_features(
            chosen, cfg.features, cache / f"{split}{suffix}.pt", desc=f"{split} features"
        )
    return out


# -- evaluation ----------------------------------------------------------------------------------------


def transcribe(
    model: ASRModel,
    data: SpeechData,
    batch_size: int = 64,
    strategy: Strategy | None = None,
    max_len: int = vocab.MAX_TOKENS - 1,
) -> list[str]:
    """Transcripts of every utterance of `data` (greedy unless another `strategy` is given)."""
    strategy = strategy or GreedyDecoder()
    device = next(model.parameters()).device
    hyps: list[str] = []
    model.eval()
    for batch in eval_batches(data, batch_size):
        src = {k: v.to(device) for k, v in batch.items() if k != "tokens"}
        ids = decode(model, src, strategy, sos=vocab.SOS, eos=vocab.EOS, max_len=max_len)
        hyps.extend(vocab.decode(row) for row in ids)
    return hyps


def score(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """CER, WER, the course's three similarities (averaged per utterance) and the share of looping outputs."""
    return {
        "cer": metrics.character_error_rate(hyps, refs),
        "wer": metrics.word_error_rate(hyps, refs),
        "jaccard": metrics.jaccard_similarity(hyps, refs),
        "cosine": metrics.cosine_similarity(hyps, refs),
        "damerau_levenshtein": metrics.damerau_levenshtein_similarity(hyps, refs),
        "degenerate": metrics.degenerate_share(hyps, refs),
    }


@torch.no_grad()
def mean_loss(model: ASRModel, data: SpeechData, batch_size: int, label_smoothing: float) -> float:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in eval_batches(data, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["tokens"][:, 1:] != vocab.PAD).sum())
        total += float(loss_fn(model, batch, label_smoothing)) * n
        count += n
    return total / max(count, 1)


def evaluate(model: ASRModel, data: SpeechData, cfg: ASRConfig) -> dict[str, float]:
    """Loss and text metrics of greedy transcripts of `data`."""
    began = time.perf_counter()
    hyps = transcribe(model, data, cfg.eval_batch_size, max_len=cfg.decode_max_len)
    decode_seconds = time.perf_counter() - began
    out = {
        "loss": mean_loss(model, data, cfg.eval_batch_size, cfg.label_smoothing),
        **score(hyps, data.features.texts),
    }
    out["decode_seconds"] = decode_seconds
    return out


# -- runs ----------------------------------------------------------------------------------------------


def build_model(cfg: ASRConfig) -> ASRModel:
    seed_everything(cfg.train.seed)
    return ASRModel(cfg.model)


def train_run(
    cfg: ASRConfig, run_path: Path, resume: bool = False, overwrite: bool = False, show_progress: bool = True
) -> dict[str, Any]:
    """Train one model into `run_path` with the engine's `fit`, then test it; returns the test summary.

    Under torchrun, rank 0 builds the corpus and feature caches while the others wait, rank 0 alone writes
    the run directory and runs the test, and the other ranks return an empty summary.
    """
    if not 0.0 <= cfg.model.ctc_weight < 1.0:
        raise UserError(f"--model.ctc_weight: expected a value in [0, 1), got {cfg.model.ctc_weight}")
    aug = cfg.augment
    for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
        if getattr(aug, name) < 0:
            raise UserError(f"--augment.{name}: expected a count >= 0, got {getattr(aug, name)}")
    if not 0.0 <= aug.time_ratio <= 1.0:
        raise UserError(f"--augment.time_ratio: expected a share in [0, 1], got {aug.time_ratio}")
    main = distributed.setup().is_main
    if not main:
        distributed.barrier()  # let rank 0 build the caches first
    splits = load_splits(cfg, show_progress and main)
    if main:
        distributed.barrier()
    # bfloat16 on CPU: few distinct batch shapes, so that oneDNN reuses its compiled kernels (see SpeechData).
    pad_multiple = BF16_PAD_MULTIPLE if cfg.train.precision == "bf16" else (1, 1)
    train, val = SpeechData(splits["train"], cfg.augment, pad_multiple), SpeechData(splits["val"])
    model = build_model(cfg)
    run = RunDir(run_path)
    extra = {
        "parameters": count_parameters(model),
        "corpus": str(corpus_root(cfg, False)),
        "sizes": {k: len(v) for k, v in splits.items()},
    }
    if main:
        run.prepare(EXPERIMENT, cfg, resume=resume, overwrite=overwrite, extra=extra)
    distributed.barrier()
    log.info(
        "%s: %s decoder, %d parameters, %d / %d / %d utterances",
        run.path,
        cfg.model.decoder,
        extra["parameters"],
        len(train),
        len(val),
        len(splits["test"]),
    )

    def evaluate_fn(m: ASRModel) -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(m, val, cfg).items()}

    result = fit(
        model,
        train,
        lambda m, b: loss_fn(m, b, cfg.label_smoothing, cfg.model.ctc_weight),
        evaluate_fn,
        cfg.optim,
        cfg.train,
        run,
        monitor="val_cer",
        mode="min",
        resume=resume,
        show_progress=show_progress,
    )
    if not main:
        return {}
    summary = test_run(run_path, splits=splits)
    summary["best_epoch"] = result.best_epoch
    return summary


def test_run(
    run_path: Path,
    splits: dict[str, FeatureSet] | None = None,
    strategy: Strategy | None = None,
    examples: int = 10,
    limit: int = 0,
) -> dict[str, Any]:
    """Decode the test split (its first `limit` utterances if > 0) with the run's best checkpoint; returns the
    summary and writes it to test_metrics.json (greedy) or test_metrics_<strategy>.json (beam, nucleus)."""
    strategy = strategy or GreedyDecoder()
    run = RunDir(run_path).claim()
    cfg = run.read_config(ASRConfig)
    if not run.best_checkpoint.exists():
        raise UserError(f"{run.path}: no checkpoint yet (train it with `dllab asr train`)")
    splits = splits or load_splits(cfg, show_progress=False)
    features = splits["test"]
    if limit:
        features = features.subset(list(range(min(limit, len(features)))))
    test = SpeechData(features)
    model = load_best(ASRModel(cfg.model), run).eval()
    began = time.perf_counter()
    hyps = transcribe(model, test, cfg.eval_batch_size, strategy, cfg.decode_max_len)
    seconds = time.perf_counter() - began
    refs = test.features.texts
    summary: dict[str, Any] = {
        **score(hyps, refs),
        "loss": mean_loss(model, test, cfg.eval_batch_size, cfg.label_smoothing),
        "utterances": len(test),
        "decoding": repr(strategy),
        "decode_seconds": seconds,
        "decode_utterances_per_second": len(test) / seconds,
        "train_seconds": sum(r.get("train_seconds", 0.0) for r in run.read_metrics()),
        "epochs": len(run.read_metrics()),
        "examples": [
            {"id": i, "reference": r, "hypothesis": h}
            for i, r, h in list(zip(test.features.ids, refs, hyps, strict=True))[:examples]
        ],
    }
    if isinstance(strategy, GreedyDecoder):
        run.write_test_metrics(summary)
    else:
        label = "".join(ch if ch.isalnum() or ch in "._=" else "_" for ch in repr(strategy))
        atomic_write_json(run.path / f"test_metrics_{label}.json", summary)
    return summary


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(path, rows)
