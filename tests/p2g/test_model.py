"""The LSTM speller (attention, padding, incremental steps against teacher forcing) and the ensemble."""

import pytest
import torch

from dllab.p2g.config import LSTMConfig
from dllab.p2g.model import EnsembleDecoder, LSTMSeq2Seq, sequence_loss, tanh
from dllab.seq2seq.batching import pad_ids
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, decode
from dllab.seq2seq.vocab import EOS, PAD, SOS


def model(attn=True, seed=0, layers=1):
    torch.manual_seed(seed)
    return LSTMSeq2Seq(12, 9, LSTMConfig(hidden=16, dropout=0.3, attn=attn, layers=layers)).eval()


def test_padding_never_receives_attention_weight():
    m = model()
    src, src_len = pad_ids([[4, 5, 6, 7, 8], [4, 5], [9]])
    tgt_in = torch.tensor([[SOS, 4, 5], [SOS, 6, 7], [SOS, 4, 4]])
    w = m.attention_weights(src, src_len, tgt_in)  # (B, T, L)
    for b, n in enumerate(src_len.tolist()):
        assert torch.all(w[b, :, n:] == 0)
        assert torch.all(w[b, :, :n] > 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 3))


def test_padding_does_not_change_a_words_output():
    for attn in (False, True):
        m = model(attn)
        tgt_in = torch.tensor([[SOS, 4, 5, 6]])
        alone = m(*pad_ids([[4, 5]]), tgt_in)
        src, src_len = pad_ids([[4, 5], [6, 7, 8, 9, 10, 11]])
        batched = m(src, src_len, tgt_in.expand(2, -1))
        torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)


def test_incremental_steps_match_teacher_forcing():
    for attn, layers in ((False, 1), (True, 1), (True, 3)):
        m = model(attn, seed=1, layers=layers)
        src, src_len = pad_ids([[4, 5, 6], [7, 8]])
        tgt_in = torch.tensor([[SOS, 4, 5, 6], [SOS, 7, 7, 8]])
        want = torch.log_softmax(m(src, src_len, tgt_in), -1)
        state = m.start((src, src_len))
        for t in range(tgt_in.shape[1]):
            logp, state = m.step(tgt_in[:, t], state)
            torch.testing.assert_close(logp, want[:, t], rtol=1e-5, atol=1e-5)


def test_reorder_selects_rows_of_every_state_tensor():
    m = model()
    src, src_len = pad_ids([[4, 5, 6], [7, 8]])
    state = m.start((src, src_len))
    swapped = m.reorder(state, torch.tensor([1, 0, 1]))
    logp, _ = m.step(torch.tensor([SOS, SOS, SOS]), swapped)
    ref, _ = m.step(torch.tensor([SOS, SOS]), state)
    torch.testing.assert_close(logp, ref[[1, 0, 1]])


def test_stacked_layers_start_each_decoder_layer_from_its_encoder_layer():
    m = model(layers=2)
    src, src_len = pad_ids([[4, 5, 6], [7, 8]])
    state = m.start((src, src_len))
    assert state.h.shape == state.c.shape == (2, 2, 16)
    emb = m.src_embed(src)
    _, (h, _) = m.encoder(torch.nn.utils.rnn.pack_padded_sequence(emb, src_len, batch_first=True))
    # encoder h: (layers x directions, B, H/2) ordered layer 0 fwd, layer 0 bwd, layer 1 fwd, layer 1 bwd
    torch.testing.assert_close(state.h[1], torch.cat([h[2], h[3]], dim=-1))


def test_label_smoothing_ignores_padding():
    logits = torch.randn(2, 3, 9)
    gold = torch.tensor([[4, 5, PAD], [6, PAD, PAD]])
    smooth = sequence_loss(logits, gold, 0.1)
    logp = torch.log_softmax(logits, -1)
    rows = [(0, 0), (0, 1), (1, 0)]
    want = sum(0.9 * -logp[b, t, gold[b, t]] + 0.1 * -logp[b, t].mean() for b, t in rows) / 3
    torch.testing.assert_close(smooth, want)
    assert abs(float(sequence_loss(logits, gold)) - float(smooth)) > 1e-3  # 0 (the default) is plain cross-entropy


def test_eval_steps_use_the_gate_table_and_training_steps_do_not():
    m = model(layers=2)
    src, src_len = pad_ids([[4, 5, 6], [7, 8]])
    state = m.start((src, src_len))
    want = m.tgt_embed.weight @ m.decoder.weight_ih_l0.t() + m.decoder.bias_ih_l0 + m.decoder.bias_hh_l0
    torch.testing.assert_close(state.gates, want)
    # the explicit cells give nn.LSTM's step exactly (up to rounding), for every layer's (h, c)
    _, after = m.step(torch.tensor([4, 5]), state)
    _, (h, c) = m.decoder(m.tgt_embed(torch.tensor([[4], [5]])), (state.h, state.c))
    torch.testing.assert_close(after.h, h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after.c, c, rtol=1e-5, atol=1e-6)
    m.train()
    assert m.start((src, src_len)).gates is None  # dropout on the embeddings: no lookup table


def test_sigmoid_form_attention_equals_the_textbook_tanh_formula():
    """e = vᵀtanh(W_s s + W_h h), s̃ = tanh(W_out [c; s]) written out with torch.tanh, against the module."""
    x = torch.linspace(-30, 30, 20001)
    torch.testing.assert_close(tanh(x), torch.tanh(x), rtol=0, atol=3e-7)
    m = model(seed=3)
    att = m.attention
    s, enc = torch.randn(2, 3, 16), torch.randn(2, 4, 16)
    pad = torch.tensor([[False, False, False, True], [False, False, False, False]])
    scores = att.v(torch.tanh(att.w_s(s)[:, :, None] + att.w_h(enc)[:, None])).squeeze(-1)
    weights = torch.softmax(scores.masked_fill(pad[:, None], float("-inf")), -1)
    want = torch.tanh(att.w_out(torch.cat([weights @ enc, s], -1)))
    got, got_weights = att(s, enc, att.keys(enc), pad)
    torch.testing.assert_close(got_weights, weights, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_an_ensemble_averages_member_probabilities():
    a, b = model(seed=6), model(seed=7)
    src = pad_ids([[4, 5, 6], [7, 8]])
    sos = torch.tensor([SOS, SOS])
    ens = EnsembleDecoder([a, b])
    logp, state = ens.step(sos, ens.start(src))
    pa, _ = a.step(sos, a.start(src))
    pb, _ = b.step(sos, b.start(src))
    torch.testing.assert_close(logp.exp(), (pa.exp() + pb.exp()) / 2)
    swapped, _ = ens.step(torch.tensor([4, 4]), ens.reorder(state, torch.tensor([1, 0])))
    unswapped, _ = ens.step(torch.tensor([4, 4]), state)
    torch.testing.assert_close(swapped, unswapped[[1, 0]])
    greedy = GreedyDecoder()
    assert decode(EnsembleDecoder([a]), src, greedy, SOS, EOS, 6) == decode(a, src, greedy, SOS, EOS, 6)
    assert len(decode(ens, src, BeamSearchDecoder(3), SOS, EOS, 6)) == 2
    with pytest.raises(ValueError, match="at least one"):
        EnsembleDecoder([])


def test_odd_hidden_sizes_and_no_layers_are_refused():
    with pytest.raises(ValueError, match="even"):
        LSTMSeq2Seq(5, 5, LSTMConfig(hidden=7))
    with pytest.raises(ValueError, match="layers"):
        LSTMSeq2Seq(5, 5, LSTMConfig(layers=0))
    with pytest.raises(ValueError, match="no attention"):
        model(attn=False).attention_weights(*pad_ids([[4, 5]]), torch.tensor([[SOS]]))
