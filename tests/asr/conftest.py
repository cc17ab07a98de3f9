"""A tiny espeak-ng corpus built once per test session (skipped where espeak-ng is missing)."""

import shutil

import pytest

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
