import math
import random

import jiwer
import pytest
import textdistance
from rapidfuzz.distance import Levenshtein

from dllab.seq2seq.metrics import (
    character_error_rate,
    cosine_similarity,
    damerau_levenshtein_similarity,
    jaccard_similarity,
    single_word_error_rate,
    text_metrics,
    wer_at_k,
    word_error_rate,
)


def test_cer_by_hand():
    assert character_error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    # Corpus level: (3 + 0 + 1) edits over 7 + 3 + 2 reference characters, not a mean of ratios.
    assert character_error_rate(["kitten", "cat", "a"], ["sitting", "cat", "ab"]) == pytest.approx(4 / 12)
    assert character_error_rate([""], ["abc"]) == 1.0
    assert character_error_rate(["abcdef"], ["ab"]) == 2.0  # insertions can push CER past 1


def test_cer_counts_accented_and_multi_codepoint_characters():
    assert character_error_rate(["cafe"], ["café"]) == pytest.approx(1 / 4)


def test_cer_agrees_with_jiwer_on_random_strings():
    rng = random.Random(0)
    refs = ["".join(rng.choices("abcde", k=rng.randint(1, 9))) for _ in range(200)]
    hyps = ["".join(rng.choices("abcde", k=rng.randint(0, 9))) for _ in range(200)]
    assert character_error_rate(hyps, refs) == pytest.approx(jiwer.cer(refs, hyps))
    assert character_error_rate(hyps, refs) == pytest.approx(
        sum(Levenshtein.distance(h, r) for h, r in zip(hyps, refs, strict=True)) / sum(map(len, refs))
    )


def test_sentence_wer_by_hand_and_against_jiwer():
    # one substitution (sat -> sit) and one deletion (the) over 6 reference words
    assert word_error_rate(["the cat sit on mat"], ["the cat sat on the mat"]) == pytest.approx(2 / 6)
    hyps, refs = ["a b c", "d e"], ["a x c", "d e f g"]
    assert word_error_rate(hyps, refs) == pytest.approx(jiwer.wer(refs, hyps)) == pytest.approx(3 / 7)


def test_single_word_error_rate_and_wer_at_k():
    hyps, refs = ["chaplet", "Chaplet", "b"], ["chaplet", "chaplet", "c"]
    assert single_word_error_rate(hyps, refs) == pytest.approx(2 / 3)
    samples = [["x", "gold"], ["y", "z"], ["w", "w"]]
    assert wer_at_k(samples, ["gold", "w", "w"]) == pytest.approx(1 / 3)
    assert text_metrics(["ab", "cd"], ["ab", "ce"]) == {"cer": pytest.approx(1 / 4), "wer": 0.5}


def test_similarities_by_hand():
    assert jaccard_similarity(["aab"], ["ab"]) == pytest.approx(2 / 3)  # multiset: min/max counts
    assert cosine_similarity(["aab"], ["ab"]) == pytest.approx(2 / math.sqrt(6))
    assert damerau_levenshtein_similarity(["ab"], ["ba"]) == pytest.approx(0.5)  # one transposition
    assert damerau_levenshtein_similarity(["ca"], ["abc"]) == pytest.approx(0.0)  # OSA: 3 edits, not 2
    assert jaccard_similarity(["ab", "ab"], ["ab", "cd"]) == pytest.approx(0.5)  # mean over pairs


def test_similarities_match_textdistance():
    rng = random.Random(1)
    pairs = [("".join(rng.choices("abc ", k=8)), "".join(rng.choices("abc ", k=6))) for _ in range(50)]
    hyps, refs = zip(*pairs, strict=True)
    for ours, theirs in [
        (jaccard_similarity, textdistance.jaccard),
        (cosine_similarity, textdistance.cosine),
        (damerau_levenshtein_similarity, textdistance.damerau_levenshtein),
    ]:
        want = sum(theirs.normalized_similarity(h, r) for h, r in pairs) / len(pairs)
        assert ours(hyps, refs) == pytest.approx(want)


@pytest.mark.parametrize(
    "fn", [character_error_rate, word_error_rate, single_word_error_rate, jaccard_similarity]
)
def test_mismatched_or_empty_inputs_are_errors(fn):
    with pytest.raises(ValueError, match="differ in length"):
        fn(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])


def test_undefined_rates_are_errors():
    with pytest.raises(ValueError, match="no characters"):
        character_error_rate([""], [""])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["a"], [" "])
    with pytest.raises(ValueError, match="at least one sample"):
        wer_at_k([[]], ["a"])


def test_degenerate_share_counts_loops_the_reference_lacks():
    from dllab.seq2seq.metrics import degenerate_share

    refs = ["and the lord said", "no no no said he", "a b c", "go"]
    hyps = ["and the the the the", "no no no said he", "a b c", "go go go go go"]
    assert degenerate_share(hyps, refs) == 0.5  # the second repeats as its reference does
    assert degenerate_share(["the the"], ["x"]) == 0.0  # two in a row is not a loop


def test_group_by_length_puts_every_reference_in_one_group():
    from dllab.seq2seq.metrics import group_by_length

    refs = ["a" * n for n in (1, 50, 51, 100, 101, 187)]
    assert group_by_length(refs, (50, 100)) == {"<= 50": [0, 1], "51-100": [2, 3], "> 100": [4, 5]}
    assert group_by_length([], (50, 100)) == {"<= 50": [], "51-100": [], "> 100": []}
    with pytest.raises(ValueError, match="increasing"):
        group_by_length(refs, (100, 50))


def test_macro_interval_is_the_binomial_spread_of_a_macro_average():

    from dllab.seq2seq.metrics import macro_interval

    low, high = macro_interval([0.2, 0.4], [100, 100])
    spread = ((0.2 * 0.8 + 0.4 * 0.6) / 100) ** 0.5 / 2
    assert (low, high) == pytest.approx((0.3 - 1.959964 * spread, 0.3 + 1.959964 * spread))
    assert macro_interval([0.0, 0.0], [10, 10]) == (0.0, 0.0)  # no spread where nothing varies
    assert macro_interval([0.2], [10_000])[1] - macro_interval([0.2], [10_000])[0] < 0.02  # narrows with size
    # the interval covers the true macro rate in about 95% of simulated test sets
    rng, truth, sizes, hits = random.Random(0), [0.1, 0.3, 0.45], [100, 100, 100], 0
    for _ in range(2000):
        rates = [sum(rng.random() < p for _ in range(n)) / n for p, n in zip(truth, sizes, strict=True)]
        lo, hi = macro_interval(rates, sizes)
        hits += lo <= sum(truth) / 3 <= hi
    assert 0.92 < hits / 2000 < 0.975
    with pytest.raises(ValueError):
        macro_interval([0.2], [0])
    with pytest.raises(ValueError, match="level"):
        macro_interval([0.2], [100], level=95)
