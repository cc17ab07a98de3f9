"""A tiny espeak-ng corpus built once per test session (skipped where espeak-ng is missing), and one epoch of
each decoder trained on it."""

import shutil

import pytest

from dllab.cli import main

SENTENCES = [
    "the lord is my shepherd.",
    "a soft answer turneth away wrath.",
    "go to the ant, thou sluggard.",
    "let there be light.",
    "wisdom is better than rubies.",
    "the sea is his, and he made it.",
    "how long shall i cry?",
    "a time to plant.",
]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from dllab.data.espeak_corpus import CorpusConfig, build_corpus

    cfg = CorpusConfig(size=len(SENTENCES), rate_min=220, rate_max=240)
    return build_corpus(
        cfg, root=tmp_path_factory.mktemp("corpus") / "tiny", sentences=SENTENCES, show_progress=False
    )


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dllab-cache")


@pytest.fixture
def cache_env(monkeypatch, tiny_cache):
    monkeypatch.setenv("DLLAB_CACHE", str(tiny_cache))


@pytest.fixture(scope="session")
def trained(tiny_corpus, tiny_cache, tmp_path_factory):
    """One epoch of each decoder on the tiny corpus: runs/asr/{lstm,transformer,taylor}."""
    import os

    runs = tmp_path_factory.mktemp("runs")
    old = os.environ.get("DLLAB_CACHE")
    os.environ["DLLAB_CACHE"] = str(tiny_cache)
    try:
        for decoder in ("lstm", "transformer", "taylor"):
            code = main(
                [
                    "asr",
                    "train",
                    "--decoder",
                    decoder,
                    "--runs",
                    str(runs),
                    "--data.corpus",
                    str(tiny_corpus),
                    "--epochs",
                    "1",
                    "--warmup_steps",
                    "1",
                    "--eval_batch_size",
                    "4",
                    "--decode_max_len",
                    "12",
                ]
            )
            assert code == 0
    finally:
        if old is None:
            os.environ.pop("DLLAB_CACHE")
        else:
            os.environ["DLLAB_CACHE"] = old
    return runs


# Transcripts of the generated long corpus: split_ranges(12) gives train 0-8, validation 9, test 10-11.
LONG_TEXTS = [
    "a short one.",
    "and the second is longer than the first, but not by much.",
    "x" * 60 + ".",
    "y " * 65 + "end.",  # 134 characters: longer than the course's 97
    "tiny.",
    "medium length sentence here, with a comma.",
    "z" * 40,
    "q " * 30,
    "another short transcript.",
    "v " * 75 + ".",  # validation: 151 characters
    "w" * 45,  # test: <= 50
    "the longest of them all, " * 6 + "said he.",  # test: 158 characters
]


@pytest.fixture(scope="session")
def long_corpus(tmp_path_factory):
    """A generated LJSpeech-layout corpus (noise bursts, about 0.1 s per 5 characters) whose validation and
    test splits hold transcripts longer than the course's 99-token cap; no espeak-ng needed."""
    import numpy as np
    import soundfile

    root = tmp_path_factory.mktemp("long") / "corpus"
    (root / "wavs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, text in enumerate(LONG_TEXTS):
        uid = f"L-{i:03d}"
        seconds = 0.3 + len(text) / 50
        audio = (0.1 * rng.standard_normal(int(22_050 * seconds))).astype(np.float32)
        soundfile.write(root / "wavs" / f"{uid}.wav", audio, 22_050)
        lines.append(f"{uid}|{text}|{text}\n")
    (root / "metadata.csv").write_text("".join(lines))
    return root


@pytest.fixture(scope="session")
def long_texts():
    """The transcripts of `long_corpus`, in order."""
    return list(LONG_TEXTS)
