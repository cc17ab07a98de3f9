import logging

import numpy as np
import pytest
import soundfile
import torch

from dllab.asr import features as F
from dllab.asr import text as vocab
from dllab.data.ljspeech import Utterance


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


def test_features_are_cached_and_long_transcripts_skipped(tmp_path, monkeypatch, caplog):
    utts = _utts(tmp_path, ["short one.", "x" * vocab.MAX_TOKENS, "another."])
    cache = tmp_path / "cache" / "train.pt"
    with caplog.at_level(logging.INFO):
        fs = F.compute_features(utts, F.FeatureConfig(), cache)
    assert fs.ids == ["u0", "u2"] and "skipped 1 of 3" in caplog.text
    assert fs.lengths().tolist() == [int(0.2 * 22_050) // 160, int(0.4 * 22_050) // 160]
    monkeypatch.setattr(F, "read_wav", lambda *a, **k: pytest.fail("features recomputed despite the cache"))
    again = F.compute_features(utts, F.FeatureConfig(), cache)
    assert again.ids == fs.ids and torch.equal(again.frames, fs.frames)


def test_batches_are_padded_to_their_longest_utterance(tmp_path):
    data = F.SpeechData(F.compute_features(_utts(tmp_path, ["a b.", "cd.", "efg."]), F.FeatureConfig()))
    batch = data.batch(torch.tensor([0, 1]))
    lens = data.lengths[[0, 1]]
    assert batch["feats"].shape == (2, int(lens.max()), 80)
    assert batch["feat_lens"].tolist() == lens.tolist()
    assert torch.all(batch["feats"][0, lens[0] :] == 0)
    assert batch["tokens"].tolist() == vocab.pad_tokens([vocab.encode("a b."), vocab.encode("cd.")]).tolist()
