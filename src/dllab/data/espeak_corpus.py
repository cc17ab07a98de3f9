"""The embedded speech corpus: public-domain English sentences spoken by espeak-ng, in the LJSpeech layout.

Source text: the King James Version of the Bible (1611; its copyright has long expired, see
/usr/share/doc/bible-kjv-text/copyright) as shipped by the Debian packages `bible-kjv-text` (the text) and
`bible-kjv` (the `bible` program that prints it), normalised onto the notebook's vocabulary
(`data.text.normalize`), de-duplicated, shuffled with `seed`; the first `size` are spoken. Two units:

    clause   verses cut at `;`, `:` and sentence ends into clauses of `min_words`..`max_words` words, at most
             97 characters (the course's 99-token cap): short speech, about 3 s
    verse    whole verses, a verse over `max_chars` split at the clause boundary nearest its middle: LJSpeech's
             lengths (mean about 100 characters, longest under 190, about half over 97; 1-10 s of speech)

Speech: espeak-ng (Debian package `espeak-ng`), one of several English voices and voice variants, a
speaking rate and a pitch drawn per utterance from `seed` (or, with `one_speaker`, one voice at one rate and
pitch, as LJSpeech has one reader), written at 22,050 Hz mono as `wavs/<id>.wav`, with `metadata.csv` lines
`id|text|normalized` (both transcripts are the normalised text: espeak-ng speaks exactly what the model must
write).

`build_corpus(cfg)` builds once into `<cache>/espeak/<name>/` (cache = `dllab.io.cache_dir()`)
and later calls return the finished folder; a half-built corpus is never mistaken for a finished one.
The folder's name is keyed by the config; its `corpus.json` records what the corpus was derived from (a
hash of the source sentences, the espeak-ng version and its data files' stamps) and each wav's size and
modification time. A later call rebuilds when any of that changed: new sentences, another espeak-ng, a
wav replaced or deleted in the cache. (A part that cannot be measured here, say espeak-ng is not
installed, is not compared: the corpus is then used as built.) A build holds `.<name>.lock` beside the
folder (`dllab.io.building`): a second process asking for the same corpus meanwhile waits, then uses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from dllab.config import option, to_dict
from dllab.data.text import normalize
from dllab.engine.logs import progress
from dllab.errors import UserError
from dllab.io import (
    atomic_write_json,
    atomic_write_text,
    building,
    cache_dir,
    file_stamp,
    read_json_or_none,
    sha256_text,
)

log = logging.getLogger(__name__)

# The books read, in order (Proverbs, Ecclesiastes, the Psalms, the narrative books, the gospels...).
KJV_BOOKS: tuple[str, ...] = ("Pr", "Ec", "Ps", "Ge", "Ex", "Ru", "Job", "Mt", "Mr", "Lu", "Joh", "Ac", "Ro")
VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbcwmd")
VARIANTS: tuple[str, ...] = ("", "m1", "m3", "m5", "f1", "f2", "f4")


@dataclass(frozen=True)
class CorpusConfig:
    size: int = option(2400, "utterances to synthesise (the course split keeps 75% / 5% / 20%)", ge=3)
    seed: int = option(0, "seeds the choice of sentences, voices, rates and pitches", ge=0, lt=2**32)
    min_words: int = option(4, "shortest clause kept, in words", ge=1, le_field="max_words")
    max_words: int = option(16, "longest clause kept, in words", ge=1)
    voices: tuple[str, ...] = option(VOICES, "espeak-ng voices drawn from", min_len=1)
    variants: tuple[str, ...] = option(VARIANTS, "espeak-ng voice variants drawn from ('' = none)")
    rate_min: int = option(140, "slowest speaking rate, words per minute", ge=80, le=450, le_field="rate_max")
    rate_max: int = option(200, "fastest speaking rate, words per minute", ge=80, le=450)
    pitch_min: int = option(30, "lowest pitch (espeak-ng 0-99)", ge=0, le=99, le_field="pitch_max")
    pitch_max: int = option(70, "highest pitch (espeak-ng 0-99)", ge=0, le=99)
    workers: int = option(2, "espeak-ng processes run at once", ge=1, le=256)
    unit: Literal["clause", "verse"] = option(
        "clause",
        "clause: clauses of min_words..max_words words (short speech); verse: whole verses, split over "
        "max_chars (LJSpeech's lengths: mean about 100 characters)",
    )
    max_chars: int = option(190, "verse: the longest utterance in characters (LJSpeech's longest has 187)", ge=1)
    one_speaker: bool = option(
        False, "one reader as LJSpeech: the first voice, no variant, the middle rate and pitch"
    )


# The course notebook caps a transcript at 99 tokens, its start and end markers included.
MAX_CLAUSE_CHARACTERS = 97
# Options added after corpora were first built: at their defaults they stay out of the name, so that the
# corpora built before them keep their folders.
_LATER_OPTIONS = ("unit", "max_chars", "one_speaker")


def corpus_name(cfg: CorpusConfig) -> str:
    """A folder name that changes whenever anything that shapes the corpus changes (not `workers`)."""
    defaults = {f.name: f.default for f in fields(CorpusConfig)}
    shape = {
        k: v
        for k, v in to_dict(cfg).items()
        if k != "workers" and not (k in _LATER_OPTIONS and v == defaults[k])
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:8]
    return f"kjv-{cfg.size}-{digest}"


def _require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise UserError(
            f"`{program}` not found: install the Debian package {package} (apt-get install {package})"
        )
    return path


def kjv_verses(books: Sequence[str] = KJV_BOOKS) -> list[str]:
    """The verses of `books`, as printed by the `bible` program of the Debian package bible-kjv."""
    program = _require("bible", "bible-kjv")
    specs = [f"{book}1:1-999:999" for book in books]
    result = subprocess.run([program, "-l0", *specs], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(
            f"`bible` failed ({result.stderr.strip() or result.returncode}): is bible-kjv-text installed?"
        )
    verses = [m.group(1) for m in re.finditer(r"^\s+\d+ (.+)$", result.stdout, flags=re.MULTILINE)]
    if not verses:
        raise UserError("`bible` printed no verses: is the Debian package bible-kjv-text installed?")
    return verses


def clauses(verses: Sequence[str], min_words: int, max_words: int) -> list[str]:
    """Normalised clauses of `min_words`..`max_words` words that fit the decoder's token budget."""
    out, seen = [], set()
    for verse in verses:
        for piece in re.findall(r"[^;:.?!]+[;:.?!]?", verse):
            clause = normalize(piece).rstrip(",")
            if not clause:
                continue
            if clause[-1] not in ".?":
                clause += "."
            n = len(clause.split())
            if min_words <= n <= max_words and len(clause) <= MAX_CLAUSE_CHARACTERS and clause not in seen:
                seen.add(clause)
                out.append(clause)
    return out


def _sentence(text: str) -> str:
    """Normalised text ending in `.` or `?` (a trailing comma dropped), as an utterance's transcript."""
    text = normalize(text).rstrip(",").strip()
    if text and text[-1] not in ".?":
        text += "."
    return text


def _halves(text: str, max_chars: int) -> list[str]:
    """`text` (raw) cut at the clause boundary (`;:,.?!`) nearest its middle, again until every piece fits
    `max_chars` once normalised; a piece without a boundary is cut at the space nearest its middle."""
    if len(_sentence(text)) <= max_chars:
        return [text]
    cuts = [m.end() for m in re.finditer(r"[;:,.?!](?=\s)", text)] or [m.start() for m in re.finditer(r" ", text)]
    if not cuts:
        return [text]  # one long word: nothing to cut at
    at = min(cuts, key=lambda c: abs(c - len(text) / 2))
    return _halves(text[:at], max_chars) + _halves(text[at:], max_chars)


def verses_split(verses: Sequence[str], max_chars: int) -> list[str]:
    """Whole verses, normalised; a verse longer than `max_chars` is cut into pieces at the clause boundaries
    nearest its middle. Duplicates are dropped."""
    out, seen = [], set()
    for verse in verses:
        for piece in _halves(verse, max_chars):
            text = _sentence(piece)
            if text and text not in seen and len(text) <= max_chars:
                seen.add(text)
                out.append(text)
    return out


def synthesize(text: str, path: Path, voice: str, rate: int, pitch: int) -> None:
    """Speak `text` into the 22,050 Hz mono wav `path` with espeak-ng."""
    program = _require("espeak-ng", "espeak-ng")
    cmd = [program, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(path), "--stdin"]
    result = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not path.exists():
        raise UserError(f"espeak-ng failed on {path.name} ({' '.join(cmd)}): {result.stderr.strip()}")


@dataclass(frozen=True)
class Plan:
    id: str
    text: str
    voice: str
    rate: int
    pitch: int


def plan_corpus(cfg: CorpusConfig, sentences: Sequence[str] | None = None) -> list[Plan]:
    """What each utterance says and how; `sentences` defaults to the KJV clauses."""
    if cfg.size < 3:
        raise UserError(f"--corpus.size: need at least 3 utterances (train / val / test), got {cfg.size}")
    if not cfg.voices:
        raise UserError("--corpus.voices: give at least one espeak-ng voice")
    if cfg.unit == "verse" and cfg.max_chars < 10:
        raise UserError(f"--corpus.max_chars: expected at least 10 characters, got {cfg.max_chars}")
    if sentences is None and cfg.unit == "verse":
        sentences = verses_split(kjv_verses(), cfg.max_chars)
    elif sentences is None:
        sentences = clauses(kjv_verses(), cfg.min_words, cfg.max_words)
    rng = random.Random(cfg.seed)
    pool = list(sentences)
    rng.shuffle(pool)
    if len(pool) < cfg.size:
        raise UserError(
            f"--corpus.size: only {len(pool)} distinct sentences are available, asked for {cfg.size}"
        )
    plans = []
    for i, text in enumerate(pool[: cfg.size]):
        if cfg.one_speaker:
            voice, rate, pitch = cfg.voices[0], (cfg.rate_min + cfg.rate_max) // 2, (cfg.pitch_min + cfg.pitch_max) // 2
        else:
            voice, variant = rng.choice(cfg.voices), rng.choice(cfg.variants or ("",))
            voice = f"{voice}+{variant}" if variant else voice
            rate, pitch = rng.randint(cfg.rate_min, cfg.rate_max), rng.randint(cfg.pitch_min, cfg.pitch_max)
        plans.append(Plan(id=f"KJV-{i:05d}", text=text, voice=voice, rate=rate, pitch=pitch))
    return plans


def espeak_fingerprint() -> dict[str, Any] | None:
    """espeak-ng's version line and the stamps of its English data files; None when it is not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        return None
    result = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    line = result.stdout.strip()
    data = re.search(r"Data at:\s*(\S+)", line)
    files = {}
    if data:
        for name in ("phondata", "phontab", "en_dict"):
            path = Path(data.group(1)) / name
            if path.is_file():
                files[name] = file_stamp(path)
    return {"version": line, "data": files}


def _sources(cfg: CorpusConfig, sentences: Sequence[str] | None) -> dict[str, Any]:
    """What the corpus is derived from: the sentences (hashed) and the synthesiser (see the module docstring)."""
    if sentences is None:
        try:
            text = "\n".join(kjv_verses())
        except UserError:  # `bible` missing: a finished corpus is used as built
            text = None
    else:
        text = "\n".join(sentences)
    return {"sentences_sha256": None if text is None else sha256_text(text), "espeak": espeak_fingerprint()}


def _same_sources(recorded: Any, current: dict[str, Any]) -> bool:
    if not isinstance(recorded, dict):
        return False
    return all(recorded.get(k) == v for k, v in current.items() if v is not None)


def _stale_wavs(root: Path, record: dict[str, Any]) -> list[Path]:
    """Wavs listed in corpus.json that are missing or changed since they were written."""
    stale = []
    for u in record.get("utterances", []):
        path = root / "wavs" / f"{u['id']}.wav"
        try:
            if "wav" in u and file_stamp(path) != u["wav"]:
                stale.append(path)
        except OSError:
            stale.append(path)
    return stale


def build_corpus(
    cfg: CorpusConfig = CorpusConfig(),
    root: Path | None = None,
    sentences: Sequence[str] | None = None,
    show_progress: bool = True,
) -> Path:
    """Build (once) and return the corpus folder: `metadata.csv`, `wavs/`, `corpus.json`.

    `root` defaults to `cache_dir() / "espeak" / corpus_name(cfg)`; a folder with `corpus.json` is finished
    and returned as is while its sources and wavs are unchanged (see the module docstring); otherwise the
    changed part is rebuilt, under the corpus's build lock (one builder at a time; the others wait, then
    find it finished). Wavs already written by an interrupted build are reused.
    """
    if root is None:
        root = cache_dir() / "espeak" / corpus_name(cfg)
    root = Path(root)
    sources = _sources(cfg, sentences)
    if _is_current(root, sources):  # no lock needed to read a finished corpus (it may be read-only)
        return root
    with building(root):
        return _build(cfg, root, sentences, sources, show_progress)


def _is_current(root: Path, sources: dict[str, Any]) -> bool:
    record = read_json_or_none(root / "corpus.json")
    return (isinstance(record, dict) and "sources" in record and _same_sources(record["sources"], sources)
            and not _stale_wavs(root, record))  # fmt: skip


def _build(
    cfg: CorpusConfig, root: Path, sentences: Sequence[str] | None, sources: dict[str, Any], show_progress: bool
) -> Path:
    """`build_corpus`'s work, under the build lock: the corpus checked again (the builder this process
    waited for has usually finished it), then what is missing or stale synthesised."""
    record = read_json_or_none(root / "corpus.json")
    if isinstance(record, dict) and "sources" not in record:  # built before sources were recorded: adopt it
        record = {**record, "sources": sources, "utterances": [
            {**u, "wav": file_stamp(root / "wavs" / f"{u['id']}.wav")} for u in record.get("utterances", [])
            if (root / "wavs" / f"{u['id']}.wav").is_file()]}  # fmt: skip
        atomic_write_json(root / "corpus.json", record)
    if isinstance(record, dict):
        if not _same_sources(record.get("sources"), sources):
            log.warning("%s: its sentences or espeak-ng changed since it was built: rebuilding", root)
            shutil.rmtree(root / "wavs", ignore_errors=True)
        elif stale := _stale_wavs(root, record):
            log.warning("%s: %d wav(s) missing or changed since the build: re-synthesising", root, len(stale))
            for path in stale:
                path.unlink(missing_ok=True)
        else:
            return root
        (root / "corpus.json").unlink(missing_ok=True)  # unfinished again until the rebuild ends
    plans = plan_corpus(cfg, sentences)
    wavs = root / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    todo = [p for p in plans if not (wavs / f"{p.id}.wav").is_file()]
    log.info("synthesising %d utterances with espeak-ng into %s", len(todo), root)

    def work(p: Plan) -> None:
        tmp = wavs / f".{p.id}.tmp.wav"
        synthesize(p.text, tmp, p.voice, p.rate, p.pitch)
        tmp.replace(wavs / f"{p.id}.wav")

    with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        for _ in progress(pool.map(work, todo), total=len(todo), desc="espeak-ng", enabled=show_progress):
            pass
    atomic_write_text(root / "metadata.csv", "".join(f"{p.id}|{p.text}|{p.text}\n" for p in plans))
    atomic_write_json(
        root / "corpus.json",
        {
            "source": "King James Version (1611, public domain), Debian packages bible-kjv / bible-kjv-text"
            if sentences is None
            else "sentences given by the caller",
            "synthesiser": "espeak-ng",
            "config": to_dict(cfg),
            "sources": sources,
            "utterances": [
                {"id": p.id, "voice": p.voice, "rate": p.rate, "pitch": p.pitch,
                 "wav": file_stamp(wavs / f"{p.id}.wav")}
                for p in plans
            ],
        },
    )
    return root
