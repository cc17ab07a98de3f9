"""LJSpeech-1.1 layout: `metadata.csv` with `id|text|normalized text` lines and `wavs/<id>.wav` at 22,050 Hz.

The same reader serves the real corpus (https://keithito.com/LJ-Speech-Dataset/, 13,100 clips, public
domain) and the embedded espeak-ng corpus (`dllab.data.espeak_corpus`), which is written in this layout.
The course split the real corpus by index: train 0-9825, validation 9825-10480, test 10480-13100;
`split_ranges` keeps those fractions for corpora of any size.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dllab.errors import UserError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 22_050
LJSPEECH_SIZE = 13_100
COURSE_SPLIT = (9_825, 10_480)  # train [0, 9825), validation [9825, 10480), test [10480, 13100)
LJSPEECH_URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"


@dataclass(frozen=True)
class Utterance:
    id: str
    text: str  # the raw transcript
    normalized: str  # numbers and abbreviations spelled out: what the models learn
    wav: Path


def read_metadata(root: str | Path) -> list[Utterance]:
    """Parse `root/metadata.csv`; every line needs three `|`-separated fields and a normalized transcript
    with at least one letter once folded onto the models' characters (`data.text.normalize`): a line such as
    `LJ001-0001|||` is an error naming the file and line, whatever its column count."""
    from dllab.data.text import normalize

    root = Path(root)
    path = root / "metadata.csv"
    if not path.is_file():
        raise UserError(f"{path}: not found (expected an LJSpeech-layout corpus at {root})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err})") from None
    utterances, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 3:
            raise UserError(
                f"{path}:{number}: expected 3 '|'-separated columns (id|text|normalized), got {len(fields)}"
            )
        uid, text, normalized = fields[0].strip(), fields[1].strip(), "|".join(fields[2:]).strip()
        if not uid:
            raise UserError(f"{path}:{number}: empty id")
        if not normalized or not any(ch.isalpha() for ch in normalize(normalized)):
            raise UserError(
                f"{path}:{number}: empty transcript for {uid} (the normalized column {normalized!r} holds no letters)"
            )
        if uid in seen:
            raise UserError(f"{path}:{number}: duplicate id {uid}")
        seen.add(uid)
        utterances.append(Utterance(uid, text, normalized, root / "wavs" / f"{uid}.wav"))
    if not utterances:
        raise UserError(f"{path}: no utterances")
    return utterances


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) float32 mono samples at `sample_rate`; other rates are resampled, with a warning naming it."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: audio file not found")
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or TypeError for bad files
        raise UserError(f"{path}: cannot read audio ({err})") from None
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise UserError(f"{path}: audio file has no samples")
    if rate != sample_rate:
        import librosa
        import numpy as np

        log.warning("%s: sample rate %d Hz, resampled to %d Hz", path, rate, sample_rate)
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
    return audio


def split_ranges(n: int) -> dict[str, range]:
    """Index ranges of train / validation / test: the course's split, scaled to `n` utterances."""
    a = round(n * COURSE_SPLIT[0] / LJSPEECH_SIZE)
    b = round(n * COURSE_SPLIT[1] / LJSPEECH_SIZE)
    b = max(b, a + 1) if n >= 3 else b
    return {"train": range(0, a), "val": range(a, b), "test": range(b, n)}


def download_ljspeech(dest: str | Path) -> Path:
    """Download and unpack LJSpeech-1.1 (2.6 GB) under `dest`; returns the corpus root."""
    dest = Path(dest)
    root = dest / "LJSpeech-1.1"
    if (root / "metadata.csv").is_file():
        return root
    dest.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", LJSPEECH_URL, dest)
    with tempfile.NamedTemporaryFile(dir=dest, suffix=".tar.bz2") as tmp:
        try:
            urllib.request.urlretrieve(LJSPEECH_URL, tmp.name)
        except OSError as err:
            raise UserError(
                f"cannot download LJSpeech from {LJSPEECH_URL} ({err}); fetch it by hand, pass its folder"
            ) from None
        with tarfile.open(tmp.name) as tar:
            tar.extractall(dest, filter="data")
    return root
