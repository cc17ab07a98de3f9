import shutil

import pytest

from dllab.data import espeak_corpus as ec
from dllab.data.ljspeech import SAMPLE_RATE, read_metadata, read_wav
from dllab.data.text import CHARACTERS as SYMBOLS
from dllab.errors import UserError
from dllab.io import cache_dir


def test_clauses_are_normalised_bounded_and_unique():
    verses = [
        "And God said, Let there be light: and there was light.",
        "Vanity of vanities; all is vanity!",
        "And God said, Let there be light: again.",
    ]
    out = ec.clauses(verses, min_words=3, max_words=7)
    assert out == [
        "and god said, let there be light.",
        "and there was light.",
        "vanity of vanities.",
        "all is vanity.",
    ]
    assert all(set(c) <= set(SYMBOLS) for c in out)


def test_plan_is_deterministic_and_checks_size():
    cfg = ec.CorpusConfig(size=3, seed=1)
    sentences = ["a b c d.", "e f g h.", "i j k l.", "m n o p."]
    assert ec.plan_corpus(cfg, sentences) == ec.plan_corpus(cfg, sentences)
    with pytest.raises(UserError, match="only 4 distinct sentences"):
        ec.plan_corpus(ec.CorpusConfig(size=5), sentences)


def test_cache_folder_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path))
    assert cache_dir("espeak") == tmp_path / "espeak"
    assert ec.corpus_name(ec.CorpusConfig()) != ec.corpus_name(ec.CorpusConfig(seed=1))
    assert ec.corpus_name(ec.CorpusConfig()) == ec.corpus_name(ec.CorpusConfig(workers=7))


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian package bible-kjv not installed")
def test_kjv_source_yields_thousands_of_clauses():
    verses = ec.kjv_verses(("Pr",))
    assert len(verses) == 915  # Proverbs has 915 verses in the KJV
    assert len(ec.clauses(verses, 4, 16)) > 800


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_build_corpus_writes_ljspeech_layout_once(tmp_path, monkeypatch):
    sentences = ["the lord is my shepherd.", "let there be light.", "a time to plant."]
    cfg = ec.CorpusConfig(size=3, rate_min=230, rate_max=240)
    root = ec.build_corpus(cfg, root=tmp_path / "c", sentences=sentences, show_progress=False)
    utts = read_metadata(root)
    assert sorted(u.normalized for u in utts) == sorted(sentences)
    audio = read_wav(utts[0].wav)
    assert 0.3 * SAMPLE_RATE < len(audio) < 5 * SAMPLE_RATE and abs(audio).max() > 0.01
    # A finished corpus is reused: no synthesis the second time.
    monkeypatch.setattr(ec, "synthesize", lambda *a, **k: pytest.fail("re-synthesised a finished corpus"))
    assert ec.build_corpus(cfg, root=root, sentences=sentences, show_progress=False) == root


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_a_stale_corpus_is_noticed_and_rebuilt(tmp_path, monkeypatch):
    sentences = ["the lord is my shepherd.", "let there be light.", "a time to plant."]
    cfg = ec.CorpusConfig(size=3, rate_min=230, rate_max=240)
    root = ec.build_corpus(cfg, root=tmp_path / "c", sentences=sentences, show_progress=False)
    spoken = []
    real = ec.synthesize

    def counting(text, path, *a, **k):
        spoken.append(text)
        real(text, path, *a, **k)

    monkeypatch.setattr(ec, "synthesize", counting)
    wav = sorted((root / "wavs").glob("*.wav"))[0]
    wav.write_bytes(b"RIFF replaced by hand")  # a wav changed in the cache: just that one is spoken again
    ec.build_corpus(cfg, root=root, sentences=sentences, show_progress=False)
    assert len(spoken) == 1 and wav.stat().st_size > 1000
    ec.build_corpus(cfg, root=root, sentences=sentences, show_progress=False)
    assert len(spoken) == 1  # unchanged: reused
    other = ["the lord is my light.", *sentences[1:]]  # other source sentences: the whole corpus again
    ec.build_corpus(cfg, root=root, sentences=other, show_progress=False)
    assert len(spoken) == 4 and "the lord is my light." in (root / "metadata.csv").read_text()
    fingerprint = ec.espeak_fingerprint()
    monkeypatch.setattr(ec, "espeak_fingerprint", lambda: {**fingerprint, "version": "eSpeak NG 9.99"})
    ec.build_corpus(cfg, root=root, sentences=other, show_progress=False)  # another espeak-ng: rebuilt
    assert len(spoken) == 7
