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

import dataclasses
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
from dllab.engine import (
    RunDir,
    distributed,
    eval_batches,
    fit,
    load_best,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from dllab.errors import UserError
from dllab.io import atomic_write_json, cache_dir
from dllab.seq2seq import metrics
from dllab.seq2seq.ctc import JointCTCDecoder
from dllab.seq2seq.decoding import GreedyDecoder, LengthLimited, Strategy, decode

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


# -- lengths: the one place the longest sequence comes from -------------------------------------------


def resolve_lengths(cfg: ASRConfig, splits: dict[str, FeatureSet]) -> ASRConfig:
    """`cfg` with the lengths it leaves to the data filled in (what the run's config.json then records):

    model.max_tokens          course mode: the notebook's 99; full mode: the longest transcript of any split
                              (+ SOS and EOS), so that every reference can be decoded whole
    decode_chars_per_second   1.25 x the fastest training utterance's characters per second of audio

    An explicit max_tokens in full mode must hold every training transcript (a UserError names the options
    that could); shorter validation or test transcripts are decoded up to it and scored whole, with a warning.
    """
    model, chars_per_second = cfg.model, cfg.decode_chars_per_second
    longest = {k: max(len(t) for t in v.texts) + 2 for k, v in splits.items()}
    if model.max_tokens == 0:
        derived = vocab.MAX_TOKENS if cfg.data.mode == "course" else max(longest.values())
        model = dataclasses.replace(model, max_tokens=derived)
    elif model.max_tokens < 3:
        raise UserError(f"--model.max_tokens: expected >= 3 (SOS, EOS, a character) or 0, got {model.max_tokens}")
    elif cfg.data.mode == "full":
        if longest["train"] > model.max_tokens:
            raise UserError(
                f"--model.max_tokens {model.max_tokens}: a training transcript needs {longest['train']} tokens "
                "in full mode; raise it, leave it 0 (derived), cut transcripts with --data.mode course, or "
                "leave long ones out of training with --data.train_max_chars"
            )
        over = [k for k in ("val", "test") if k in longest and longest[k] > model.max_tokens]
        if over:
            log.warning(
                "%s transcripts longer than --model.max_tokens %d are decoded up to it and scored whole",
                " and ".join(over),
                model.max_tokens,
            )
    if chars_per_second < 0:
        raise UserError(f"--decode_chars_per_second: expected a rate > 0 or 0 (derived), got {chars_per_second}")
    if chars_per_second == 0:
        seconds = splits["train"].lengths().double() * cfg.features.hop_length / cfg.features.sample_rate
        rates = torch.tensor([len(t) for t in splits["train"].texts], dtype=torch.double) / seconds
        chars_per_second = round(1.25 * float(rates.max()), 2)
    if cfg.decode_max_len < 0:
        raise UserError(f"--decode_max_len: expected >= 0 (0 = max_tokens - 1), got {cfg.decode_max_len}")
    return dataclasses.replace(cfg, model=model, decode_chars_per_second=chars_per_second)


def training_split(cfg: ASRConfig, features: FeatureSet) -> tuple[FeatureSet, int]:
    """The training utterances `--data.train_max_chars` keeps (all when 0), and how many it left out."""
    limit = cfg.data.train_max_chars
    if limit < 0:
        raise UserError(f"--data.train_max_chars: expected >= 0 (0 = keep all), got {limit}")
    if limit == 0:
        return features, 0
    kept = [i for i, t in enumerate(features.texts) if len(t) <= limit]
    if not kept:
        shortest = min(len(t) for t in features.texts)
        raise UserError(
            f"--data.train_max_chars {limit}: every training transcript is longer (the shortest has "
            f"{shortest} characters); raise it or use 0 to keep all"
        )
    left_out = len(features) - len(kept)
    log.info(
        "training on %d of %d utterances: %d with more than %d characters left out (--data.train_max_chars)",
        len(kept),
        len(features),
        left_out,
        limit,
    )
    return features.subset(kept), left_out


def references(cfg: ASRConfig, features: FeatureSet) -> list[str]:
    """What transcripts of `features` are scored against: whole (full mode) or cut as the notebook's (course)."""
    if cfg.data.mode == "course":
        return [vocab.cut(t, cfg.model.max_tokens) for t in features.texts]
    return list(features.texts)


def speech_data(cfg: ASRConfig, features: FeatureSet, training: bool = False) -> SpeechData:
    """A split's batches: training ones hold the mode's targets (whole or cut) and are augmented; evaluation
    ones are cut to max_tokens for their teacher-forced loss only (transcripts are scored whole)."""
    if not training:
        return SpeechData(features, max_tokens=cfg.model.max_tokens, cut=True)
    # bfloat16 on CPU: few distinct batch shapes, so that oneDNN reuses its compiled kernels (see SpeechData).
    bf16 = resolve_precision(cfg.train.precision, resolve_device(cfg.train.device)) == "bf16"
    pad_multiple = BF16_PAD_MULTIPLE if bf16 else (1, 1)
    return SpeechData(features, cfg.augment, pad_multiple, cfg.model.max_tokens, cut=cfg.data.mode == "course")


def token_limits(cfg: ASRConfig, frames: torch.Tensor) -> torch.Tensor:
    """(B,) the most characters decoded for utterances of `frames` (B,) feature frames: decode_max_len - 1
    (default max_tokens - 2), and at most decode_chars_per_second x the audio's seconds + 10."""
    steps = cfg.decode_max_len or cfg.model.max_tokens - 1  # EOS included
    seconds = frames.double() * cfg.features.hop_length / cfg.features.sample_rate
    rate = cfg.decode_chars_per_second or float("inf")
    return (torch.ceil(rate * seconds) + 10).clamp(max=steps - 1).long()


# -- evaluation ----------------------------------------------------------------------------------------


def transcribe(
    model: ASRModel,
    data: SpeechData,
    cfg: ASRConfig,
    strategy: Strategy | None = None,
    ctc_weight: float = 0.0,
) -> list[str]:
    """Transcripts of every utterance of `data`, in its order (greedy unless another `strategy` is given).

    Utterances are decoded `cfg.eval_batch_size` at a time in order of length (little padding), each capped by
    `token_limits`; `ctc_weight` > 0 decodes with joint CTC/attention scores (the model needs a CTC head)."""
    strategy = strategy or GreedyDecoder()
    device = next(model.parameters()).device
    order = torch.argsort(data.lengths, stable=True)
    hyps: list[str] = [""] * len(data)
    model.eval()
    with torch.no_grad():
        for idx in order.split(cfg.eval_batch_size):
            batch = data.batch(idx)
            src = {k: batch[k].to(device) for k in ("feats", "feat_lens")}
            limits = token_limits(cfg, batch["feat_lens"])
            decoder = model
            if ctc_weight > 0:
                decoder = JointCTCDecoder(model, ctc_weight, blank=vocab.PAD, sos=vocab.SOS, eos=vocab.EOS)
            decoder = LengthLimited(decoder, limits, eos=vocab.EOS)
            ids = decode(decoder, src, strategy, sos=vocab.SOS, eos=vocab.EOS, max_len=int(limits.max()) + 1)
            for i, row in zip(idx.tolist(), ids, strict=True):
                hyps[i] = vocab.decode(row)
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
    """Loss and text metrics of greedy transcripts of `data` (scored against the mode's references)."""
    began = time.perf_counter()
    hyps = transcribe(model, data, cfg)
    decode_seconds = time.perf_counter() - began
    out = {
        "loss": mean_loss(model, data, cfg.eval_batch_size, cfg.label_smoothing),
        **score(hyps, references(cfg, data.features)),
    }
    out["decode_seconds"] = decode_seconds
    return out


def transcript_lengths(texts: list[str]) -> dict[str, Any]:
    """Characters per transcript: count, mean, longest, the share over 97 (LJSpeech: 55%) and a histogram
    of 10-character bins (bin i counts lengths 10 i + 1 .. 10 (i + 1))."""
    lengths = [len(t) for t in texts]
    bins = [0] * (max(lengths, default=0) // 10 + 1)
    for n in lengths:
        bins[max(n - 1, 0) // 10] += 1
    return {
        "utterances": len(lengths),
        "mean": sum(lengths) / max(len(lengths), 1),
        "max": max(lengths, default=0),
        "over_97": sum(n > 97 for n in lengths) / max(len(lengths), 1),
        "histogram": bins,
    }


# -- runs ----------------------------------------------------------------------------------------------


def build_model(cfg: ASRConfig) -> ASRModel:
    seed_everything(cfg.train.seed)
    return ASRModel(cfg.model)


def train_run(
    cfg: ASRConfig, run_path: Path, resume: bool = False, overwrite: bool = False, show_progress: bool = True
) -> dict[str, Any]:
    """Train one model into `run_path` with the engine's `fit`, then test it; returns the test summary.

    The config's lengths are resolved from the data first (`resolve_lengths`) and recorded in config.json,
    with the corpus's transcript lengths and how many training utterances `--data.train_max_chars` left out.
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
    train_features, left_out = training_split(cfg, splits["train"])
    cfg = resolve_lengths(cfg, {**splits, "train": train_features})
    train, val = speech_data(cfg, train_features, training=True), speech_data(cfg, splits["val"])
    model = build_model(cfg)
    run = RunDir(run_path)
    extra = {
        "parameters": count_parameters(model),
        "corpus": str(corpus_root(cfg, False)),
        "sizes": {k: len(v) for k, v in splits.items()},
        "left_out_of_training": left_out,
        "transcripts": {k: transcript_lengths(v.texts) for k, v in splits.items()},
    }
    if main:
        run.prepare(EXPERIMENT, cfg, resume=resume, overwrite=overwrite, extra=extra)
    distributed.barrier()
    log.info(
        "%s: %s decoder, %d parameters, %s mode, max_tokens %d, %d / %d / %d utterances",
        run.path,
        cfg.model.decoder,
        extra["parameters"],
        cfg.data.mode,
        cfg.model.max_tokens,
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


LENGTH_EDGES = (50, 100)  # test CER is also given for transcripts of <= 50, 51-100 and > 100 characters


def test_run(
    run_path: Path,
    splits: dict[str, FeatureSet] | None = None,
    strategy: Strategy | None = None,
    examples: int = 10,
    limit: int = 0,
    ctc_weight: float = 0.0,
    split: str = "test",
) -> dict[str, Any]:
    """Decode the test split (its first `limit` utterances if > 0) with the run's best checkpoint; returns the
    summary and writes it to test_metrics.json (greedy, attention alone) or test_metrics_<strategy>.json.
    `split="val"` decodes the validation split instead (to choose decoding settings without the test split),
    into val_metrics_<strategy>.json.

    Every test utterance is decoded and scored (`utterances` of `of`). The metrics are against the mode's
    references (course mode: transcripts cut as the notebook's); `cer_whole` is against whole transcripts, and
    `by_length` gives both per group of whole-transcript length (<= 50, 51-100, > 100 characters).
    `ctc_weight` > 0 decodes with joint CTC/attention scores."""
    strategy = strategy or GreedyDecoder()
    run = RunDir(run_path).claim()
    cfg = run.read_config(ASRConfig)
    if not run.best_checkpoint.exists():
        raise UserError(f"{run.path}: no checkpoint yet (train it with `dllab asr train`)")
    if ctc_weight and not cfg.model.ctc_weight:
        raise UserError(
            f"--ctc-weight {ctc_weight}: {run.path} has no CTC head (train it with --model.ctc_weight > 0)"
        )
    if not 0.0 <= ctc_weight <= 1.0:
        raise UserError(f"--ctc-weight: expected a weight in [0, 1], got {ctc_weight}")
    splits = splits or load_splits(cfg, show_progress=False)
    cfg = resolve_lengths(cfg, {**splits, "train": training_split(cfg, splits["train"])[0]})
    if split not in ("test", "val"):
        raise UserError(f"--split: expected test or val, got {split!r}")
    features = splits[split]
    if limit:
        features = features.subset(list(range(min(limit, len(features)))))
    test = speech_data(cfg, features)
    model = load_best(ASRModel(cfg.model), run).eval()
    began = time.perf_counter()
    hyps = transcribe(model, test, cfg, strategy, ctc_weight)
    seconds = time.perf_counter() - began
    refs, whole = references(cfg, features), list(features.texts)
    label = repr(strategy) + (f" + CTC {ctc_weight:g}" if ctc_weight else "")
    summary: dict[str, Any] = {
        **score(hyps, refs),
        "cer_whole": metrics.character_error_rate(hyps, whole),
        "mode": cfg.data.mode,
        "max_tokens": cfg.model.max_tokens,
        "loss": mean_loss(model, test, cfg.eval_batch_size, cfg.label_smoothing),
        "utterances": len(hyps),
        "split": split,
        "of": len(splits[split]),
        "by_length": _by_length(hyps, refs, whole),
        "decoding": label,
        "ctc_weight": ctc_weight,
        "decode_seconds": seconds,
        "decode_utterances_per_second": len(test) / seconds,
        "train_seconds": sum(r.get("train_seconds", 0.0) for r in run.read_metrics()),
        "epochs": len(run.read_metrics()),
        "examples": [
            {"id": i, "reference": r, "hypothesis": h}
            for i, r, h in list(zip(features.ids, refs, hyps, strict=True))[:examples]
        ],
    }
    if split == "test" and isinstance(strategy, GreedyDecoder) and not ctc_weight:
        run.write_test_metrics(summary)
    else:
        atomic_write_json(metrics_path(run.path, split, strategy, ctc_weight), summary)
    return summary


def metrics_path(run_path: Path, split: str, strategy: Strategy, ctc_weight: float = 0.0) -> Path:
    """Where `test_run` writes a decoding's summary other than the default (greedy, attention alone, test):
    <run>/<split>_metrics_<strategy>[_ctc=<weight>].json."""
    name = "".join(ch if ch.isalnum() or ch in "._=" else "_" for ch in repr(strategy))
    name += f"_ctc={ctc_weight:g}" if ctc_weight else ""
    return Path(run_path) / f"{split}_metrics_{name}.json"


def _by_length(hyps: list[str], refs: list[str], whole: list[str]) -> list[dict[str, Any]]:
    """Per group of whole-transcript length: utterances, CER against the mode's references and whole ones."""
    groups = metrics.group_by_length(whole, LENGTH_EDGES)
    out = []
    for name, rows in groups.items():
        entry: dict[str, Any] = {"lengths": name, "utterances": len(rows), "cer": None, "cer_whole": None}
        if rows:
            entry["cer"] = metrics.character_error_rate([hyps[i] for i in rows], [refs[i] for i in rows])
            entry["cer_whole"] = metrics.character_error_rate([hyps[i] for i in rows], [whole[i] for i in rows])
        out.append(entry)
    return out


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(path, rows)
