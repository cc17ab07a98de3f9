"""Building p2g data from split files: vocabularies from train, unknown symbols, reversal, tensors, vocab.json."""

import pytest
import torch

from dllab.engine import RunDir
from dllab.errors import UserError
from dllab.p2g.config import DataConfig
from dllab.p2g.data import PairData, build_data, read_vocabs, src_batches, to_text, write_vocabs
from dllab.seq2seq.vocab import EOS, PAD, SOS, UNK, Vocab


def _course_dir(tmp_path, train, valid, test=None):
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        if lines is not None:
            (tmp_path / f"{name}.tsv").write_text("".join(f"{p}\t{w}\n" for p, w in lines), encoding="utf-8")
    return DataConfig(source="course", dir=str(tmp_path))


def test_pair_data_trims_each_batch_to_its_longest_sequence():
    data = PairData.from_ids([[4, 5, 6, 7], [4], [5, 5]], [[1, 4, 2], [1, 4, 4, 4, 4, 2], [1, 2]])
    src, src_len, tgt, tgt_len = data.batch(torch.tensor([1, 2]))
    assert src.tolist() == [[4, PAD], [5, 5]] and src_len.tolist() == [1, 2]
    assert tgt.shape == (2, 6) and tgt_len.tolist() == [6, 2]
    assert len(data.subset(2)) == 2
    # length buckets sort by target length first, then source length
    assert data.length_keys().tolist() == [3 * 5 + 4, 6 * 5 + 1, 2 * 5 + 2]


def test_pair_data_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        PairData.from_ids([[4], [5]], [[1, 2]])
    with pytest.raises(ValueError, match="empty source"):
        PairData.from_ids([[4], []], [[1, 2], [1, 2]])
    with pytest.raises(ValueError, match="same number of rows"):
        PairData(torch.zeros(2, 3), torch.zeros(2), torch.zeros(1, 3), torch.zeros(2))


def test_build_data_takes_vocabularies_from_train_and_counts_unseen_symbols(tmp_path):
    cfg = _course_dir(tmp_path, [("æ b", "ab"), ("b æ", "ba")], [("æ ʒ", "az")])
    data = build_data(cfg)
    assert data.src_vocab.tokens[4:] == ("b", "æ") and data.tgt_vocab.tokens[4:] == ("a", "b")
    assert data.valid_src == [("æ", "ʒ")] and data.valid_gold == ["az"]
    assert data.test_src == data.valid_src and data.info["test_is_valid"]  # no test.tsv: valid stands in
    assert data.info["unknown_symbols"]["valid"] == {"phonemes": 1, "letters": 1}
    assert data.info["sizes"] == {"train": 2, "valid": 1, "test": 1}
    src, src_len, tgt, tgt_len = data.train.batch(torch.arange(2))
    assert tgt[0].tolist() == [SOS, 4, 5, EOS] and src_len.tolist() == [2, 2]
    # given vocabularies are kept (evaluation reads the run's), and limits cut every split
    again = build_data(DataConfig(source="course", dir=str(tmp_path), limit_train=1), (data.src_vocab,
                                                                                        data.tgt_vocab))
    assert again.src_vocab is data.src_vocab and len(again.train) == 1


def test_reversed_data_spells_right_to_left(tmp_path):
    cfg = _course_dir(tmp_path, [("æ b", "ab")], [("b æ", "ba")], [("b", "b")])
    data = build_data(DataConfig(source="course", dir=str(tmp_path), reverse=True))
    # the gold text stays left to right; the model learns the reversed symbols and `symbols.text` turns back
    assert data.valid_gold == ["ba"] and data.test_gold == ["b"] and not data.info["test_is_valid"]
    assert data.symbols.target("ab") == ("b", "a") and data.symbols.text(("b", "a")) == "ab"
    assert data.train.tgt[0].tolist() == [SOS, *data.tgt_vocab.encode("ba"), EOS]
    assert build_data(cfg).train.tgt[0].tolist() == [SOS, *data.tgt_vocab.encode("ab"), EOS]


def test_missing_course_files_name_the_folder(tmp_path):
    with pytest.raises(UserError, match="no train.tsv"):
        build_data(DataConfig(source="course", dir=str(tmp_path / "nowhere")))


def test_src_batches_pad_each_batch_in_order():
    vocab = Vocab.build([["a", "b", "c"]])
    batches = list(src_batches([("a",), ("b", "c"), ("c", "c", "a")], vocab, 2, torch.device("cpu")))
    assert [b[0].tolist() for b in batches] == [[[4, PAD], [5, 6]], [[6, 6, 4]]]
    assert [b[1].tolist() for b in batches] == [[1, 2], [3]]


def test_to_text_shows_unknown_letters_as_one_replacement_character():
    vocab = Vocab.build(["ab"])
    assert to_text([4, UNK, 5], vocab) == "a\ufffdb"


def test_vocabularies_round_trip_through_the_run_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(UserError, match="vocab.json: missing"):
        read_vocabs(run)
    run.path.mkdir()
    vocabs = Vocab.build([["t͡ʃ", "æ"]]), Vocab.build(["ch"])
    write_vocabs(run, *vocabs)
    assert read_vocabs(run) == vocabs


def test_unknown_by_symbol_lists_each_unseen_symbol_with_the_words_holding_it():
    from dllab.p2g.data import unknown_by_symbol

    vocab = Vocab.build([("æ", "b")])
    words = [("æ", "q", "q"), ("b",), ("ʔ", "q")]
    assert unknown_by_symbol(words, vocab) == {"q": [0, 2], "ʔ": [2]}
    assert unknown_by_symbol([("b", "æ")], vocab) == {}


def test_read_words_skips_blank_lines_and_names_file_and_line(tmp_path):
    from dllab.p2g.data import read_words

    path = tmp_path / "w.txt"
    path.write_text("æ b\n\n  b æ \r\n", encoding="utf-8")
    assert read_words(path) == [(f"{path}:1", "æ b"), (f"{path}:3", "b æ")]
    path.write_text(" \n")
    with pytest.raises(UserError, match="no words to spell"):
        read_words(path)
    with pytest.raises(UserError, match="cannot read"):
        read_words(tmp_path)  # a folder
