import pytest

from dllab.asr import text as vocab


def test_vocabulary_is_the_notebooks_35_symbols():
    assert vocab.VOCAB_SIZE == 35
    assert "".join(vocab.SYMBOLS[:9]) == "<>@# ,.?-"
    assert vocab.SYMBOLS[vocab.PAD] == "@" and vocab.SYMBOLS[vocab.UNK] == "#"


def test_encode_lowercases_maps_unknowns_and_adds_markers():
    ids = vocab.encode("Hi!")
    assert ids[0] == vocab.SOS and ids[-1] == vocab.EOS
    assert vocab.decode(ids) == "hi#"


def test_decode_stops_at_eos_and_skips_padding():
    ids = vocab.encode("ab") + [vocab.PAD, vocab.PAD]
    assert vocab.decode(ids) == "ab"
    assert vocab.decode([vocab.SOS, *vocab.encode("x")[1:-1], vocab.EOS, *vocab.encode("junk")]) == "x"


def test_pad_tokens_right_pads_with_pad():
    out = vocab.pad_tokens([[0, 5, 1], [0, 1]])
    assert out.tolist() == [[0, 5, 1], [0, 1, vocab.PAD]]


def test_cut_keeps_what_fits_the_cap_with_both_markers():
    text = "a" * 150
    assert vocab.cut(text, vocab.MAX_TOKENS) == "a" * 97
    assert len(vocab.encode(vocab.cut(text, vocab.MAX_TOKENS))) == vocab.MAX_TOKENS
    assert vocab.cut("short.", vocab.MAX_TOKENS) == "short."
    with pytest.raises(ValueError, match="max_tokens"):
        vocab.cut(text, 2)
