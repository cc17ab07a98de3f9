"""The course's phoneme-to-spelling files (WikiPron format): `<space-separated IPA symbols>\\t<spelling>`.

One pair per UTF-8 line. Phonemes are split on whitespace only, so a multi-codepoint symbol such as
"t͡ʃ" or "iː" stays one token; the spelling is kept as written (case-sensitive, accents included) and is
tokenised into characters (code points). A split directory holds train.tsv, valid.tsv and optionally
test.tsv (the course hands out train and valid; without test.tsv the validation file doubles as test).

    numbered_lines(path)   a text file's lines with their numbers and any decoding problem (shared readers)
    read_pairs(path)       the pairs of a file, errors naming file and line
    load_split_dir(dir)    train / valid / test of a split directory
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dllab.errors import UserError

log = logging.getLogger(__name__)

Pair = tuple[tuple[str, ...], str]  # (phoneme symbols, spelling)


@dataclass(frozen=True)
class P2GSplits:
    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    source: str  # where the pairs came from, for run configs and reports
    test_is_valid: bool = False  # True when there was no test file and `test` is the validation split


def numbered_lines(path: str | Path) -> list[tuple[int, str, str | None]]:
    """(line number, text, problem) of each line of a text file: the final newline, a leading byte-order
    mark and carriage returns dropped; `problem` names bytes that are not UTF-8 (the text is then ""). A
    file that cannot be read is a UserError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline
    out = []
    for number, line in enumerate(lines, 1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            out.append((number, "", f"not valid UTF-8 (byte {err.start + 1})"))
            continue
        out.append((number, text[1:] if number == 1 and text.startswith("\ufeff") else text, None))
    return out


def read_pairs(
    path: str | Path, skip_bad_lines: bool = False, spelling_first: bool = False
) -> tuple[list[Pair], int]:
    """Pairs of a TSV file and the number of bad lines skipped.

    Lines are `<phonemes>\t<spelling>` (the course), or with `spelling_first` `<spelling>\t<phonemes>`
    (SIGMORPHON 2021 Task 1, see `dllab.data.sigmorphon`); either way a pair is (phonemes, spelling).
    A bad line (not exactly one tab, an empty side, bytes that are not UTF-8) is a UserError naming the
    file and line, or with `skip_bad_lines` is skipped and counted. A file without pairs is a UserError."""
    path = Path(path)
    lines = numbered_lines(path)
    layout = "<spelling>\\t<phonemes>" if spelling_first else "<phonemes>\\t<spelling>"
    pairs: list[Pair] = []
    skipped = 0
    for number, text, problem in lines:
        if problem is None:
            fields = text.split("\t")
            if len(fields) != 2:
                problem = f"expected '{layout}' with exactly one tab, found {len(fields) - 1}"
            else:
                if spelling_first:  # the task's files are NFC; text from elsewhere is brought to it
                    fields = [unicodedata.normalize("NFC", f) for f in reversed(fields)]
                phonemes, spelling = tuple(fields[0].split()), fields[1].strip()
                if not phonemes:
                    problem = "empty phoneme side"
                elif not spelling:
                    problem = "empty spelling side"
        if problem is not None:
            if not skip_bad_lines:
                raise UserError(f"{path}:{number}: {problem} (or pass --skip-bad-lines)")
            skipped += 1
            continue
        pairs.append((phonemes, spelling))
    if not pairs:
        what = "is empty" if not lines else f"holds no valid pairs ({skipped} bad lines skipped)"
        expected = "<spelling>\\t<space-separated phones>" if spelling_first else \
            "<space-separated IPA symbols>\\t<spelling>"
        raise UserError(f"{path}: {what}; expected lines '{expected}'")
    if skipped:
        log.warning("%s: skipped %d bad line(s)", path, skipped)
    return pairs, skipped


def load_split_dir(
    directory: str | Path, skip_bad_lines: bool = False, how_to_get: str = ""
) -> tuple[P2GSplits, int]:
    """train.tsv, valid.tsv and (when present) test.tsv of `directory`; returns the splits and the number
    of bad lines skipped in all files."""
    directory = Path(directory)
    if not (directory / "train.tsv").exists():
        raise UserError(f"{directory}: no train.tsv here. {how_to_get}".rstrip())
    train, s1 = read_pairs(directory / "train.tsv", skip_bad_lines)
    valid, s2 = read_pairs(directory / "valid.tsv", skip_bad_lines)
    test_path = directory / "test.tsv"
    if test_path.exists():
        test, s3 = read_pairs(test_path, skip_bad_lines)
        return P2GSplits(train, valid, test, str(directory)), s1 + s2 + s3
    return P2GSplits(train, valid, valid, str(directory), test_is_valid=True), s1 + s2
