import pytest
import torch
from torch import nn

from dllab.asr import text as vocab
from dllab.asr.model import ASRModel, ModelConfig, loss_fn
from dllab.seq2seq.decoding import BeamSearchDecoder, GreedyDecoder, IncrementalDecoder, decode

DECODERS = ["lstm", "transformer", "taylor"]


def _inputs(seed=0, B=3, T=41, L=9):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, T, 80, generator=g)
    lens = torch.tensor([T, 30, 17][:B])
    for b in range(B):
        feats[b, lens[b] :] = 0.0  # batches are zero-padded
    tokens = torch.randint(4, vocab.VOCAB_SIZE, (B, L), generator=g)
    tokens[:, 0] = vocab.SOS
    return feats, lens, tokens


def _model(decoder, **kw):
    torch.manual_seed(0)
    kw.setdefault("max_tokens", 20)
    return ASRModel(ModelConfig(decoder=decoder, hidden=32, heads=2, ff=64, taylor_heads=2, **kw)).eval()


@pytest.mark.parametrize("decoder", DECODERS)
def test_cached_incremental_decoding_equals_full_prefix_recomputation(decoder):
    model = _model(decoder, decoder_layers=2)
    feats, lens, tokens = _inputs()
    assert isinstance(model, IncrementalDecoder)
    with torch.no_grad():
        full = torch.log_softmax(model(feats, lens, tokens), dim=-1)  # (B, L, V)
        state = model.start({"feats": feats, "feat_lens": lens})
        steps = []
        for t in range(tokens.shape[1]):
            logp, state = model.step(tokens[:, t], state)
            steps.append(logp)
            # Recomputing the whole prefix (the notebook's decoding) gives the same next-token distribution.
            prefix = torch.log_softmax(model(feats, lens, tokens[:, : t + 1])[:, -1], dim=-1)
            torch.testing.assert_close(logp, prefix, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert state.steps == tokens.shape[1]


def test_transformer_cache_grows_and_cross_keys_are_computed_once():
    model = _model("transformer")
    feats, lens, tokens = _inputs()
    calls = []
    model.decoder.blocks[0].cross.k_proj.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        state = model.start({"feats": feats, "feat_lens": lens})
        for t in range(4):
            _, state = model.step(tokens[:, t], state)
    k, v = state.memory[0]
    assert k.shape == (3, 2, 4, 16) and v.shape == (3, 2, 4, 16)  # (B, H, t, D)
    assert len(calls) == 1


@pytest.mark.parametrize("decoder", DECODERS)
def test_an_utterance_decodes_the_same_alone_or_padded_in_a_batch(decoder):
    model = _model(decoder)
    feats, lens, tokens = _inputs()
    with torch.no_grad():
        batch = model(feats, lens, tokens)[1]
        alone = model(feats[1:2, : lens[1]], lens[1:2], tokens[1:2])[0]
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoding_strategies_run_through_the_shared_interface(decoder):
    model = _model(decoder)
    feats, lens, _ = _inputs()
    src = {"feats": feats, "feat_lens": lens}
    greedy = decode(model, src, GreedyDecoder(), sos=vocab.SOS, eos=vocab.EOS, max_len=7)
    beam1 = decode(model, src, BeamSearchDecoder(1), sos=vocab.SOS, eos=vocab.EOS, max_len=7)
    assert len(greedy) == 3 and all(len(row) <= 7 for row in greedy)
    assert greedy == beam1
    beam = decode(model, src, BeamSearchDecoder(3), sos=vocab.SOS, eos=vocab.EOS, max_len=7)
    assert len(beam) == 3


def test_loss_ignores_padding_and_training_reduces_it():
    model = _model("transformer").train()
    feats, lens, tokens = _inputs(L=6)
    padded = torch.cat([tokens, torch.full((3, 4), vocab.PAD)], dim=1)
    batch = {"feats": feats, "feat_lens": lens, "tokens": tokens}
    with torch.no_grad():
        a = loss_fn(model, batch)
        b = loss_fn(model, {**batch, "tokens": padded})
    torch.testing.assert_close(a, b)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(loss_fn(model, batch).detach())
    for _ in range(30):
        opt.zero_grad()
        loss_fn(model, batch).backward()
        opt.step()
    assert float(loss_fn(model, batch).detach()) < 0.6 * first


def test_unknown_decoder_is_rejected():
    with pytest.raises(ValueError, match="decoder"):
        ASRModel(ModelConfig(decoder="gru", max_tokens=20))  # type: ignore[arg-type]


def test_ctc_term_scores_the_transcript_without_markers_and_ignores_padding():
    model = _model("transformer", ctc_weight=0.3).train()
    feats, lens, tokens = _inputs(L=6)
    tokens[:, -1] = vocab.EOS
    tokens[2, 4:] = torch.tensor([vocab.EOS, vocab.PAD])  # a shorter transcript in the batch
    batch = {"feats": feats, "feat_lens": lens, "tokens": tokens}
    padded = {**batch, "tokens": torch.cat([tokens, torch.full((3, 3), vocab.PAD)], dim=1)}
    with torch.no_grad():
        joint = loss_fn(model, batch, ctc_weight=0.3)
        torch.testing.assert_close(joint, loss_fn(model, padded, ctc_weight=0.3))
        ce = loss_fn(model, batch, ctc_weight=0.0)
        _, logp, enc_lens = model(feats, lens, tokens[:, :-1], with_ctc=True)
        per_utt = []
        for b in range(3):
            text = [t for t in tokens[b, 1:].tolist() if t not in (vocab.EOS, vocab.PAD)]
            nll = torch.nn.functional.ctc_loss(
                logp[: enc_lens[b], b : b + 1], torch.tensor([text]), enc_lens[b : b + 1],
                torch.tensor([len(text)]), blank=vocab.PAD, reduction="sum",
            )
            per_utt.append(nll / len(text))
        torch.testing.assert_close(joint, 0.7 * ce + 0.3 * torch.stack(per_utt).mean())
    assert enc_lens.tolist() == [(n - 1) // 2 + 1 for n in lens.tolist()]


def test_ctc_weight_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="ctc_weight"):
        ASRModel(ModelConfig(ctc_weight=1.0, max_tokens=20))
    assert ASRModel(ModelConfig(hidden=32, ff=64, max_tokens=20)).ctc_head is None  # the notebook's: no extra head


def test_max_tokens_left_to_the_data_must_be_resolved_first():
    with pytest.raises(ValueError, match="derived from the data"):
        ASRModel(ModelConfig())


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_the_decoder_has_max_tokens_positions_of_either_kind(positions):
    model = _model("transformer", positions=positions, max_tokens=30)
    assert model.decoder.positions.shape == (30, 32)
    assert ("decoder.positions" in model.state_dict()) == (positions == "learned")
    feats, lens, tokens = _inputs(L=30)
    with torch.no_grad():
        assert model(feats, lens, tokens).shape == (3, 30, vocab.VOCAB_SIZE)
        with pytest.raises(ValueError, match="31 positions"):
            model(feats, lens, torch.cat([tokens, tokens[:, :1]], dim=1))
    with pytest.raises(ValueError, match="positions"):
        _model("transformer", positions="rotary")


def test_start_with_ctc_gives_the_ctc_heads_log_probabilities_from_one_encoder_pass():
    model = _model("transformer", ctc_weight=0.3)
    feats, lens, tokens = _inputs()
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        state, logp, frames = model.start_with_ctc({"feats": feats, "feat_lens": lens})
        _, ctc, ctc_lens = model(feats, lens, tokens, with_ctc=True)
    assert calls == [1, 1] and state.steps == 0
    torch.testing.assert_close(logp, ctc.transpose(0, 1))
    assert frames.tolist() == ctc_lens.tolist()
    with pytest.raises(ValueError, match="no CTC head"):
        _model("transformer").start_with_ctc({"feats": feats, "feat_lens": lens})


class NotebookAttention(nn.Module):
    """asr's own attention class before it used dllab.attention.MultiHeadAttention (whisper's), kept as the
    reference twin: query, key (no bias), value and out projections around softmax attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key = nn.Linear(dim, dim), nn.Linear(dim, dim, bias=False)
        self.value, self.out = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def _split(self, x):
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, L, D)

    def kv(self, source):
        return self._split(self.key(source)), self._split(self.value(source))

    def forward(self, x, kv=None, key_padding_mask=None, causal=False):
        from dllab.attention import softmax_attention

        q = self._split(self.query(x))
        k, v = self.kv(x) if kv is None else kv
        z = softmax_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
        return self.out(z.transpose(1, 2).flatten(2))


def _old_names(state: dict, taylor: bool) -> dict:
    """A state dict under the names the old attention class gave its projections (the Taylor self-attention
    was a MultiHeadAttention already)."""
    old = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
    out = {}
    for name, value in state.items():
        parts = name.split(".")
        if taylor and "self_blocks" in parts:
            pass
        elif len(parts) >= 3 and parts[-3] in ("attn", "cross") and parts[-2] in old:
            parts[-2] = old[parts[-2]]
        out[".".join(parts)] = value
    return out


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_the_attention_blocks_compute_what_the_old_attention_class_did(causal):
    """Self-attention (with padding or causal), cross-attention from cached keys and values, and the KV-cached
    step, each against the old class carrying the same weights: the same numbers, not just close ones."""
    from dllab.asr.model import attention

    torch.manual_seed(0)
    ref = NotebookAttention(32, 2)
    new = attention(32, 2, causal=causal)
    names = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "out_proj"}
    new.load_state_dict({names[k.split(".")[0]] + "." + k.split(".")[1]: v for k, v in ref.state_dict().items()})
    x, audio = torch.randn(3, 7, 32), torch.randn(3, 11, 32)
    pad = torch.arange(11)[None] >= torch.tensor([11, 6, 3])[:, None]  # (B, S)
    with torch.no_grad():
        if causal:
            assert torch.equal(new(x), ref(x, causal=True))
            cache, steps = None, []
            for t in range(x.shape[1]):  # the old decoder's step: extend (k, v), attend with the newest query
                y, cache = new.step(x[:, t], cache)
                steps.append(y)
            torch.testing.assert_close(torch.stack(steps, 1), ref(x, causal=True), rtol=1e-5, atol=1e-6)
        else:
            xpad = torch.arange(7)[None] >= torch.tensor([7, 5, 2])[:, None]
            assert torch.equal(new(x, key_padding_mask=xpad), ref(x, key_padding_mask=xpad))
            assert torch.equal(new(x, key_padding_mask=pad, kv=new.kv(audio)), ref(x, ref.kv(audio), pad))


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_checkpoint_with_the_old_projection_names_loads_to_the_same_model(decoder):
    model = _model(decoder, decoder_layers=2)
    old = _old_names(model.state_dict(), taylor=decoder == "taylor")
    renamed = [k for k in old if k.endswith((".query.weight", ".key.weight", ".value.weight", ".out.weight"))]
    softmax_blocks = 2 + (1 if decoder == "lstm" else 2) + (2 if decoder == "transformer" else 0)
    assert len(renamed) == 4 * softmax_blocks  # every softmax attention had its projections renamed
    torch.manual_seed(1)
    fresh = ASRModel(model.cfg).eval()
    fresh.load_state_dict(old)  # strict: every old name found its new place
    feats, lens, tokens = _inputs()
    with torch.no_grad():
        assert torch.equal(fresh(feats, lens, tokens), model(feats, lens, tokens))


def test_subsampling_by_4_halves_the_encoder_positions_and_keeps_utterances_independent_of_their_batch():
    model = _model("transformer", subsample=4, ctc_weight=0.3)
    feats, lens, tokens = _inputs()  # T = 41, 30, 17 frames
    with torch.no_grad():
        xa, pad = model.encoder(feats, lens)
        _, _, enc_lens = model(feats, lens, tokens, with_ctc=True)
        batch = model(feats, lens, tokens)[1]
        alone = model(feats[1:2, : lens[1]], lens[1:2], tokens[1:2])[0]
    assert xa.shape[1] == 11 and enc_lens.tolist() == [11, 8, 5]  # ceil(ceil(T / 2) / 2)
    assert (~pad).sum(1).tolist() == enc_lens.tolist()
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="subsample"):
        _model("transformer", subsample=3)
