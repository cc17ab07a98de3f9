"""Vocab: built from data (p2g's kind, specials at 0..3) or a fixed alphabet with its own special ids (asr's)."""

import pytest
import torch

from dllab.seq2seq.vocab import EOS, PAD, SOS, SPECIALS, UNK, Vocab


def test_vocab_specials_unknowns_and_round_trip():
    v = Vocab.build([("t͡ʃ", "æ"), ("æ", "p")])
    assert v.tokens == ("<pad>", "<s>", "</s>", "<unk>", "p", "t͡ʃ", "æ")
    assert (PAD, SOS, EOS, UNK) == (0, 1, 2, 3) and (v.pad, v.sos, v.eos, v.unk) == (PAD, SOS, EOS, UNK)
    assert v.encode(["t͡ʃ", "ʒ"], bos_eos=True) == [SOS, 5, UNK, EOS]
    assert v.count_unknown([["ʒ", "æ", "ʒ"], ["q"]]) == 3
    assert v.decode([SOS, 5, 6, EOS, PAD]) == ["t͡ʃ", "æ"]
    assert Vocab.from_list(v.to_list()) == v


def test_a_fixed_alphabet_keeps_its_order_and_special_ids():
    v = Vocab(("<", ">", "@", "#", " ", "a", "b"), pad=2, sos=0, eos=1, unk=3)
    assert v.encode("ab a", bos_eos=True) == [0, 5, 6, 4, 5, 1]
    assert v.encode("aZ") == [5, 3]  # unknown -> the unk id
    assert v.decode([0, 5, 3, 6, 2, 2]) == ["a", "#", "b"]  # SOS and PAD dropped, unknown shown as its token
    assert v.decode(torch.tensor([0, 6, 1, 5, 5])) == ["b"]  # stops at the first EOS; tensors too
    assert v != Vocab(v.tokens, pad=3, sos=0, eos=1, unk=2)  # the special ids are part of the vocabulary
    assert len(v) == 7


@pytest.mark.parametrize(
    "tokens, ids, match",
    [
        (("a", "b", "a", "c"), {}, "unique"),
        (("a", "b", "c", "d"), {"pad": 1}, "special ids"),  # pad == sos
        (("a", "b", "c"), {}, "special ids"),  # unk = 3 is past the end
    ],
)
def test_bad_vocabularies_are_refused(tokens, ids, match):
    with pytest.raises(ValueError, match=match):
        Vocab(tokens, **ids)


def test_a_vocab_list_must_start_with_the_specials():
    assert Vocab.from_list([*SPECIALS, "x"]).encode(["x"]) == [4]
    with pytest.raises(ValueError, match="starts with"):
        Vocab.from_list(["x", *SPECIALS])
