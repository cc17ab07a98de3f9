"""SIGMORPHON 2021 Task 1 files: reading, symbols (grapheme clusters, jamo), languages, the task's WER."""

import unicodedata

import pytest

from dllab.data.sigmorphon import (
    BASELINE_DEV,
    BASELINE_MACRO_DEV,
    LANGUAGES,
    SUBTASKS,
    is_covered,
    join_units,
    language_files,
    read_task_pairs,
    read_task_words,
    select_languages,
    split_units,
    task_wer,
)
from dllab.errors import UserError


def test_the_21_languages_and_the_baseline_macro_averages_agree():
    assert [len(SUBTASKS[s]) for s in ("high", "medium", "low")] == [1, 10, 10] and len(LANGUAGES) == 21
    for subtask, langs in SUBTASKS.items():
        # the README's medium figures average 9.31 against its macro 9.35 (rounded per-language figures)
        assert sum(BASELINE_DEV[lang] for lang in langs) / len(langs) == pytest.approx(BASELINE_MACRO_DEV[subtask],
                                                                                       abs=0.05)  # fmt: skip


def test_task_lines_are_spelling_then_phones_and_brought_to_nfc(tmp_path):
    decomposed = unicodedata.normalize("NFD", "việt")
    path = tmp_path / "vie_hanoi_train.tsv"
    path.write_text(f"{decomposed}\tv i ə t̚ ˧˨ʔ\nxin chào\ts i n t͡ɕ a w ˨˩\n", encoding="utf-8")
    pairs, skipped = read_task_pairs(path)
    assert skipped == 0
    assert pairs[0] == (("v", "i", "ə", "t̚", "˧˨ʔ"), "việt") and unicodedata.is_normalized("NFC", pairs[0][1])
    assert pairs[1][1] == "xin chào"  # a spelling may hold spaces


@pytest.mark.parametrize("text, problem", [("a b c", "exactly one tab, found 0"), ("ab\t ", "empty phoneme side"),
                                           ("\ta", "empty spelling side")])  # fmt: skip
def test_a_malformed_task_line_names_file_and_line(tmp_path, text, problem):
    path = tmp_path / "x.tsv"
    path.write_text(f"ab\ta b\n{text}\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"x.tsv:2: .*{problem}"):
        read_task_pairs(path)


def test_an_empty_task_file_is_a_clear_error(tmp_path):
    (tmp_path / "e.tsv").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match=r"e.tsv: is empty; expected lines '<spelling>\\t<space-separated phones>'"):
        read_task_pairs(tmp_path / "e.tsv")


def test_a_covered_test_file_is_its_spellings_in_nfc(tmp_path):
    covered = tmp_path / "vie_hanoi_test.txt"
    covered.write_text("\ufeff" + unicodedata.normalize("NFD", "việt") + "\r\nxin chào\n", encoding="utf-8")
    assert is_covered(covered) and read_task_words(covered) == ["việt", "xin chào"]
    paired = tmp_path / "p.tsv"
    paired.write_text("ab\ta b\n", encoding="utf-8")
    assert not is_covered(paired)


@pytest.mark.parametrize("text, problem", [("ab\ta b", "found a tab"), ("", "empty line"), ("  ", "empty line")])
def test_a_bad_covered_line_names_file_and_line(tmp_path, text, problem):
    path = tmp_path / "c.txt"
    path.write_text(f"ab\n{text}\nba\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"c.txt:2: .*{problem}"):
        read_task_words(path)
    (tmp_path / "e.txt").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match=r"e.txt: is empty"):
        read_task_words(tmp_path / "e.txt")


@pytest.mark.parametrize("text, graphemes", [
    ("가곡", ("가", "곡")),  # Hangul syllables (NFC) are one symbol each
    ("việt", ("v", "i", "ệ", "t")),
    ("ქართ", ("ქ", "ა", "რ", "თ")),
    ("հայ", ("հ", "ա", "յ")),
    ("e\u0301\u0323x", ("e\u0301\u0323", "x")),  # no precomposed form: the marks stay with their letter
])  # fmt: skip
def test_spellings_split_into_grapheme_clusters(text, graphemes):
    nfc = tuple(unicodedata.normalize("NFC", g) for g in graphemes)
    assert split_units(text, "graphemes") == nfc
    assert join_units(split_units(text, "graphemes"), "graphemes") == unicodedata.normalize("NFC", text)


def test_decomposed_units_spell_hangul_as_jamo_and_join_back_to_nfc():
    jamo = split_units("각", "decomposed")
    assert len(jamo) == 3 and join_units(jamo, "decomposed") == "각"
    assert split_units("t͡ɕ a", "phones") == ("t͡ɕ", "a") and join_units(("t͡ɕ", "a"), "phones") == "t͡ɕ a"
    assert split_units("é", "codepoints") == ("é",)


def test_language_files_and_selection(tmp_path):
    (tmp_path / "low").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "low" / f"ady_{split}.tsv").write_text("a\tb\n", encoding="utf-8")
    files = language_files(tmp_path, "ady")
    assert files.subtask == "low" and files.test is None and files.dev.name == "ady_dev.tsv"
    with pytest.raises(UserError, match="gre_train.tsv: no such file"):
        language_files(tmp_path, "gre")
    with pytest.raises(UserError, match="not a SIGMORPHON 2021 language"):
        language_files(tmp_path, "xyz")
    assert select_languages("medium") == list(SUBTASKS["medium"]) and len(select_languages("all")) == 21
    assert select_languages("kor, ady") == ["kor", "ady"]
    with pytest.raises(UserError, match="unknown language or subtask xx"):
        select_languages("kor,xx")


def test_task_wer_compares_whitespace_split_sequences_times_100():
    assert task_wer(["a b", "a  b ", "b a", "x"], ["a b", "a b", "a b", "x"]) == 25.0
    with pytest.raises(ValueError):
        task_wer(["a"], [])
