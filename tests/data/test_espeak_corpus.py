import shutil

import pytest

from dllab.data import espeak_corpus as ec
from dllab.data.ljspeech import SAMPLE_RATE, read_metadata, read_wav
from dllab.data.text import CHARACTERS as SYMBOLS
from dllab.errors import UserError
from dllab.io import cache_dir
from synthetic import race_two_builders


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


def test_verses_are_kept_whole_and_long_ones_split_at_the_clause_nearest_the_middle():
    long = (
        "And it came to pass, when the king heard the words of the law, that he rent his clothes; "
        "and the king commanded the priest, and the scribe, and the servant of the king, saying, "
        "Go ye, enquire of the LORD for me."
    )
    out = ec.verses_split(["Jesus wept.", long, "Jesus wept.", "In the beginning God created the heaven"], 100)
    assert out[0] == "jesus wept." and out[-1] == "in the beginning god created the heaven."
    pieces = out[1:-1]
    assert all(len(p) <= 100 for p in pieces) and len(pieces) >= 2
    assert " ".join(pieces).replace(". ", ", ").rstrip(".") in ec.normalize(long).replace(". ", ", ")
    assert pieces[0].endswith("clothes.")  # the `;` nearest the middle
    assert ec.verses_split([long], 400) == [ec.normalize(long)]


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian package bible-kjv not installed")
def test_verse_corpus_has_ljspeechs_lengths():
    """Whole KJV verses (split over 190 characters): LJSpeech has mean 99.9, longest 187, 55% over 97."""
    out = ec.verses_split(ec.kjv_verses(), 190)
    lengths = [len(t) for t in out]
    assert len(out) > 10_000
    assert 95 <= sum(lengths) / len(lengths) <= 110 and max(lengths) <= 190
    assert 0.45 <= sum(n > 97 for n in lengths) / len(lengths) <= 0.6


def test_one_speaker_reads_everything_with_one_voice_rate_and_pitch():
    sentences = [f"sentence number {w}." for w in ("one", "two", "three", "four", "five")]
    plans = ec.plan_corpus(ec.CorpusConfig(size=5, one_speaker=True), sentences)
    assert {(p.voice, p.rate, p.pitch) for p in plans} == {("en-us", 170, 50)}
    many = ec.plan_corpus(ec.CorpusConfig(size=5), sentences)
    assert len({(p.voice, p.rate, p.pitch) for p in many}) > 1


def test_new_options_at_their_defaults_keep_the_old_corpus_names():
    # Names of corpora built before `unit`, `max_chars` and `one_speaker` existed.
    assert ec.corpus_name(ec.CorpusConfig()) == "kjv-2400-5122693b"
    assert ec.corpus_name(ec.CorpusConfig(size=48)) == "kjv-48-8c5bcffc"
    names = {ec.corpus_name(ec.CorpusConfig(**kw)) for kw in ({}, {"unit": "verse"}, {"one_speaker": True})}
    assert len(names) == 3
    with pytest.raises(UserError, match="max_chars"):
        ec.plan_corpus(ec.CorpusConfig(size=3, unit="verse", max_chars=5), ["a b c.", "d e f.", "g h i."])


def test_two_builders_of_one_corpus_take_turns_and_synthesise_once(tmp_path, monkeypatch, caplog):
    """The second build of a corpus under way waits for the first (saying so), then reuses its wavs."""
    import threading

    import numpy as np
    import soundfile

    sentences = ["the lord is my shepherd.", "let there be light.", "a time to plant."]
    spoken, inside, go = [], threading.Event(), threading.Event()

    def fake_synthesize(text, path, voice, rate, pitch):  # espeak-ng's part, without espeak-ng
        spoken.append(text)
        inside.set()
        assert go.wait(60)
        soundfile.write(path, np.full(SAMPLE_RATE // 2, 0.1, np.float32), SAMPLE_RATE)

    monkeypatch.setattr(ec, "synthesize", fake_synthesize)
    monkeypatch.setattr(ec, "espeak_fingerprint", lambda: None)
    cfg, root, results = ec.CorpusConfig(size=3, workers=1), tmp_path / "c", {}

    def build(name):
        results[name] = ec.build_corpus(cfg, root=root, sentences=sentences, show_progress=False)

    race_two_builders(build, inside, go, caplog)
    assert sorted(spoken) == sorted(sentences)  # each sentence spoken once, by the first builder
    assert results == {"first": root, "second": root}
    assert str(root) in caplog.text and len(read_metadata(root)) == 3
