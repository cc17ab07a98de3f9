from pathlib import Path

import pytest

from dllab.data.wikipron import load_split_dir, read_pairs
from dllab.errors import UserError

COURSE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "wikipron-p2g"


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_multi_codepoint_ipa_symbols_are_single_tokens(tmp_path):
    f = write(tmp_path / "a.tsv", "t͡ʃ æ p l ə t\tchaplet\nɹ iː s t\tRéist\r\n")
    pairs, skipped = read_pairs(f)
    assert skipped == 0
    assert pairs[0] == (("t͡ʃ", "æ", "p", "l", "ə", "t"), "chaplet")
    assert len("t͡ʃ") == 3 and len(pairs[0][0]) == 6
    assert pairs[1] == (("ɹ", "iː", "s", "t"), "Réist")  # case and accents kept, CRLF tolerated


@pytest.mark.parametrize(
    "line, problem",
    [
        ("a b c", "exactly one tab, found 0"),
        ("a b\tab\tx", "exactly one tab, found 2"),
        ("  \tab", "empty phoneme side"),
        ("a b\t ", "empty spelling side"),
        ("", "exactly one tab, found 0"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, problem):
    f = write(tmp_path / "bad.tsv", f"a\tb\n{line}\nc\td\n")
    with pytest.raises(UserError, match=rf"bad.tsv:2: .*{problem}"):
        read_pairs(f)
    pairs, skipped = read_pairs(f, skip_bad_lines=True)
    assert skipped == 1 and [w for _, w in pairs] == ["b", "d"]


def test_undecodable_bytes_name_the_line(tmp_path):
    f = write(tmp_path / "bin.tsv", b"a\tb\nc\t\xff\xfe\n")
    with pytest.raises(UserError, match=r"bin.tsv:2: not valid UTF-8"):
        read_pairs(f)
    assert read_pairs(f, skip_bad_lines=True)[1] == 1


def test_empty_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="empty.tsv: is empty"):
        read_pairs(write(tmp_path / "empty.tsv", ""))
    with pytest.raises(UserError, match="no valid pairs"):
        read_pairs(write(tmp_path / "junk.tsv", "junk\n"), skip_bad_lines=True)
    with pytest.raises(UserError, match="nope.tsv: no such file"):
        read_pairs(tmp_path / "nope.tsv")
    with pytest.raises(UserError, match="no train.tsv"):
        load_split_dir(tmp_path)


def test_split_dir_without_test_uses_valid(tmp_path):
    write(tmp_path / "train.tsv", "a\tb\n")
    write(tmp_path / "valid.tsv", "c\td\n")
    splits, skipped = load_split_dir(tmp_path)
    assert splits.test_is_valid and splits.test == splits.valid == [(("c",), "d")] and skipped == 0
    write(tmp_path / "test.tsv", "e\tf\n")
    splits, _ = load_split_dir(tmp_path)
    assert not splits.test_is_valid and splits.test == [(("e",), "f")]


@pytest.mark.skipif(not (COURSE / "train.tsv").exists(), reason="course data not present")
def test_course_files_read_cleanly():
    splits, skipped = load_split_dir(COURSE)
    assert skipped == 0 and len(splits.train) == 10_000 and len(splits.valid) == 1_000
    symbols = {s for p, _ in splits.train for s in p}
    assert "t͡ʃ" in symbols and "iː" in symbols
