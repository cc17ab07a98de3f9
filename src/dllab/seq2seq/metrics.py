"""Text metrics for every sequence-to-sequence model in dllab (phoneme-to-spelling, speech recognition).

All functions take hypotheses first and references second, as parallel lists of strings, and return a
Python float. Edit distances come from rapidfuzz / jiwer and the 2023-24 similarities from textdistance;
nothing here is hand-written dynamic programming.

    character_error_rate     total character edit distance / total reference characters (corpus level)
    token_error_rate         the same over symbol sequences (phones, grapheme clusters): PER, CER
    word_error_rate          standard word-level WER of sentences (jiwer: total word edits / total ref words)
    single_word_error_rate   the 2024-25 course's "WER" for one-word outputs: share of outputs != gold
    wer_at_k                 share of inputs whose k samples all differ from gold (correct if any matches)
    jaccard_similarity, cosine_similarity, damerau_levenshtein_similarity
                             the 2023-24 course's per-pair textdistance similarities, averaged over pairs
    degenerate_share         share of outputs caught in a loop: a word repeated 3+ times in a row that the
                             reference does not repeat so (the "the the the ..." failure of untrained decoders)
    group_by_length          indices of references grouped by length (to give any metric per length group)
    macro_interval           the sampling interval of a macro-averaged error rate (independent test sets)
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import jiwer
import textdistance
from rapidfuzz.distance import Levenshtein


def _check_pairs(hyps: Sequence, refs: Sequence, what: str = "hyps") -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{what} and refs differ in length ({len(hyps)} vs {len(refs)})")
    if len(refs) == 0:
        raise ValueError("refs is empty: a metric over zero examples is undefined")


def character_error_rate(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Sum over pairs of the Levenshtein distance (unit-cost insert/delete/substitute, rapidfuzz), divided
    by the total number of reference characters. Can exceed 1 when hypotheses are long."""
    _check_pairs(hyps, refs)
    total_ref = sum(len(r) for r in refs)
    if total_ref == 0:
        raise ValueError("refs hold no characters: CER is undefined")
    edits = sum(Levenshtein.distance(h, r) for h, r in zip(hyps, refs, strict=True))
    return edits / total_ref


def token_error_rate(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """`character_error_rate` over symbol sequences: the summed Levenshtein distance between each hypothesis'
    and its reference's symbols (rapidfuzz compares the symbols as wholes), over the total reference symbols.
    The phone error rate (PER) of a G2P system, or a CER over grapheme clusters."""
    _check_pairs(hyps, refs)
    total_ref = sum(len(r) for r in refs)
    if total_ref == 0:
        raise ValueError("refs hold no symbols: the error rate is undefined")
    return sum(Levenshtein.distance(list(h), list(r)) for h, r in zip(hyps, refs, strict=True)) / total_ref


def word_error_rate(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus-level word error rate of sentences with jiwer: (S + D + I) / total reference words, words
    split on whitespace. A reference with no words is an error (jiwer cannot score it)."""
    _check_pairs(hyps, refs)
    if any(not r.split() for r in refs):
        raise ValueError("a reference holds no words: WER is undefined for it")
    return float(jiwer.wer(list(refs), list(hyps)))


def single_word_error_rate(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """The 2024-25 course's word error rate for one-word outputs: the share of hypotheses that are not
    exactly equal to their reference (case-sensitive)."""
    _check_pairs(hyps, refs)
    return sum(h != r for h, r in zip(hyps, refs, strict=True)) / len(refs)


def wer_at_k(samples: Sequence[Sequence[str]], refs: Sequence[str]) -> float:
    """WER@k: `samples[i]` holds the k outputs drawn for input i; input i counts as correct when any of
    them equals `refs[i]`. Returns the share of inputs that are not correct."""
    _check_pairs(samples, refs, "samples")
    if any(len(s) == 0 for s in samples):
        raise ValueError("every input needs at least one sample")
    return sum(r not in set(s) for s, r in zip(samples, refs, strict=True)) / len(refs)


def _mean_similarity(measure, hyps: Sequence[str], refs: Sequence[str]) -> float:
    _check_pairs(hyps, refs)
    return sum(measure.normalized_similarity(h, r) for h, r in zip(hyps, refs, strict=True)) / len(refs)


def jaccard_similarity(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over pairs of `textdistance.jaccard.normalized_similarity` (as the 2023-24 course computed it).

    Characters are counted as MULTISETS (textdistance's default `as_set=False`, q-grams of 1 character):
    |A ∩ B| / |A ∪ B| with min / max counts, so "aab" vs "ab" is 2/3. Two empty strings score 1."""
    return _mean_similarity(textdistance.jaccard, hyps, refs)


def cosine_similarity(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over pairs of `textdistance.cosine.normalized_similarity` (Otsuka–Ochiai on character
    MULTISETS: |A ∩ B| / sqrt(|A| |B|) with counts, so "aab" vs "ab" is 2/sqrt(6))."""
    return _mean_similarity(textdistance.cosine, hyps, refs)


def damerau_levenshtein_similarity(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean over pairs of `textdistance.damerau_levenshtein.normalized_similarity`:
    1 - distance / max(len(h), len(r)).

    textdistance's default instance is the RESTRICTED variant (optimal string alignment, `restricted=True`):
    a transposed pair cannot be edited again, so d("ca", "abc") = 3 (the unrestricted distance is 2)."""
    return _mean_similarity(textdistance.damerau_levenshtein, hyps, refs)


def _longest_repeat(words: list[str]) -> dict[str, int]:
    """For each word, the longest run of it in a row."""
    runs: dict[str, int] = {}
    count = 0
    for i, word in enumerate(words):
        count = count + 1 if i and words[i - 1] == word else 1
        runs[word] = max(runs.get(word, 0), count)
    return runs


def degenerate_share(hyps: Sequence[str], refs: Sequence[str], repeats: int = 3) -> float:
    """Share of hypotheses holding a word `repeats` or more times in a row, more often than their reference."""
    _check_pairs(hyps, refs)
    bad = 0
    for hyp, ref in zip(hyps, refs, strict=True):
        ref_runs = _longest_repeat(ref.split())
        if any(n >= repeats and n > ref_runs.get(w, 0) for w, n in _longest_repeat(hyp.split()).items()):
            bad += 1
    return bad / len(refs)


def text_metrics(hyps: Sequence[str], refs: Sequence[str], words: bool = False) -> dict[str, float]:
    """CER plus the word error rate that fits the data: sentence WER (`words=True`) or single-word WER."""
    wer = word_error_rate(hyps, refs) if words else single_word_error_rate(hyps, refs)
    return {"cer": character_error_rate(hyps, refs), "wer": wer}


def group_by_length(refs: Sequence[str], edges: Sequence[int]) -> dict[str, list[int]]:
    """Indices of `refs` grouped by length in characters, every reference in exactly one group, groups in
    order and present even when empty: edges (50, 100) -> {"<= 50": [...], "51-100": [...], "> 100": [...]}."""
    if list(edges) != sorted(set(edges)) or not edges:
        raise ValueError(f"edges must be increasing and not empty, got {edges}")
    names = [f"<= {edges[0]}"] + [f"{a + 1}-{b}" for a, b in zip(edges, edges[1:], strict=False)] + [f"> {edges[-1]}"]
    groups: dict[str, list[int]] = {name: [] for name in names}
    for i, ref in enumerate(refs):
        groups[names[sum(len(ref) > e for e in edges)]].append(i)
    return groups


def macro_interval(rates: Sequence[float], sizes: Sequence[int], level: float = 0.95) -> tuple[float, float]:
    """(low, high): the `level` interval of the macro average of error rates measured on independent test
    sets of `sizes` items, each rate a binomial share: mean +- z * sqrt(sum r (1 - r) / n) / L (the normal
    approximation), clipped to [0, 1]. How far another sample of the same size could move the figure: with
    100 words a language, a macro WER over ten languages moves by about 2.5 points either way."""
    if not rates or len(rates) != len(sizes):
        raise ValueError(f"macro_interval needs one size per rate, got {len(rates)} rates and {len(sizes)} sizes")
    if any(n < 1 for n in sizes) or any(not 0 <= r <= 1 for r in rates) or not 0 < level < 1:
        raise ValueError(f"macro_interval: sizes must be >= 1, rates in [0, 1] and the level in (0, 1), got {level}")
    mean = sum(rates) / len(rates)
    spread = sum(r * (1 - r) / n for r, n in zip(rates, sizes, strict=True)) ** 0.5 / len(rates)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return max(0.0, mean - z * spread), min(1.0, mean + z * spread)
