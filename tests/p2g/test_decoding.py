"""Spelling with a model: strategies from the options, k outputs per word, n-best lists and their rescoring."""

from dataclasses import replace

import pytest
import torch

from dllab.errors import UserError
from dllab.p2g import decoding
from dllab.p2g.config import DecodeConfig, LSTMConfig
from dllab.p2g.decoding import make_strategy, spell, spell_n_best, spelling_log_probs
from dllab.p2g.model import EnsembleDecoder, LSTMSeq2Seq
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, NucleusSampler
from dllab.seq2seq.vocab import Vocab

WORDS = [("t͡ʃ", "æ"), ("æ", "p", "p"), ("p",)]
VOCABS = (Vocab.build(WORDS), Vocab.build(["chap", "app"]))


def _model(seed=0):
    torch.manual_seed(seed)
    return LSTMSeq2Seq(len(VOCABS[0]), len(VOCABS[1]), LSTMConfig(hidden=16, attn=True))


def test_make_strategy_names_each_strategy_and_refuses_bad_options():
    assert make_strategy(None, None, 0)[1] == "greedy" and isinstance(make_strategy(None, None, 0)[0], GreedyDecoder)
    beam, key = make_strategy(None, 5, 0)
    assert isinstance(beam, BeamSearchDecoder) and beam.beam_size == 5 and key == "beam5"
    nucleus, key = make_strategy(0.8, None, 0)
    assert isinstance(nucleus, NucleusSampler) and key == "nucleus_p0.8"
    for top_p, beam_size, match in ((0.8, 3, "alternatives"), (None, 0, "--beam"), (1.5, None, "--top-p")):
        with pytest.raises(UserError, match=match):
            make_strategy(top_p, beam_size, 0)


def test_spell_gives_k_outputs_per_word_in_eval_mode_and_restores_the_mode():
    model = _model().train()
    cfg = DecodeConfig(max_len=6, batch_size=2)  # two batches for three words
    greedy = spell(model, WORDS, VOCABS, GreedyDecoder(), cfg)
    assert model.training  # the caller's mode comes back
    assert len(greedy) == 3 and all(len(out) == 1 and isinstance(out[0], str) for out in greedy)
    assert greedy == spell(model.eval(), WORDS, VOCABS, GreedyDecoder(), cfg)  # decoded without dropout
    samples = spell(model, WORDS, VOCABS, NucleusSampler(1.0, torch.Generator().manual_seed(0)), cfg, k=4)
    assert [len(out) for out in samples] == [4, 4, 4]



def test_a_word_without_symbols_is_a_user_error_not_a_packing_crash():
    with pytest.raises(UserError, match="word 2 has no symbols"):
        spell(_model(), [("p",), ()], VOCABS, GreedyDecoder(), DecodeConfig(max_len=4))

def test_an_ensemble_spells_through_the_same_functions():
    a, b = _model(1).eval(), _model(2).eval()
    cfg = DecodeConfig(max_len=6)
    assert spell(EnsembleDecoder([a]), WORDS, VOCABS, GreedyDecoder(), cfg) == spell(a, WORDS, VOCABS,
                                                                                      GreedyDecoder(), cfg)
    assert len(spell_n_best(EnsembleDecoder([a, b]), WORDS, VOCABS, BeamSearchDecoder(2), cfg, 2)) == 3


def test_spelling_log_probs_sum_the_steps_of_incremental_decoding():
    """Teacher forcing in batches of 2 against one word at a time through start / step (the gate-table path)."""
    model = _model(3).train()
    spellings = ["chap", "ap", "p"]
    got = spelling_log_probs(model, WORDS, spellings, VOCABS, batch_size=2)
    assert model.training
    src_vocab, tgt_vocab = VOCABS
    model.eval()
    for word, text, logp in zip(WORDS, spellings, got, strict=True):
        ids = tgt_vocab.encode(text, bos_eos=True)
        with torch.no_grad():
            state = model.start((torch.tensor([src_vocab.encode(word)]), torch.tensor([len(word)])))
            total = 0.0
            for prev, nxt in zip(ids[:-1], ids[1:], strict=True):
                step, state = model.step(torch.tensor([prev]), state)
                total += float(step[0, nxt])
        assert logp == pytest.approx(total, abs=1e-4)


@pytest.mark.slow
def test_n_best_scores_of_a_trained_model_are_its_sequence_log_probs(trained):
    from dllab.p2g.experiment import load_run

    run, data = trained
    cfg, model, vocabs = load_run(run)
    words = [tuple(line.split("\t")[0].split()) for line in (data / "valid.tsv").read_text("utf-8").splitlines()]
    n_best = spell_n_best(model, words[:10], vocabs, BeamSearchDecoder(3, length_penalty=1.0), cfg.decode, 3)
    texts = [(w, text, score) for w, cands in zip(words, n_best, strict=False) for text, score in cands]
    assert all(len(c) == 3 for c in n_best)
    logp = spelling_log_probs(model, [w for w, _, _ in texts], [t for _, t, _ in texts], vocabs)
    for (_, text, score), lp in zip(texts, logp, strict=True):
        assert lp / (len(text) + 1) == pytest.approx(score, abs=1e-4)  # beam's score: per token incl. EOS


def test_reranking_pools_both_beams_and_adds_both_directions_scores_per_symbol(monkeypatch):
    from dllab.p2g.data import Symbols

    beams = {False: [[("ab", -0.1), ("ba", -0.2)], [("abc", -1.0)], []],  # left to right
             True: [[("bb", -0.1)], [("abc", -0.5), ("cab", -0.6)], []]}  # right to left, texts left to right
    logp = {False: {"ab": -0.3, "ba": -0.6, "bb": -0.3, "abc": -0.8, "cab": -4.0},
            True: {"ab": -9.0, "ba": -0.3, "bb": -3.0, "abc": -0.4, "cab": -0.4}}  # fmt: skip
    seen = []

    def n_best(model, src, vocabs, beam, cfg, n, symbols):
        seen.append((n, symbols.reverse))
        return beams[symbols.reverse]

    def log_probs(model, src, texts, vocabs, symbols):
        return [logp[symbols.reverse][t] * (2 if model == "strict" else 0) for t in texts]  # mean of 2 models = x1

    monkeypatch.setattr(decoding, "spell_n_best", n_best)
    monkeypatch.setattr(decoding, "spelling_log_probs", log_probs)
    best = decoding.rerank_both_directions(["strict", "lax"], ["strict", "lax"], [("x",), ("y",), ("z",)],
                                           (None, None), BeamSearchDecoder(2, length_penalty=1.0), None,
                                           Symbols("codepoints", "codepoints"))  # fmt: skip
    # per symbol incl. EOS: ab (-0.3 - 9) / 3; ba (-0.6 - 0.3) / 3 wins; bb, only in the right-to-left beam,
    # (-0.3 - 3) / 3. abc (-1.2) / 4 beats cab (-4.4) / 4, though cab came second. No candidate: empty.
    assert best == ["ba", "abc", ""]
    assert seen == [(2, False), (2, True)]


def test_a_candidate_found_only_by_the_right_to_left_beam_can_win(monkeypatch):
    from dllab.p2g.data import Symbols

    monkeypatch.setattr(decoding, "spell_n_best",
                        lambda model, src, vocabs, beam, cfg, n, symbols: [[("cab", 0.0)]] if symbols.reverse
                        else [[("ab", 0.0)]])  # fmt: skip
    monkeypatch.setattr(decoding, "spelling_log_probs",
                        lambda model, src, texts, vocabs, symbols: [{"ab": -5.0, "cab": -1.0}[t] for t in texts])
    best = decoding.rerank_both_directions(["m"], ["r"], [("x",)], (None, None), BeamSearchDecoder(1), None,
                                           Symbols("codepoints", "codepoints"))  # fmt: skip
    assert best == ["cab"]


def test_pooled_reranking_takes_each_groups_vocabularies_and_candidates(monkeypatch):
    """Three groups (say a transducer's two directions and a BiLSTM's): each decodes with its own vocabularies,
    each scores every pooled candidate with them, and a candidate only the third group found can win."""
    from dllab.p2g.data import Symbols

    symbols = Symbols("codepoints", "codepoints")
    beams = {"tr": [[("ab", 0.0)], [("xy", 0.0)]], "tr-r2l": [[("ab", 0.0)], [("xy", 0.0)]],
             "lstm": [[("ac", 0.0), ("ab", -1.0)], [("xy", 0.0)]]}  # fmt: skip
    logp = {"tr": {"ab": -1.0, "ac": -1.2, "xy": 0.0}, "tr-r2l": {"ab": -1.0, "ac": -1.1, "xy": 0.0},
            "lstm": {"ab": -2.0, "ac": -0.2, "xy": 0.0}}  # fmt: skip
    decoded, scored = [], []

    def n_best(model, src, vocabs, beam, cfg, n, symbols):
        decoded.append(vocabs)
        return beams[vocabs]

    def log_probs(model, src, texts, vocabs, symbols):
        scored.append((vocabs, tuple(texts)))
        return [logp[vocabs][t] for t in texts]

    monkeypatch.setattr(decoding, "spell_n_best", n_best)
    monkeypatch.setattr(decoding, "spelling_log_probs", log_probs)
    groups = [decoding.Group(["m"], "tr", symbols), decoding.Group(["m"], "tr-r2l", replace(symbols, reverse=True)),
              decoding.Group(["m", "m"], "lstm", symbols)]  # fmt: skip
    best = decoding.rerank_pooled(groups, [("x",), ("y",)], BeamSearchDecoder(2), None, length_penalty=0.0)
    # ab: -1 - 1 - 2 = -4; ac, found by the BiLSTM alone: -1.2 - 1.1 - 0.2 = -2.5 wins
    assert best == ["ac", "xy"]
    assert decoded == ["tr", "tr-r2l", "lstm"]
    assert [v for v, _ in scored] == ["tr", "tr-r2l", "lstm", "lstm"]  # each model of a group scores
    assert all(texts == ("ab", "ac", "xy") for _, texts in scored)


def test_pooled_reranking_divides_by_the_first_groups_length_and_needs_models(monkeypatch):
    from dllab.p2g.data import Symbols

    monkeypatch.setattr(decoding, "spell_n_best", lambda model, src, vocabs, beam, cfg, n, symbols: [[("a", 0.0)]]
                        if vocabs == "one" else [[("abc", 0.0)]])  # fmt: skip
    monkeypatch.setattr(decoding, "spelling_log_probs",
                        lambda model, src, texts, vocabs, symbols: [{"a": -1.0, "abc": -1.5}[t] for t in texts])
    groups = [decoding.Group(["m"], "one", Symbols("phones", "codepoints")),
              decoding.Group(["m"], "two", Symbols("phones", "codepoints", reverse=True))]  # fmt: skip
    # per symbol with EOS: a (-1 - 1) / 2 = -1 loses to abc (-1.5 - 1.5) / 4 = -0.75; raw, a wins (-2 > -3)
    assert decoding.rerank_pooled(groups, [("x",)], BeamSearchDecoder(1), None) == ["abc"]
    assert decoding.rerank_pooled(groups, [("x",)], BeamSearchDecoder(1), None, length_penalty=0.0) == ["a"]
    with pytest.raises(ValueError, match="models in every group"):
        decoding.rerank_pooled([decoding.Group([], "one", groups[0].symbols)], [("x",)], BeamSearchDecoder(1), None)
