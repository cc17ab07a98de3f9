import torch

from dllab.p2g.bench import skeleton_forward, skeleton_greedy
from dllab.p2g.config import LSTMConfig
from dllab.p2g.model import LSTMSeq2Seq
from dllab.seq2seq.batching import pad_ids
from dllab.seq2seq.decoding import GreedyDecoder, decode
from dllab.seq2seq.vocab import EOS, SOS, Vocab


def test_the_skeleton_baseline_computes_the_same_model():
    torch.manual_seed(0)
    model = LSTMSeq2Seq(10, 9, LSTMConfig(hidden=16, attn=True)).eval()
    src, src_len = pad_ids([[4, 5, 6], [7, 8]])
    tgt_in = torch.tensor([[SOS, 4, 5, 6], [SOS, 7, 7, 8]])
    torch.testing.assert_close(skeleton_forward(model, src, src_len, tgt_in), model(src, src_len, tgt_in))


def test_the_one_word_loop_spells_what_batched_greedy_spells():
    torch.manual_seed(1)
    vocab = Vocab.build([["a", "b", "c", "d", "e", "f"]])
    model = LSTMSeq2Seq(len(vocab), 9, LSTMConfig(hidden=16, attn=True)).eval()
    words = [("a", "b"), ("c",), ("d", "e", "f", "a")]
    src = pad_ids([vocab.encode(w) for w in words])
    assert skeleton_greedy(model, words, vocab, 12) == decode(model, src, GreedyDecoder(), SOS, EOS, 12)
