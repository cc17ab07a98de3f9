"""SIGMORPHON 2021 Task 1 (multilingual grapheme-to-phoneme): its files, languages, symbols and baseline.

One word a line, `<spelling>\\t<space-separated phones>`, NFC (WikiPron data, CC BY-SA 3.0). The task's
folder holds `high/`, `medium/` and `low/`, each with `<language>_train.tsv`, `<language>_dev.tsv` and, for
those who have them, `<language>_test.tsv`.

    SUBTASKS, LANGUAGES        the 21 languages by subtask (high 1, medium 10, low 10)
    BASELINE_DEV, BASELINE_TEST  the published baseline's WER (x100) per language (Makarov & Clematide 2018's
                               ensembled neural transducer, as the task's README reports it)
    language_files(root, lang) the subtask and train / dev / test paths of one language
    read_task_pairs(path)      (phones, spelling) pairs of a task file, errors naming file and line
    is_covered / read_task_words  a covered test file (spellings only) and its words
    split_units / join_units   a side of a pair as symbols: phones split on spaces; spellings as grapheme
                               clusters (combining marks stay with their letter), code points, or NFD code
                               points (Hangul syllables as jamo), and back to NFC text
    task_wer                   the task's WER: % of words whose output phones (or spelling) differ from gold
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dllab.errors import UserError

DEFAULT_DIR = "../shared/data/sigmorphon2021"

SUBTASKS: dict[str, tuple[str, ...]] = {
    "high": ("eng_us",),
    "medium": ("arm_e", "bul", "dut", "fre", "geo", "hbs_latn", "hun", "jpn_hira", "kor", "vie_hanoi"),
    "low": ("ady", "gre", "ice", "ita", "khm", "lav", "mlt_latn", "rum", "slv", "wel_sw"),
}
LANGUAGES: dict[str, str] = {lang: subtask for subtask, langs in SUBTASKS.items() for lang in langs}

# The baseline's WER (x100), dev and test, per language and macro per subtask (the task's README).
BASELINE_DEV: dict[str, float] = {
    "eng_us": 45.13,
    "arm_e": 4.50, "bul": 8.30, "dut": 10.80, "fre": 7.40, "geo": 0.00, "hbs_latn": 34.70, "hun": 1.50,
    "jpn_hira": 6.20, "kor": 18.40, "vie_hanoi": 1.30,
    "ady": 22, "gre": 5, "ice": 11, "ita": 22, "khm": 34, "lav": 41, "mlt_latn": 20, "rum": 10, "slv": 43,
    "wel_sw": 16,
}  # fmt: skip
BASELINE_TEST: dict[str, float] = {
    "eng_us": 41.94,
    "arm_e": 7.00, "bul": 18.30, "dut": 14.70, "fre": 8.50, "geo": 0.00, "hbs_latn": 32.10, "hun": 1.80,
    "jpn_hira": 5.20, "kor": 16.30, "vie_hanoi": 2.50,
    "ady": 22, "gre": 21, "ice": 12, "ita": 19, "khm": 34, "lav": 55, "mlt_latn": 20, "rum": 10, "slv": 49,
    "wel_sw": 10,
}  # fmt: skip
BASELINE_MACRO_DEV = {"high": 45.13, "medium": 9.35, "low": 22.40}
BASELINE_MACRO_TEST = {"high": 41.94, "medium": 10.64, "low": 25.10}

Units = Literal["phones", "graphemes", "codepoints", "decomposed"]


def select_languages(which: str) -> list[str]:
    """"high" / "medium" / "low" / "all" or a comma-separated list of language codes -> language codes."""
    if which == "all":
        return [lang for langs in SUBTASKS.values() for lang in langs]
    if which in SUBTASKS:
        return list(SUBTASKS[which])
    langs = [w.strip() for w in which.split(",") if w.strip()]
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if unknown or not langs:
        raise UserError(f"unknown language or subtask {', '.join(unknown) or repr(which)}: say high, medium, low, "
                        f"all, or languages among {', '.join(LANGUAGES)}")  # fmt: skip
    return langs


@dataclass(frozen=True)
class LanguageFiles:
    language: str
    subtask: str
    train: Path
    dev: Path
    test: Path | None  # the task's test split, when the user has it


def language_files(root: str | Path, language: str) -> LanguageFiles:
    """The files of `language` under the task's folder `root` (train and dev must be there)."""
    if language not in LANGUAGES:
        raise UserError(f"--data.language: {language!r} is not a SIGMORPHON 2021 language "
                        f"({', '.join(LANGUAGES)})")  # fmt: skip
    subtask = LANGUAGES[language]
    folder = Path(root) / subtask
    train, dev, test = (folder / f"{language}_{split}.tsv" for split in ("train", "dev", "test"))
    for path in (train, dev):
        if not path.exists():
            raise UserError(f"{path}: no such file; point --data.sigmorphon_dir at the task's data folder "
                            "(with high/, medium/, low/)")  # fmt: skip
    return LanguageFiles(language, subtask, train, dev, test if test.exists() else None)


def is_covered(path: str | Path) -> bool:
    """Whether a task file is a covered test file: named `.txt` (as the task hands its test data out,
    `<language>_test.txt`, before the gold is released) and holding no tab, so spellings only, one a line.
    A `.tsv` file is always read as pairs, so that a malformed one is an error, not a covered file."""
    path = Path(path)
    try:
        return path.suffix == ".txt" and b"\t" not in path.read_bytes()
    except OSError:
        return False  # the reader that follows names the problem


def read_task_words(path: str | Path) -> list[str]:
    """The spellings of a covered test file (NFC), one a line. A line with a tab, bytes that are not UTF-8 or an
    empty line among the words are a UserError naming the file and line; so is a file without words."""
    from dllab.data.wikipron import numbered_lines

    words = []
    for number, text, problem in numbered_lines(path):
        if problem is None and "\t" in text:
            problem = "a covered test file holds one spelling a line, found a tab"
        elif problem is None and not text.strip():
            problem = "empty line (a covered test file holds one spelling a line)"
        if problem is not None:
            raise UserError(f"{path}:{number}: {problem}")
        words.append(unicodedata.normalize("NFC", text.strip()))
    if not words:
        raise UserError(f"{path}: is empty (no words)")
    return words


def read_task_pairs(path: str | Path, skip_bad_lines: bool = False) -> tuple[list[tuple[tuple[str, ...], str]], int]:
    """(phones, spelling) pairs of a task file (NFC) and the count of bad lines skipped; see `wikipron.read_pairs`."""
    from dllab.data.wikipron import read_pairs

    return read_pairs(path, skip_bad_lines, spelling_first=True)


def split_units(text: str, units: Units) -> tuple[str, ...]:
    """A side of a pair as a symbol sequence.

    phones: split on whitespace. graphemes: extended grapheme clusters of the NFC text (Unicode's UAX #29, by
    the `regex` package's \\X), so a letter keeps its combining marks. codepoints: the NFC code points.
    decomposed: the NFD code points (a Hangul syllable becomes its two or three jamo)."""
    if units == "phones":
        return tuple(text.split())
    if units == "graphemes":
        import regex

        return tuple(regex.findall(r"\X", unicodedata.normalize("NFC", text)))
    if units == "codepoints":
        return tuple(unicodedata.normalize("NFC", text))
    if units == "decomposed":
        return tuple(unicodedata.normalize("NFD", text))
    raise ValueError(f"unknown units {units!r}")


def join_units(symbols: Sequence[str], units: Units) -> str:
    """The text of a symbol sequence: phones joined by spaces, spelling symbols concatenated (NFC)."""
    if units == "phones":
        return " ".join(symbols)
    return unicodedata.normalize("NFC", "".join(symbols))


def task_wer(hyps: Sequence[str], golds: Sequence[str]) -> float:
    """The task's WER (x100): % of words whose output differs from gold, both split on whitespace and compared
    as lists (as the task's evaluation does), so extra spaces do not count."""
    if len(hyps) != len(golds):
        raise ValueError(f"{len(hyps)} outputs for {len(golds)} gold words")
    if not golds:
        raise ValueError("no words: WER is undefined")
    wrong = sum(h.split() != g.split() for h, g in zip(hyps, golds, strict=True))
    return 100 * wrong / len(golds)
