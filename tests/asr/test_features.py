import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from dllab.asr import features as F
from dllab.asr import text as vocab
from dllab.data.ljspeech import Utterance, read_metadata, read_wav
from synthetic import race_two_builders


def _tone(seconds=0.5, rate=22_050, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_log_mel_matches_a_numpy_reference():
    """numpy STFT (reflect-padded, periodic Hann) + the slaney filterbank, then the notebook's log scaling."""
    audio = _tone() + 0.01 * np.random.default_rng(0).standard_normal(11_025).astype(np.float32)
    ours = F.log_mel_spectrogram(torch.from_numpy(audio))  # (T, 80)
    padded = np.pad(audio.astype(np.float64), 200, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    frames = np.stack([padded[i : i + 400] * window for i in range(0, len(padded) - 400 + 1, 160)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T + 1, 201)
    mel = F.mel_filters(22_050, 400, 80).double().numpy() @ power[:-1].T  # (80, T)
    ref = np.log10(np.maximum(mel, 1e-10))
    ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == (len(audio) // 160, 80)
    np.testing.assert_allclose(ours.numpy(), ref.T, atol=2e-4)


def test_mel_filters_are_librosas_slaney_bank():
    fb = F.mel_filters(22_050, 400, 80)
    assert fb.shape == (80, 201)
    # Slaney normalisation: each triangle has area 2 / (bandwidth in Hz), so the weights are far below 1.
    assert float(fb.max()) < 0.05 and torch.all(fb >= 0)


def test_log_mel_floor_is_max_minus_8():
    x = F.log_mel_spectrogram(torch.from_numpy(_tone()))
    assert float(x.max() - x.min()) <= 2.0 + 1e-6  # (max - (max - 8)) / 4


def _utts(tmp_path, texts):
    out = []
    for i, text in enumerate(texts):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, _tone(0.2 + 0.1 * i, freq=300 + 100 * i), 22_050)
        out.append(Utterance(f"u{i}", text, text, path))
    return out


def test_features_are_cached_and_no_utterance_is_skipped(tmp_path, monkeypatch):
    long = "x" * (vocab.MAX_TOKENS + 50)  # longer than the course's cap: kept all the same
    utts = _utts(tmp_path, ["short one.", long, "another."])
    cache = tmp_path / "cache" / "train.pt"
    fs = F.compute_features(utts, F.FeatureConfig(), cache)
    assert fs.ids == ["u0", "u1", "u2"] and fs.texts[1] == long
    assert fs.lengths().tolist() == [int((0.2 + 0.1 * i) * 22_050) // 160 for i in range(3)]
    monkeypatch.setattr(F, "read_wav", lambda *a, **k: pytest.fail("features recomputed despite the cache"))
    again = F.compute_features(utts, F.FeatureConfig(), cache)
    assert again.ids == fs.ids and torch.equal(again.frames, fs.frames)


def test_a_cache_written_when_long_transcripts_were_skipped_is_not_reused(tmp_path):
    utts = _utts(tmp_path, ["short one.", "x" * 120])
    cache = tmp_path / "train.pt"
    old_key = hashlib.sha256(
        json.dumps([F.FeatureConfig().__dict__, [(u.id, u.normalized) for u in utts]]).encode()
    ).hexdigest()[:16]
    stale = F.compute_features(utts[:1], F.FeatureConfig())
    from dllab.engine.checkpoint import save_checkpoint

    save_checkpoint(cache, {"key": old_key, "ids": stale.ids, "texts": stale.texts, "frames": stale.frames,
                            "offsets": stale.offsets})  # fmt: skip
    assert F.compute_features(utts, F.FeatureConfig(), cache).ids == ["u0", "u1"]



def _ljspeech_layout(root, n=4):
    """A tiny LJSpeech-layout folder: metadata.csv and n generated tones in wavs/."""
    (root / "wavs").mkdir(parents=True)
    (root / "metadata.csv").write_text("".join(f"LJ-{i}|tone {i}.|tone {i}.\n" for i in range(n)), encoding="utf-8")
    for i in range(n):
        soundfile.write(root / "wavs" / f"LJ-{i}.wav", _tone(0.2 + 0.05 * i, freq=300 + 100 * i), 22_050)
    return read_metadata(root)


def _features_of(wav):
    """The features of the audio now in `wav` (read without the counting of `_counting_reads`)."""
    return F.log_mel_spectrogram(torch.from_numpy(read_wav(wav))).half().float()


def _counting_reads(monkeypatch, before=lambda path: None):
    """Record the wavs F.read_wav reads (calling `before(path)` first), still reading them."""
    read, real = [], F.read_wav

    def counting(path, *args, **kwargs):
        read.append(Path(path).name)
        before(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(F, "read_wav", counting)
    return read


def test_a_replaced_wav_is_noticed_and_only_its_features_are_computed_again(tmp_path, monkeypatch):
    utts = _ljspeech_layout(tmp_path / "corpus")
    cache, cfg = tmp_path / "cache" / "train.pt", F.FeatureConfig()
    first = F.compute_features(utts, cfg, cache)
    read = _counting_reads(monkeypatch)
    # Another recording of the same id: a new length (size) and, below, the same size with new content.
    soundfile.write(utts[1].wav, _tone(0.6, freq=900), 22_050)
    second = F.compute_features(utts, cfg, cache)
    assert read == ["LJ-1.wav"]
    assert torch.equal(second.features(1), _features_of(utts[1].wav))
    assert second.features(1).shape != first.features(1).shape
    for i in (0, 2, 3):
        assert torch.equal(second.features(i), first.features(i))
    size, mtime = utts[2].wav.stat().st_size, utts[2].wav.stat().st_mtime_ns
    soundfile.write(utts[2].wav, _tone(0.3, freq=1200), 22_050)  # the same length as before: the same size
    os.utime(utts[2].wav, ns=(mtime + 1_000_000, mtime + 1_000_000))  # a clock tick later, whatever the clock
    assert utts[2].wav.stat().st_size == size
    third = F.compute_features(utts, cfg, cache)
    assert read == ["LJ-1.wav", "LJ-2.wav"]
    assert torch.equal(third.features(2), _features_of(utts[2].wav))
    assert not torch.equal(third.features(2), first.features(2))
    F.compute_features(utts, cfg, cache)
    F.compute_features(utts[:2], cfg, cache)  # a subset of the cached utterances: reused too
    assert read == ["LJ-1.wav", "LJ-2.wav"]


def test_two_builders_of_one_feature_cache_compute_each_utterance_once(tmp_path, monkeypatch, caplog):
    utts = _ljspeech_layout(tmp_path / "corpus", n=3)
    cache, cfg = tmp_path / "cache" / "train.pt", F.FeatureConfig()
    inside, go = threading.Event(), threading.Event()

    def hold_the_first(path):
        inside.set()
        assert go.wait(60)

    read = _counting_reads(monkeypatch, hold_the_first)
    results = {}

    def build(name):
        results[name] = F.compute_features(utts, cfg, cache)

    race_two_builders(build, inside, go, caplog)
    assert sorted(read) == ["LJ-0.wav", "LJ-1.wav", "LJ-2.wav"]  # each wav read once, by the first builder
    assert torch.equal(results["first"].frames, results["second"].frames)
    assert str(cache) in caplog.text

def test_course_mode_cuts_targets_and_full_mode_keeps_them_whole(tmp_path):
    texts = ["a b.", "y" * 150, "cd."]
    features = F.compute_features(_utts(tmp_path, texts), F.FeatureConfig())
    course = F.SpeechData(features, max_tokens=vocab.MAX_TOKENS, cut=True)
    assert course.targets == ["a b.", "y" * 97, "cd."]
    tokens = course.batch(torch.tensor([0, 1]))["tokens"]
    assert tokens.shape == (2, 99) and tokens[1, 0] == vocab.SOS and tokens[1, 98] == vocab.EOS
    full = F.SpeechData(features, max_tokens=152)
    assert full.targets == texts and full.batch(torch.tensor([1]))["tokens"].shape == (1, 152)
    with pytest.raises(ValueError, match="152 tokens"):
        F.SpeechData(features, max_tokens=151)


def test_batches_are_padded_to_their_longest_utterance(tmp_path):
    data = F.SpeechData(F.compute_features(_utts(tmp_path, ["a b.", "cd.", "efg."]), F.FeatureConfig()))
    batch = data.batch(torch.tensor([0, 1]))
    lens = data.lengths[[0, 1]]
    assert batch["feats"].shape == (2, int(lens.max()), 80)
    assert batch["feat_lens"].tolist() == lens.tolist()
    assert torch.all(batch["feats"][0, lens[0] :] == 0)
    assert batch["tokens"].tolist() == vocab.pad_tokens([vocab.encode("a b."), vocab.encode("cd.")]).tolist()


def test_batches_can_be_rounded_up_to_fixed_multiples(tmp_path):
    data = F.SpeechData(
        F.compute_features(_utts(tmp_path, ["a b.", "cd.", "efg."]), F.FeatureConfig()), pad_multiple=(64, 16)
    )
    plain = F.SpeechData(data.features)
    idx = torch.tensor([0, 2])
    batch, want = data.batch(idx), plain.batch(idx)
    T, L = want["feats"].shape[1], want["tokens"].shape[1]
    assert batch["feats"].shape[1] == -(-T // 64) * 64 and batch["tokens"].shape[1] == 16
    assert torch.equal(batch["feats"][:, :T], want["feats"]) and torch.all(batch["feats"][:, T:] == 0)
    assert torch.equal(batch["tokens"][:, :L], want["tokens"]) and torch.all(batch["tokens"][:, L:] == vocab.PAD)
    assert batch["feat_lens"].tolist() == want["feat_lens"].tolist()
    # Rounding never goes past the decoder's token budget (the config's max_tokens).
    assert vocab.pad_tokens([[5] * 90], multiple=16, limit=99).shape[1] == 96
    assert vocab.pad_tokens([[5] * 97], multiple=16, limit=99).shape[1] == 99
    assert vocab.pad_tokens([[5] * 99], multiple=16, limit=99).shape[1] == 99
    assert vocab.pad_tokens([[5] * 150], multiple=16, limit=152).shape[1] == 152
    assert vocab.pad_tokens([[5] * 150], multiple=16).shape[1] == 160


def test_spec_augment_masks_bands_and_spans_inside_each_utterance():
    from dllab.asr.config import AugmentConfig

    g = torch.Generator().manual_seed(0)
    feats = torch.rand(3, 50, 20) + 1.0  # no zeros before masking
    lens = torch.tensor([50, 30, 10])
    cfg = AugmentConfig(freq_masks=2, freq_width=4, time_masks=2, time_width=8, time_ratio=0.5)
    out = F.spec_augment(feats.clone(), lens, cfg, generator=g)
    for b, n in enumerate(lens.tolist()):
        zero = out[b, :n] == 0
        bands = zero.all(dim=0)  # masked mel bands span the whole utterance
        frames = zero.all(dim=1)  # masked frames span every band
        assert bands.sum() <= 2 * 4 and frames.sum() <= min(2 * 8, 2 * int(0.5 * n))
        assert torch.equal(zero, bands[None, :] | frames[:, None])  # nothing else is touched
        assert torch.all(out[b, n:] == feats[b, n:])  # padding frames are left alone
    assert (out == 0).any()  # with these draws something was masked
    again = F.spec_augment(feats.clone(), lens, cfg, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    off = F.spec_augment(feats.clone(), lens, AugmentConfig(), generator=g)
    assert torch.equal(off, feats)


def test_training_split_is_augmented_and_evaluation_split_is_not(tmp_path):
    from dllab.asr.config import AugmentConfig

    features = F.compute_features(_utts(tmp_path, ["a b.", "cd.", "efg."]), F.FeatureConfig())
    cfg = AugmentConfig(freq_masks=2, freq_width=40, time_masks=0)
    torch.manual_seed(1)
    augmented = F.SpeechData(features, cfg).batch(torch.tensor([0, 1, 2]))["feats"]
    plain = F.SpeechData(features).batch(torch.tensor([0, 1, 2]))["feats"]
    assert not torch.equal(augmented, plain)
    assert F.SpeechData(features, AugmentConfig()).augment is None
