"""The hard-attention transducer speller and its aligner: alignments learnt by EM, the oracle's actions,
masking, incremental decoding equal to teacher forcing, and training through the CLI to outputs without STEP."""

import random

import pytest
import torch

from dllab.cli import main
from dllab.p2g.align import STEP, ChunkAligner, to_actions
from dllab.p2g.config import LSTMConfig, P2GConfig
from dllab.p2g.data import Symbols, to_text
from dllab.p2g.model import EnsembleDecoder, build_model
from dllab.p2g.transducer import HardAttentionTransducer
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, decode
from dllab.seq2seq.vocab import EOS, PAD, SOS, Vocab

# A toy orthography with silent letters, one letter read as two phones and two letters read alike.
READS = {"a": ("a",), "b": ("b",), "x": ("k", "s"), "h": (), "c": ("k",), "k": ("k",), "o": ("o",)}


def _words(n, seed=0):
    rng = random.Random(seed)
    words = [tuple(rng.choices(list(READS), k=rng.randint(2, 6))) for _ in range(n)]
    return [(w, tuple(p for letter in w for p in READS[letter])) for w in words]


def test_em_recovers_the_orthography_chunks():
    pairs = _words(300)
    aligner = ChunkAligner.fit(pairs)
    for word, phones in _words(50, seed=1):
        assert aligner.align(word, phones) == [READS[letter] for letter in word]
    sampled = ChunkAligner.fit(pairs, max_pairs=120)  # learns from 120 of the 300, evenly spread
    assert sampled.align(("x", "h", "a", "c"), ("k", "s", "a", "k")) == [("k", "s"), (), ("a",), ("k",)]
    again = ChunkAligner.from_json(aligner.to_json())
    assert again.align(("x", "h", "a"), ("k", "s", "a")) == [("k", "s"), (), ("a",)]


def test_align_refuses_more_symbols_than_chunks_can_hold_and_actions_step_once_per_symbol():
    aligner = ChunkAligner.fit(_words(100), max_chunk=2)
    assert aligner.align(("a",), ("a", "b", "k")) is None
    assert to_actions([("k", "s"), (), ("a",)]) == ("k", "s", STEP, STEP, "a", STEP)


def _model(seed=0):
    torch.manual_seed(seed)
    tgt = Vocab.build([("a", "k", "s", STEP)])
    return HardAttentionTransducer(8, tgt, LSTMConfig(hidden=16, dropout=0.0)).eval(), tgt


def test_teacher_forcing_masks_by_the_pointer_and_steps_match_it():
    model, tgt = _model()
    step = tgt.index[STEP]
    src, src_len = torch.tensor([[4, 5], [6, PAD]]), torch.tensor([2, 1])
    # row 0: write a, STEP, STEP, EOS; row 1: STEP, EOS
    a = tgt.index["a"]
    tgt_in = torch.tensor([[SOS, a, step, step], [SOS, step, PAD, PAD]])
    logp = torch.log_softmax(model(src, src_len, tgt_in), -1)
    assert logp[0, 3].argmax() == EOS and logp[0, 3, EOS] > -1e-3  # past the end only EOS
    assert logp[1, 1, EOS] > -1e-3
    assert logp[0, :3, EOS].max() < -100 and logp[:, :, SOS].max() < -100  # EOS only at the end, never SOS
    state = model.start((src, src_len))
    for t in range(2):
        out, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(out, logp[:, t], atol=1e-5)
    state = model.reorder(state, torch.tensor([1, 0, 0]))
    assert state.ptr.tolist() == [1, 0, 0] and state.enc.shape[0] == 3


def test_decoding_ends_after_the_source_and_text_drops_step():
    model, tgt = _model(1)
    src = (torch.tensor([[4, 5, 6]]), torch.tensor([3]))
    for strategy in (GreedyDecoder(), BeamSearchDecoder(3)):
        for decoder in (model, EnsembleDecoder([model, _model(2)[0]])):
            ids = decode(decoder, src, strategy, SOS, EOS, max_len=3 + 4 + 1)[0]
            assert len(ids) <= 3 * 4 + 1
            assert STEP not in to_text(ids, tgt)


def test_build_model_and_config_checks():
    vocabs = Vocab.build([["a"]]), Vocab.build([["x", STEP]])
    assert isinstance(build_model(P2GConfig(arch="transducer"), *vocabs), HardAttentionTransducer)
    with pytest.raises(ValueError, match="<step>"):
        HardAttentionTransducer(4, Vocab.build([["x"]]), LSTMConfig())


@pytest.mark.slow
def test_transducer_trains_on_a_language_and_spells_it(tmp_path, capsys):
    from tests.p2g.test_sigmorphon import write_language

    write_language(tmp_path / "data" / "low", "ady", 200, 30, random.Random(3))
    runs = tmp_path / "runs"
    argv = ["p2g", "train", "--data", "sigmorphon", "--language", "ady", "--direction", "g2p", "--arch", "transducer",
            "--data.sigmorphon_dir", str(tmp_path / "data"), "--runs", str(runs), "--name", "tr",
            "--train.epochs", "12", "--model.hidden", "32", "--model.dropout", "0.1", "--train.batch_size", "16"]
    assert main(argv) == 0
    run = runs / "p2g" / "tr"
    assert (run / "aligner.json").exists()
    assert main(["p2g", "test", str(run), "--beam", "3"]) == 0
    lines = (run / "predictions-beam3.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30 and not any(STEP in line for line in lines)
    out = capsys.readouterr().out
    wer = float(out.split("WER")[1].split()[0].strip("=:"))
    assert wer < 0.5  # a regular toy orthography: most words right after 12 epochs
    (run / "aligner.json").write_text("{not json", encoding="utf-8")
    assert main(["p2g", "test", str(run)]) == 2
    assert "aligner.json" in capsys.readouterr().err


def test_transducer_refuses_what_it_cannot_do(tmp_path, capsys):
    argv = ["p2g", "train", "--arch", "transducer", "--label_smoothing", "0.1", "--runs", str(tmp_path)]
    assert main(argv) == 2
    assert "--label_smoothing" in capsys.readouterr().err
    argv = ["p2g", "train", "--arch", "transducer", "--model.layers", "2", "--runs", str(tmp_path)]
    assert main(argv) == 2
    assert "--model.layers" in capsys.readouterr().err


def test_a_right_to_left_transducer_reads_the_source_from_its_end():
    model, tgt = _model(3)
    backward = HardAttentionTransducer(8, tgt, LSTMConfig(hidden=16, dropout=0.0), right_to_left=True).eval()
    backward.load_state_dict(model.state_dict())
    src, src_len = torch.tensor([[4, 5, 6], [7, 4, PAD]]), torch.tensor([3, 2])
    flipped = torch.tensor([[6, 5, 4], [4, 7, PAD]])
    tgt_in = torch.tensor([[SOS, tgt.index["a"], tgt.index[STEP]], [SOS, tgt.index[STEP], tgt.index["k"]]])
    assert torch.allclose(backward(src, src_len, tgt_in), model(flipped, src_len, tgt_in), atol=1e-6)


def test_a_transducer_scores_an_output_through_its_alignment():
    from dllab.p2g.decoding import spelling_log_probs

    pairs = _words(200)
    src_vocab = Vocab.build(w for w, _ in pairs)
    tgt = _model(4)[1]
    model = HardAttentionTransducer(len(src_vocab), tgt, LSTMConfig(hidden=16, dropout=0.0)).eval()
    model.aligner = ChunkAligner.fit(pairs)
    words = [("x", "a"), ("x", "a"), ("a",)]
    outputs = ["k s a", "k s a", "a a a a"]  # the last: 4 symbols for one letter, beyond any alignment
    scores = spelling_log_probs(model, words, outputs, (src_vocab, tgt), symbols=Symbols("codepoints", "phones"))
    # by hand: the actions k s STEP a STEP, then EOS, through the incremental steps
    state = model.start((torch.tensor([src_vocab.encode(words[0])]), torch.tensor([2])))
    total, prev = 0.0, SOS
    for action in [*(tgt.index[a] for a in ("k", "s", STEP, "a", STEP)), EOS]:
        with torch.no_grad():
            logp, state = model.step(torch.tensor([prev]), state)
        total += float(logp[0, action])
        prev = action
    assert scores[0] == pytest.approx(total, abs=1e-4) and scores[1] == scores[0]
    assert scores[2] == float("-inf")


def test_the_speed_bench_times_every_preset_including_the_transducer(tmp_path):
    from tests.p2g.test_sigmorphon import write_language

    from dllab.p2g.sigmorphon_bench import training_words_per_second

    write_language(tmp_path / "low", "ady", 120, 5, random.Random(4))
    rows = training_words_per_second("ady", "g2p", str(tmp_path))
    assert [label.split(" (")[0] for label, _ in rows] == ["homework model", "preset low", "preset medium",
                                                         "preset high"]  # fmt: skip
    assert "arch transducer" in rows[1][0] and all(speed > 0 for _, speed in rows)
