"""Imitation learning for the transducer: the dynamic oracle follows the static one on the gold path, recovers
from a wrong action at the least edit distance, and its roll-in loss equals teacher forcing when it never
follows the model."""

import random

import pytest
import torch
from rapidfuzz.distance import Levenshtein
from tests.p2g.test_transducer import _words

from dllab.cli import main
from dllab.p2g.align import STEP, ChunkAligner
from dllab.p2g.config import LSTMConfig
from dllab.p2g.data import PairData
from dllab.p2g.experiment import loss_fn
from dllab.p2g.imitation import Expert, RollIn, imitation_loss
from dllab.p2g.transducer import HardAttentionTransducer
from dllab.seq2seq.vocab import EOS, Vocab


def _setup(right_to_left=False):
    pairs = _words(300)
    src_vocab = Vocab.build(w for w, _ in pairs)
    tgt_vocab = Vocab.build([sorted({p for _, ph in pairs for p in ph}) + [STEP]])
    aligner = ChunkAligner.fit([(w[::-1] if right_to_left else w, p) for w, p in pairs])
    return pairs, src_vocab, tgt_vocab, aligner, Expert(aligner, src_vocab, tgt_vocab, right_to_left)


def _follow(word, choose):
    """Spell with the expert's state updates, `choose(optimal actions, step)` picking each action."""
    i, k, dist, out, t = 0, 0, word.start(), [], 0
    while True:
        a = choose(word.optimal(i, k, dist), t)
        t += 1
        if a == EOS:
            return out
        out.append(a)
        if a == word.step_id:
            i, k = i + 1, 0
        else:
            k, dist = k + 1, word.extend(dist, a)


def test_on_the_gold_path_the_expert_is_the_static_oracle():
    pairs, src_vocab, tgt_vocab, aligner, expert = _setup()
    for w, phones in _words(40, seed=5):
        word = expert.word(src_vocab.encode(w), tgt_vocab.encode(phones))
        assert all(len(opt) == 1 for opt in [word.optimal(0, 0, word.start())])
        actions = _follow(word, lambda opt, t: opt[0])
        assert tgt_vocab.decode(actions) == list(aligner.actions(w, phones))


def test_after_a_wrong_action_the_expert_leads_to_the_least_edit_distance():
    pairs, src_vocab, tgt_vocab, aligner, expert = _setup()
    rng = random.Random(2)
    wrong = tgt_vocab.index["o"]
    for w, phones in _words(40, seed=6):
        if not phones:
            continue
        word = expert.word(src_vocab.encode(w), tgt_vocab.encode(phones))
        # write a wrong symbol first, then follow the expert
        actions = _follow(word, lambda opt, t: wrong if t == 0 else rng.choice(opt))
        written = [a for a in actions if a != word.step_id]
        assert Levenshtein.distance(written, list(word.y)) == (0 if phones[0] == "o" else 1)
        assert actions.count(word.step_id) == len(w)  # every source symbol read once


def test_a_right_to_left_expert_reads_the_source_reversed():
    pairs, src_vocab, tgt_vocab, aligner, expert = _setup(right_to_left=True)
    w, phones = ("x", "h", "a", "b"), ("k", "s", "a", "b")
    word = expert.word(src_vocab.encode(w), tgt_vocab.encode(phones[::-1]))
    actions = _follow(word, lambda opt, t: opt[0])
    assert tgt_vocab.decode(actions) == list(aligner.actions(w, phones[::-1], right_to_left=True))
    assert tgt_vocab.decode(actions) == ["b", STEP, "a", STEP, STEP, "s", "k", STEP]


def test_without_rollin_the_loss_is_teacher_forcing_and_with_it_gradients_flow():
    pairs, src_vocab, tgt_vocab, aligner, expert = _setup()
    torch.manual_seed(0)
    model = HardAttentionTransducer(len(src_vocab), tgt_vocab, LSTMConfig(hidden=16, dropout=0.0))
    actions = [tgt_vocab.encode(aligner.actions(w, p), bos_eos=True) for w, p in pairs[:12]]
    data = PairData.from_ids([src_vocab.encode(w) for w, _ in pairs[:12]], actions)
    batch = data.batch(torch.arange(12))
    teacher = loss_fn(model, batch)
    assert imitation_loss(model, batch, expert, rollin=0.0).item() == pytest.approx(teacher.item(), rel=1e-5)
    schedule = RollIn(expert, 1.0, total=10)  # its share of the model's actions grows from 0
    assert schedule(model, batch).item() == pytest.approx(teacher.item(), rel=1e-5) and schedule.done == 1
    loss = imitation_loss(model, batch, expert, rollin=1.0)  # every next action sampled from the model
    loss.backward()
    assert torch.isfinite(loss) and model.generator.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_rollin_trains_through_the_cli_and_is_refused_without_the_transducer(tmp_path, capsys):
    from tests.p2g.test_sigmorphon import write_language

    write_language(tmp_path / "data" / "low", "ady", 200, 30, random.Random(3))
    runs = tmp_path / "runs"
    argv = ["p2g", "train", "--data", "sigmorphon", "--language", "ady", "--direction", "g2p", "--arch", "transducer",
            "--data.sigmorphon_dir", str(tmp_path / "data"), "--runs", str(runs), "--name", "il", "--rollin", "0.5",
            "--train.epochs", "12", "--model.hidden", "32", "--model.dropout", "0.1", "--train.batch_size", "16"]
    assert main(argv) == 0
    assert main(["p2g", "test", str(runs / "p2g" / "il")]) == 0
    wer = float(capsys.readouterr().out.split("WER")[1].split()[0].strip("=:"))
    assert wer < 0.5
    assert main(["p2g", "train", "--rollin", "0.5", "--runs", str(runs)]) == 2
    assert "--rollin" in capsys.readouterr().err

