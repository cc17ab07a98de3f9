import torch

from dllab.seq2seq.batching import pad_ids
from dllab.seq2seq.vocab import PAD


def test_pad_ids_right_pads_to_the_longest_and_returns_lengths():
    ids, lengths = pad_ids([[4, 5, 6], [7], [8, 9]])
    assert ids.dtype == torch.long and ids.tolist() == [[4, 5, 6], [7, PAD, PAD], [8, 9, PAD]]
    assert lengths.tolist() == [3, 1, 2]
    assert pad_ids([[4], [5, 6]], pad=9)[0].tolist() == [[4, 9], [5, 6]]
    empty, no_lengths = pad_ids([])
    assert empty.shape == (0, 0) and no_lengths.shape == (0,)


def test_rounding_up_to_a_multiple_stops_at_the_limit():
    assert pad_ids([[1] * 5], multiple=4)[0].shape == (1, 8)
    assert pad_ids([[1] * 8], multiple=4)[0].shape == (1, 8)
    assert pad_ids([[1] * 90], multiple=16, limit=99)[0].shape == (1, 96)
    assert pad_ids([[1] * 97], multiple=16, limit=99)[0].shape == (1, 99)  # 112 would pass the limit
    assert pad_ids([[1] * 99], multiple=16, limit=99)[0].shape == (1, 99)
    assert pad_ids([[1] * 120], multiple=16, limit=99)[0].shape == (1, 120)  # never cuts a sequence
