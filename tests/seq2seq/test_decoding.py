import itertools
import math

import pytest
import torch

from dllab.seq2seq.decoding import (
    BeamSearchDecoder,
    GreedyDecoder,
    IncrementalDecoder,
    NucleusSampler,
    decode,
    decode_n_best,
    nucleus_mask,
    sample_k,
    select_rows,
)

SOS, EOS = 0, 1


class MarkovToy:
    """A toy IncrementalDecoder: log p(next | source s, position, last token) = tables[s, pos, last].

    tables (S, T, V, V) log-probabilities; past position T-1 the last table is reused."""

    def __init__(self, tables: torch.Tensor):
        self.tables = tables
        self.steps = 0  # rows stepped in total, to check that finished rows are dropped

    def start(self, src):
        return {"src": src, "pos": torch.zeros_like(src)}

    def step(self, tokens, state):
        pos = state["pos"].clamp(max=self.tables.shape[1] - 1)
        self.steps += tokens.numel()
        logp = self.tables[state["src"], pos, tokens]  # (B, V)
        return logp, {"src": state["src"], "pos": state["pos"] + 1}

    def reorder(self, state, index):
        return select_rows(state, index)


def random_tables(S=3, T=6, V=5, seed=0, sharp=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(sharp * torch.randn(S, T, V, V, generator=g), dim=-1)


def spell_tables(words: list[list[int]], V: int, T: int = 12, confidence: float = 0.9) -> torch.Tensor:
    """Source s emits words[s] then EOS, with probability `confidence` on the right token at each position."""
    tables = torch.full((len(words), T, V, V), (1 - confidence) / (V - 1)).log()
    for s, word in enumerate(words):
        target = word + [EOS] * (T - len(word))
        for t in range(T):
            tables[s, t, :, target[t]] = math.log(confidence)
    return tables


def test_toy_is_an_incremental_decoder():
    assert isinstance(MarkovToy(random_tables()), IncrementalDecoder)


def greedy_one(model: MarkovToy, s: int, max_len: int) -> list[int]:
    """Reference: one source at a time, argmax by hand."""
    state, tok, out = model.start(torch.tensor([s])), torch.tensor([SOS]), []
    for _ in range(max_len):
        logp, state = model.step(tok, state)
        tok = logp.argmax(-1)
        if tok.item() == EOS:
            break
        out.append(tok.item())
    return out


def test_greedy_matches_one_at_a_time_on_a_mixed_length_batch():
    model = MarkovToy(random_tables(S=6, V=6, seed=1))
    src = torch.tensor([0, 1, 2, 3, 4, 5, 0, 3])
    got = decode(model, src, GreedyDecoder(), SOS, EOS, max_len=8)
    want = [greedy_one(model, int(s), 8) for s in src]
    assert got == want
    assert len({len(w) for w in want}) > 1, "the batch should mix lengths"


def test_eos_at_first_step_gives_empty_output_and_others_continue():
    model = MarkovToy(spell_tables([[], [2, 3, 4], [3]], V=6))
    got = decode(model, torch.tensor([0, 1, 2]), GreedyDecoder(), SOS, EOS, max_len=10)
    assert got == [[], [2, 3, 4], [3]]


def test_finished_rows_are_dropped_from_the_batch():
    model = MarkovToy(spell_tables([[], [2, 3, 4, 2, 3, 4]], V=6))
    decode(model, torch.tensor([0, 1]), GreedyDecoder(), SOS, EOS, max_len=10)
    # Step 1 runs both rows, then only the long row: 2 + 6 rows stepped (6 more tokens incl. EOS).
    assert model.steps == 2 + 6


def test_max_len_cuts_sequences_that_never_end():
    tables = torch.log_softmax(torch.zeros(1, 1, 4, 4), -1).clone()
    tables[..., 2] = 0.0  # token 2 always wins, EOS never does
    tables = torch.log_softmax(tables, -1)
    model = MarkovToy(tables)
    for strategy in (GreedyDecoder(), BeamSearchDecoder(3)):
        got = decode(model, torch.tensor([0, 0]), strategy, SOS, EOS, max_len=7)
        assert got == [[2] * 7, [2] * 7]


def test_max_len_must_be_positive():
    model = MarkovToy(random_tables())
    with pytest.raises(ValueError, match="max_len"):
        decode(model, torch.tensor([0]), GreedyDecoder(), SOS, EOS, max_len=0)


def test_tiny_p_equals_greedy():
    model = MarkovToy(random_tables(S=6, V=6, seed=2))
    src = torch.arange(6).repeat(3)
    greedy = decode(model, src, GreedyDecoder(), SOS, EOS, max_len=8)
    sampler = NucleusSampler(1e-6, torch.Generator().manual_seed(0))
    assert decode(model, src, sampler, SOS, EOS, max_len=8) == greedy


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan")])
def test_top_p_outside_unit_interval_is_an_error(p):
    with pytest.raises(ValueError, match="top_p"):
        NucleusSampler(p)


def test_nucleus_mask_by_hand():
    logp = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    assert nucleus_mask(logp, 0.8).tolist() == [[False, True, False, True]]  # 0.5 + 0.3 >= 0.8
    assert nucleus_mask(logp, 0.81).tolist() == [[True, True, False, True]]
    assert nucleus_mask(logp, 0.45).tolist() == [[False, True, False, False]]
    assert nucleus_mask(logp, 0.4).tolist() == [[False, True, False, False]]
    assert nucleus_mask(logp, 1.0).tolist() == [[True, True, True, True]]


def test_nucleus_samples_only_the_nucleus_renormalised():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    logp = probs.log().expand(20000, 4)
    draws = NucleusSampler(0.8, torch.Generator().manual_seed(0)).choose(logp)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[0] == 0 and freq[2] == 0
    assert abs(freq[1].item() - 0.5 / 0.8) < 0.02 and abs(freq[3].item() - 0.3 / 0.8) < 0.02


def test_p_one_is_plain_sampling():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    draws = NucleusSampler(1.0, torch.Generator().manual_seed(0)).choose(probs.log().expand(20000, 4))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(freq, probs, atol=0.02)


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = MarkovToy(random_tables(S=3, V=6, seed=3, sharp=0.5))
    src = torch.arange(3).repeat(5)

    def run(seed):
        return decode(model, src, NucleusSampler(0.9, torch.Generator().manual_seed(seed)), SOS, EOS, 8)

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_sample_k_encodes_once_and_returns_k_samples_per_source():
    model = MarkovToy(spell_tables([[2, 3], [4]], V=6, confidence=0.999))
    samples = sample_k(model, torch.tensor([0, 1]), NucleusSampler(0.8), 3, SOS, EOS, max_len=6)
    assert samples == [[[2, 3]] * 3, [[4]] * 3]


def brute_force_ranking(tables, s, V, max_len, alpha):
    """Every sequence up to max_len tokens (ended by EOS, or cut at max_len) with its normalised score, best first."""
    scored = []
    content = [v for v in range(V) if v != EOS]
    for n in range(max_len + 1):
        for seq in itertools.product(content, repeat=n):
            ends = n < max_len
            toks = [SOS, *seq] + ([EOS] if ends else [])
            score = sum(tables[s, min(t, tables.shape[1] - 1), toks[t], toks[t + 1]].item()
                        for t in range(len(toks) - 1))
            scored.append((list(seq), score / (len(toks) - 1) ** alpha))
    return sorted(scored, key=lambda x: -x[1])


def brute_force_best(tables, s, V, max_len, alpha):
    return brute_force_ranking(tables, s, V, max_len, alpha)[0][0]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exact_best_sequence(alpha):
    V, max_len = 4, 3
    tables = random_tables(S=4, T=4, V=V, seed=4, sharp=1.0)
    model = MarkovToy(tables)
    got = decode(model, torch.arange(4), BeamSearchDecoder(27, length_penalty=alpha), SOS, EOS, max_len)
    assert got == [brute_force_best(tables, s, V, max_len, alpha) for s in range(4)]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_n_best_of_a_wide_beam_are_the_exact_best_sequences_with_their_scores(alpha):
    V, max_len, n = 4, 3, 4
    tables = random_tables(S=3, T=4, V=V, seed=5, sharp=1.0)
    got = decode_n_best(MarkovToy(tables), torch.arange(3), BeamSearchDecoder(27, length_penalty=alpha), n,
                        SOS, EOS, max_len)  # fmt: skip
    for s in range(3):
        want = brute_force_ranking(tables, s, V, max_len, alpha)[:n]
        assert [seq for seq, _ in got[s]] == [seq for seq, _ in want]
        assert [score for _, score in got[s]] == pytest.approx([score for _, score in want], abs=1e-5)
    # the first of the n best is what decode returns; n = 1 is that alone
    beam = BeamSearchDecoder(3)
    best = decode(MarkovToy(tables), torch.arange(3), beam, SOS, EOS, max_len)
    ones = decode_n_best(MarkovToy(tables), torch.arange(3), beam, 1, SOS, EOS, max_len)
    assert [o[0][0] for o in ones] == best and all(len(o) == 1 for o in ones)
    with pytest.raises(ValueError, match="n must be"):
        decode_n_best(MarkovToy(tables), torch.arange(3), beam, 0, SOS, EOS, max_len)


def test_beam_beats_greedy_when_greedy_is_myopic():
    # First token: 2 (p=0.6) or 3 (p=0.4). After 2 everything is uncertain; after 3 EOS is certain.
    V = 6
    tables = torch.full((1, 3, V, V), 1e-9)
    tables[0, 0, SOS, 2], tables[0, 0, SOS, 3] = 0.6, 0.4
    tables[0, 1, 2, :] = 0.2
    tables[0, 1, 3, EOS] = 1.0
    tables[0, 2, :, EOS] = 1.0
    model = MarkovToy(torch.log(tables / tables.sum(-1, keepdim=True)))
    assert decode(model, torch.tensor([0]), GreedyDecoder(), SOS, EOS, 5) != [[3]]
    assert decode(model, torch.tensor([0]), BeamSearchDecoder(2, length_penalty=0.0), SOS, EOS, 5) == [[3]]


def test_beam_of_one_is_greedy_and_batching_does_not_change_beams():
    model = MarkovToy(random_tables(S=6, V=6, seed=5))
    src = torch.tensor([0, 1, 2, 3, 4, 5])
    greedy = decode(model, src, GreedyDecoder(), SOS, EOS, max_len=8)
    assert decode(model, src, BeamSearchDecoder(1, length_penalty=0.0), SOS, EOS, max_len=8) == greedy
    beam = BeamSearchDecoder(4)
    batched = decode(model, src, beam, SOS, EOS, max_len=8)
    assert batched == [decode(model, src[i : i + 1], beam, SOS, EOS, max_len=8)[0] for i in range(6)]


def test_beam_handles_eos_first_and_mixed_lengths():
    model = MarkovToy(spell_tables([[], [2, 3, 4], [3]], V=6))
    assert decode(model, torch.tensor([0, 1, 2]), BeamSearchDecoder(3), SOS, EOS, 10) == [[], [2, 3, 4], [3]]


def test_an_empty_batch_decodes_to_nothing():
    model = MarkovToy(random_tables())
    for strategy in (GreedyDecoder(), NucleusSampler(0.5), BeamSearchDecoder(2)):
        assert decode(model, torch.zeros(0, dtype=torch.long), strategy, SOS, EOS, 5) == []


def test_finished_rows_leave_the_state_in_groups_without_changing_outputs():
    # 8 sources: one ends at step 1, the rest much later. A single finished row (1/8 < 1/4) is carried
    # along rather than copied out, and its output is still cut at its EOS.
    words = [[]] + [[2, 3, 4, 2, 3]] * 7
    model = MarkovToy(spell_tables(words, V=6))
    got = decode(model, torch.arange(8), GreedyDecoder(), SOS, EOS, max_len=10)
    assert got == words
    assert model.steps == 8 * 6  # every row runs until the last EOS at step 6
    # Once a quarter has finished, they are dropped: 2 of 8 end at step 1.
    words = [[], []] + [[2, 3, 4, 2, 3]] * 6
    model = MarkovToy(spell_tables(words, V=6))
    assert decode(model, torch.arange(8), GreedyDecoder(), SOS, EOS, max_len=10) == words
    assert model.steps == 8 + 6 * 5


@pytest.mark.parametrize("strategy", [GreedyDecoder(), BeamSearchDecoder(3)], ids=["greedy", "beam3"])
def test_length_limited_ends_each_source_after_its_own_limit(strategy):
    from dllab.seq2seq.decoding import LengthLimited

    # Source 0 never ends by itself, source 1 ends after 2 tokens, source 2 never ends.
    model = MarkovToy(spell_tables([[2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3, 4], [3, 4], [4] * 12], V=5, T=12))
    src = torch.tensor([0, 1, 2])
    limited = LengthLimited(model, torch.tensor([4, 6, 0]), eos=EOS)
    assert isinstance(limited, IncrementalDecoder)
    out = decode(limited, src, strategy, sos=SOS, eos=EOS, max_len=12)
    assert out == [[2, 3, 4, 2], [3, 4], []]
    free = decode(model, src, strategy, sos=SOS, eos=EOS, max_len=12)
    assert len(free[0]) == 12 and free[1] == [3, 4]
    with pytest.raises(ValueError, match="limits"):
        LengthLimited(model, torch.tensor([-1]), eos=EOS)
