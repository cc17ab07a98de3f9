import itertools
import math

import pytest
import torch

from dllab.seq2seq.ctc import JointCTCDecoder
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, IncrementalDecoder, decode, select_rows

SOS, EOS, BLANK = 0, 1, 2  # tokens 3.. are labels


def collapse(path, blank=BLANK):
    """A CTC alignment -> its label sequence: merge repeats, then drop blanks."""
    out = [t for i, t in enumerate(path) if i == 0 or t != path[i - 1]]
    return tuple(t for t in out if t != blank)


def brute_force(logp, length):
    """{label sequence: log p} over every alignment of the first `length` frames of logp (T, V)."""
    V = logp.shape[1]
    probs: dict[tuple, float] = {}
    for path in itertools.product(range(V), repeat=length):
        p = sum(float(logp[t, k]) for t, k in enumerate(path))
        key = collapse(path)
        probs[key] = float(torch.logaddexp(torch.tensor(probs.get(key, -math.inf)), torch.tensor(p)))
    return probs


def prefix_logprob(probs, prefix):
    """log of the summed probability of the label sequences that start with `prefix`."""
    terms = [p for seq, p in probs.items() if seq[: len(prefix)] == tuple(prefix)]
    return float(torch.logsumexp(torch.tensor(terms), 0)) if terms else -math.inf


class Uniform:
    """An attention 'decoder' with no opinion (uniform log-probs) and fixed CTC log-probs per source."""

    def __init__(self, ctc, lens, V):
        self.ctc, self.lens, self.V = ctc, lens, V

    def start(self, src):
        return {"rows": torch.arange(len(src))}

    def start_with_ctc(self, src):
        return self.start(src), self.ctc, self.lens

    def step(self, tokens, state):
        return torch.full((len(tokens), self.V), -math.log(self.V)), state

    def reorder(self, state, index):
        return select_rows(state, index)


def _ctc(B=2, T=5, V=5, seed=0, sharp=1.5):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(sharp * torch.randn(B, T, V, generator=g), dim=-1)


@pytest.mark.parametrize("prefix", [(), (3,), (4,), (3, 3), (3, 4), (4, 3, 4), (3, 3, 4)], ids=str)
def test_prefix_scores_are_the_brute_force_prefix_probabilities(prefix):
    """Feed a prefix; every next-token score is log p(prefix + c ...) - log p(prefix ...) over all alignments,
    and EOS scores the prefix as the whole transcript: log p(prefix) - log p(prefix ...). Source 1 is shorter
    (padded frames must not count)."""
    V, lens = 5, torch.tensor([5, 4])
    logp = _ctc(V=V)
    joint = JointCTCDecoder(Uniform(logp, lens, V), 1.0, blank=BLANK, sos=SOS, eos=EOS)
    assert isinstance(joint, IncrementalDecoder)
    state = joint.start([0, 1])
    tokens = torch.tensor([SOS, SOS])
    for tok in prefix:
        _, state = joint.step(tokens, state)
        tokens = torch.tensor([tok, tok])
    scores, state = joint.step(tokens, state)
    for b in range(2):
        probs = brute_force(logp[b], int(lens[b]))
        base = prefix_logprob(probs, prefix)
        assert state.psi[b].item() == pytest.approx(base, abs=1e-5)
        for c in range(3, V):
            want = prefix_logprob(probs, (*prefix, c)) - base
            assert scores[b, c].item() == pytest.approx(want, abs=1e-4), (b, c)
        assert scores[b, EOS].item() == pytest.approx(probs.get(tuple(prefix), -math.inf) - base, abs=1e-4)
        assert scores[b, SOS] == -math.inf and scores[b, BLANK] == -math.inf


def test_the_eos_score_of_a_transcript_is_ctc_loss():
    """Summed over a transcript and its EOS, the scores are log p_ctc(transcript): -F.ctc_loss, for T = 40."""
    T, V = 40, 7
    logp = _ctc(B=1, T=T, V=V, seed=3)
    text = [3, 4, 4, 5, 6, 3]
    joint = JointCTCDecoder(Uniform(logp, torch.tensor([T]), V), 1.0, blank=BLANK, sos=SOS, eos=EOS)
    state, total = joint.start([0]), 0.0
    for prev, tok in zip([SOS, *text], [*text, EOS], strict=True):
        scores, state = joint.step(torch.tensor([prev]), state)
        total += scores[0, tok].item()
    nll = torch.nn.functional.ctc_loss(logp.transpose(0, 1), torch.tensor([text]), torch.tensor([T]),
                                       torch.tensor([len(text)]), blank=BLANK, reduction="sum")  # fmt: skip
    assert total == pytest.approx(-nll.item(), rel=1e-5)


class Repeater:
    """An attention decoder gone wrong: it wants `word` and then to say it again, never EOS; a CTC head that
    heard `word` once, on T frames."""

    def __init__(self, word, V=8, T=12):
        self.word, self.V = word, V
        ctc = torch.full((1, T, V), 1e-8)
        ctc[0, :, BLANK] = 1.0
        for i, tok in enumerate(word):  # each token on two frames, blanks between
            ctc[0, 2 + 3 * i : 4 + 3 * i, :] = 1e-8
            ctc[0, 2 + 3 * i : 4 + 3 * i, tok] = 1.0
        self.ctc = (ctc / ctc.sum(-1, keepdim=True)).log()

    def start(self, src):
        return {"pos": torch.zeros(len(src), dtype=torch.long)}

    def start_with_ctc(self, src):
        return self.start(src), self.ctc.expand(len(src), -1, -1), torch.full((len(src),), self.ctc.shape[1])

    def step(self, tokens, state):
        pos = state["pos"]
        logp = torch.full((len(tokens), self.V), math.log(0.01))
        nxt = torch.tensor(self.word)[pos % len(self.word)]
        logp[torch.arange(len(tokens)), nxt] = math.log(0.9)
        logp[:, EOS] = math.log(0.02)
        return logp.log_softmax(-1), {"pos": pos + 1}

    def reorder(self, state, index):
        return select_rows(state, index)


@pytest.mark.parametrize("strategy", [GreedyDecoder(), BeamSearchDecoder(3)], ids=["greedy", "beam3"])
def test_joint_decoding_stops_where_the_speech_ends(strategy):
    model = Repeater([3, 4, 5])
    alone = decode(model, [0], strategy, sos=SOS, eos=EOS, max_len=10)
    assert alone[0][:6] == [3, 4, 5, 3, 4, 5]  # attention alone repeats itself up to max_len
    joint = JointCTCDecoder(model, 0.3, blank=BLANK, sos=SOS, eos=EOS)
    assert decode(joint, [0, 0], strategy, sos=SOS, eos=EOS, max_len=10) == [[3, 4, 5], [3, 4, 5]]


def test_weight_zero_is_the_model_alone():
    model = Repeater([3, 4])
    joint = JointCTCDecoder(model, 0.0, blank=BLANK, sos=SOS, eos=EOS)
    for strategy in (GreedyDecoder(), BeamSearchDecoder(2)):
        assert decode(joint, [0], strategy, SOS, EOS, 7) == decode(model, [0], strategy, SOS, EOS, 7)
    with pytest.raises(ValueError, match="ctc_weight"):
        JointCTCDecoder(model, 1.5, blank=BLANK, sos=SOS, eos=EOS)


def test_rows_reordered_by_beam_search_keep_their_own_prefix():
    """Two sources with different CTC evidence decode in one batch with beams reordered every step."""
    a, b = Repeater([3, 4, 5]), Repeater([6, 3])
    both = Repeater([3])
    both.ctc = torch.cat([a.ctc, b.ctc])
    both.word = [7]  # the attention decoder is no help at all: CTC decides
    joint = JointCTCDecoder(both, 0.9, blank=BLANK, sos=SOS, eos=EOS)
    assert decode(joint, [0, 1], BeamSearchDecoder(4), SOS, EOS, max_len=10) == [[3, 4, 5], [6, 3]]
