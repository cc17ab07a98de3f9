"""The Transformer speller: shapes, causality, incremental decoding equal to teacher forcing, ensembles."""

import pytest
import torch

from dllab.p2g.config import P2GConfig, TransformerConfig
from dllab.p2g.model import EnsembleDecoder, LSTMSeq2Seq, build_model
from dllab.p2g.transformer import TransformerSeq2Seq, sinusoids
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, decode
from dllab.seq2seq.vocab import EOS, PAD, SOS, Vocab

CFG = TransformerConfig(d_model=16, heads=2, ff=32, encoder_layers=2, decoder_layers=2, dropout=0.0)


def _batch():
    src = torch.tensor([[4, 5, 6], [5, 4, PAD]])
    return src, torch.tensor([3, 2]), torch.tensor([[SOS, 4, 5, 6], [SOS, 6, PAD, PAD]])


def test_forward_shapes_and_causality():
    torch.manual_seed(0)
    model = TransformerSeq2Seq(8, 9, CFG).eval()
    src, src_len, tgt = _batch()
    logits = model(src, src_len, tgt)
    assert logits.shape == (2, 4, 9)
    changed = tgt.clone()
    changed[0, 3] = 7  # a later target token cannot change earlier positions' logits
    assert torch.allclose(model(src, src_len, changed)[0, :3], logits[0, :3], atol=1e-6)
    # padding in the source is ignored
    longer = torch.cat([src, torch.full((2, 2), PAD)], dim=1)
    assert torch.allclose(model(longer, src_len, tgt)[1, :2], logits[1, :2], atol=1e-5)
    assert sinusoids(5, 6).shape == (5, 6)


def test_incremental_steps_equal_teacher_forcing():
    torch.manual_seed(1)
    model = TransformerSeq2Seq(8, 9, CFG).eval()
    src, src_len, tgt = _batch()
    full = torch.log_softmax(model(src, src_len, tgt), dim=-1)
    state = model.start((src, src_len))
    for t in range(tgt.shape[1] - 2):  # row 1 is padded after 2 tokens
        logp, state = model.step(tgt[:, t], state)
        assert torch.allclose(logp, full[:, t], atol=1e-5)
    state = model.reorder(state, torch.tensor([1, 1, 0]))
    assert state.memory.shape[0] == 3 and state.prefix.shape == (3, 2)


def test_build_model_picks_the_architecture_and_ensembles_mix_them():
    vocabs = Vocab.build([["a", "b"]]), Vocab.build([["x", "y"]])
    cfg = P2GConfig(arch="transformer", transformer=CFG)
    transformer = build_model(cfg, *vocabs).eval()
    lstm = build_model(P2GConfig(), *vocabs).eval()
    assert isinstance(transformer, TransformerSeq2Seq) and isinstance(lstm, LSTMSeq2Seq)
    src = (torch.tensor([[4, 5]]), torch.tensor([2]))
    for strategy in (GreedyDecoder(), BeamSearchDecoder(3)):
        out = decode(EnsembleDecoder([transformer, lstm]), src, strategy, SOS, EOS, max_len=6)
        assert len(out) == 1 and all(0 <= i < len(vocabs[1]) for i in out[0])
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerSeq2Seq(8, 9, TransformerConfig(d_model=10, heads=4))
