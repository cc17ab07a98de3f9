"""Log-mel features as the course notebook computed them, cached on disk, and padded speech batches.

    power = |STFT(audio; n_fft 400, hop 160, Hann)|^2          (drop the last frame, as whisper does)
    mel   = slaney-scale, slaney-normalised filterbank (80 x 201, librosa) @ power
    x     = log10(max(mel, 1e-10));  x = max(x, x.max() - 8);  x = (x + 4) / 4

`FeatureSet` holds every utterance of a split as float16 frames in one tensor (cached as one `.pt` file
per corpus split: each utterance's frames keyed by the feature settings and its wav's path, size and
modification time, so that a replaced wav is noticed and only its features are computed again);
`SpeechData` serves `fit`'s `batch(idx)`, padding each
batch to its longest utterance (never to a fixed 2,754 frames). `FeatureConfig` lives in the torch-free
`dllab.asr.config` and is re-exported here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dllab.asr import text as vocab
from dllab.asr.config import AugmentConfig, FeatureConfig
from dllab.data.ljspeech import Utterance, read_wav
from dllab.engine.checkpoint import load_checkpoint, save_checkpoint
from dllab.engine.logs import progress
from dllab.errors import UserError
from dllab.io import building, file_stamp

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """(n_mels, n_fft // 2 + 1) float32 slaney mel filterbank from librosa."""
    import librosa

    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, htk=False, norm="slaney")
    return torch.from_numpy(fb).float()


def log_mel_spectrogram(audio: Tensor, cfg: FeatureConfig = FeatureConfig()) -> Tensor:  # noqa: B008 (a frozen dataclass)
    """audio (N,) float samples at cfg.sample_rate -> (T, n_mels) normalised log-mel frames, T = N // hop."""
    window = torch.hann_window(cfg.n_fft, device=audio.device)
    stft = torch.stft(audio, cfg.n_fft, cfg.hop_length, window=window, return_complex=True)  # (F, T + 1)
    power = stft[..., :-1].abs() ** 2  # (F, T)
    mel = mel_filters(cfg.sample_rate, cfg.n_fft, cfg.n_mels).to(audio.device) @ power  # (n_mels, T)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).T.contiguous()  # (T, n_mels)


@dataclass
class FeatureSet:
    """All utterances of one split: frames (sum T, n_mels) float16, offsets (N + 1,), transcripts."""

    ids: list[str]
    texts: list[str]
    frames: Tensor
    offsets: Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def features(self, i: int) -> Tensor:
        return self.frames[self.offsets[i] : self.offsets[i + 1]].float()

    def subset(self, index: list[int]) -> FeatureSet:
        chunks = [self.frames[self.offsets[i] : self.offsets[i + 1]] for i in index]
        lengths = torch.tensor([len(c) for c in chunks], dtype=torch.long)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        frames = torch.cat(chunks) if chunks else self.frames[:0]
        return FeatureSet([self.ids[i] for i in index], [self.texts[i] for i in index], frames, offsets)


# Names the layout of the cache file: a cache of another layout (or other settings) is not read.
CACHE_FORMAT = "per-utterance-stamps"


def compute_features(
    utterances: list[Utterance], cfg: FeatureConfig, cache: Path | None = None, desc: str = "features"
) -> FeatureSet:
    """Features of every one of `utterances`. Nothing is skipped here: cutting (course mode) and the explicit
    training filter happen later.

    With `cache` (a `.pt` file), an utterance's frames are reused from it while the feature settings are the
    same and its wav has the path, size and modification time (`dllab.io.file_stamp`) recorded with them; the
    others are computed and the cache is rewritten. The stamp, not a hash of the audio: hashing would read
    every wav on every run (gigabytes for LJSpeech), while writing a file gives it a new mtime_ns. Two
    processes filling one cache take turns (`dllab.io.building`): the second reuses the first one's work."""
    entries = [_entry(u) for u in utterances]
    if cache is None:
        return _assemble(utterances, [_log_mel(u, cfg) for u in progress(utterances, len(utterances), desc)], cfg)
    saved = _read_cache(cache, cfg)
    if saved.get("entries") == entries:  # the usual case: nothing to compute, no lock to take
        return FeatureSet([u.id for u in utterances], [u.normalized for u in utterances], saved["frames"],
                          saved["offsets"])  # fmt: skip
    with building(cache):
        saved = _read_cache(cache, cfg)  # the process this one waited for may have just written it
        offsets = saved.get("offsets")
        cached = {tuple(e): (int(offsets[i]), int(offsets[i + 1])) for i, e in enumerate(saved.get("entries", []))}
        chunks: list[Tensor | None] = [None] * len(utterances)
        for i, e in enumerate(entries):
            if tuple(e) in cached:
                a, b = cached[tuple(e)]
                chunks[i] = saved["frames"][a:b]
        todo = [i for i, c in enumerate(chunks) if c is None]
        if saved.get("entries") and todo:
            log.info("%s: %d of %d utterances' wavs are new or changed: computing their features", cache,
                     len(todo), len(utterances))  # fmt: skip
        for i in progress(todo, len(todo), desc):
            chunks[i] = _log_mel(utterances[i], cfg)
        out = _assemble(utterances, chunks, cfg)
        # Stamps taken before the audio was read: a wav replaced meanwhile is computed again next time.
        if saved.get("entries") != entries:
            save_checkpoint(cache, {"settings": _settings(cfg), "entries": entries, "frames": out.frames,
                                    "offsets": out.offsets})  # fmt: skip
        return out


def _settings(cfg: FeatureConfig) -> str:
    return hashlib.sha256(json.dumps([CACHE_FORMAT, cfg.__dict__]).encode()).hexdigest()[:16]


def _entry(u: Utterance) -> list:
    """What an utterance's cached frames are keyed by: [id, wav path, size, mtime_ns] (None: unreadable)."""
    try:
        stamp = file_stamp(u.wav)
    except OSError:
        return [u.id, str(u.wav), None, None]  # never matches: read_wav then names the problem
    return [u.id, str(u.wav), stamp["size"], stamp["mtime_ns"]]


def _read_cache(cache: Path, cfg: FeatureConfig) -> dict:
    """The cache's contents when it holds features of these settings, else {}."""
    if not cache.exists():
        return {}
    try:
        saved = load_checkpoint(cache)
    except UserError as err:
        log.warning("%s; recomputing the features", err)
        return {}
    if saved.get("settings") != _settings(cfg):
        return {}
    entries, offsets, frames = saved.get("entries"), saved.get("offsets"), saved.get("frames")
    if not (isinstance(entries, list) and isinstance(offsets, Tensor) and isinstance(frames, Tensor)
            and len(offsets) == len(entries) + 1 and int(offsets[-1]) == len(frames)):  # fmt: skip
        log.warning("%s: not a feature cache of this layout; recomputing the features", cache)
        return {}
    return saved


def _log_mel(u: Utterance, cfg: FeatureConfig) -> Tensor:
    """(T, n_mels) float16 frames of one utterance's wav."""
    audio = torch.from_numpy(read_wav(u.wav, cfg.sample_rate))
    if audio.numel() < cfg.n_fft:
        raise UserError(f"{u.wav}: too short for one {cfg.n_fft}-sample analysis window")
    return log_mel_spectrogram(audio, cfg).half()


def _assemble(utterances: list[Utterance], frames: list[Tensor], cfg: FeatureConfig) -> FeatureSet:
    lengths = torch.tensor([len(f) for f in frames], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return FeatureSet(
        [u.id for u in utterances],
        [u.normalized for u in utterances],
        torch.cat(frames) if frames else torch.zeros(0, cfg.n_mels, dtype=torch.half),
        offsets,
    )


def spec_augment(feats: Tensor, lens: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> Tensor:
    """SpecAugment's frequency and time masks (no time warping) on a padded batch, in place; returns `feats`.

    feats (B, T, n_mels), lens (B,). Each utterance gets `freq_masks` bands of width U{0..freq_width} and
    `time_masks` spans of width U{0..min(time_width, time_ratio * length)} inside its own frames, set to 0
    (the normalised log-mel scale's middle). Draws come from `generator`, or torch's global RNG (which the
    engine seeds and checkpoints, so a resumed run draws the same masks).
    """
    B, _, n_mels = feats.shape
    for b in range(B):
        length = int(lens[b])
        for _ in range(cfg.freq_masks):
            width = int(torch.randint(0, min(cfg.freq_width, n_mels) + 1, (), generator=generator))
            start = int(torch.randint(0, n_mels - width + 1, (), generator=generator))
            feats[b, :length, start : start + width] = 0.0
        widest = min(cfg.time_width, int(cfg.time_ratio * length))
        for _ in range(cfg.time_masks):
            width = int(torch.randint(0, widest + 1, (), generator=generator))
            start = int(torch.randint(0, length - width + 1, (), generator=generator))
            feats[b, start : start + width, :] = 0.0
    return feats


# (frames, tokens) multiples that bfloat16 training batches are rounded up to (see SpeechData).
BF16_PAD_MULTIPLE = (64, 16)


class SpeechData:
    """A split as `fit` wants it: `len()` and `batch(idx)` -> dict of padded tensors.

    `max_tokens` is the model's longest token sequence (SOS and EOS included). With `cut` (course mode, and
    the teacher-forced loss of evaluation splits) each target is cut to fit it (`text.cut`); without, a
    longer transcript is a ValueError: full mode trains on whole transcripts. `targets` are the transcripts
    the batches hold (what a transcription of this split is scored against).
    With an `augment` config whose masks are on, every batch is SpecAugmented (give it to the training split only).
    `pad_multiple` = (frames, tokens) rounds each batch's padded lengths up to those multiples: under bfloat16
    autocast on CPU, oneDNN compiles kernels per tensor shape, and a new shape every batch costs more than the
    bfloat16 matmuls save (`dllab bench asr` measures both). Padding never changes an utterance's loss.
    """

    def __init__(
        self,
        features: FeatureSet,
        augment: AugmentConfig | None = None,
        pad_multiple: tuple[int, int] = (1, 1),
        max_tokens: int | None = None,
        cut: bool = False,
    ):
        self.features = features
        self.pad_multiple = pad_multiple
        self.max_tokens = max_tokens
        self.augment = augment if augment and (augment.freq_masks or augment.time_masks) else None
        texts = features.texts
        if max_tokens is not None and cut:
            texts = [vocab.cut(t, max_tokens) for t in texts]
        elif max_tokens is not None:
            longest = max((len(t) + 2 for t in texts), default=0)
            if longest > max_tokens:
                raise ValueError(f"a transcript needs {longest} tokens, more than max_tokens={max_tokens}")
        self.targets = texts
        self.tokens = [vocab.encode(t) for t in texts]
        self.lengths = features.lengths()

    def __len__(self) -> int:
        return len(self.features)

    def length_keys(self) -> Tensor:
        """(N,) frames per utterance: the sort key of `fit`'s length buckets (`--train.bucket`)."""
        return self.lengths

    def batch(self, idx: Tensor) -> dict[str, Tensor]:
        rows = idx.tolist()
        lens = self.lengths[rows]
        frames = -(-int(lens.max()) // self.pad_multiple[0]) * self.pad_multiple[0]
        feats = torch.zeros(len(rows), frames, self.features.frames.shape[1])
        for b, i in enumerate(rows):
            feats[b, : lens[b]] = self.features.features(i)
        if self.augment is not None:
            spec_augment(feats, lens, self.augment)
        return {
            "feats": feats,  # (B, T, n_mels)
            "feat_lens": lens.clone(),  # (B,)
            "tokens": vocab.pad_tokens(  # (B, L)
                [self.tokens[i] for i in rows], self.pad_multiple[1], self.max_tokens
            ),
        }
