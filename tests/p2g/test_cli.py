"""`dllab p2g spell` on hostile input: unknown symbols named (a warning, or an error with --strict), no word
at all a clear error, words read from a file or standard input."""

import io
import re
import sys

import pytest

from dllab.cli import main


@pytest.mark.parametrize(
    "words, file_text, match",
    [
        ([], None, "no words to spell"),
        (["æ b", "  "], None, "word 2 is blank"),
        ([], "", r"words\.txt: no words to spell"),
        ([], "\n  \n\t\n", r"words\.txt: no words to spell"),
        ([], b"\xff\xfe b\n", r"words\.txt: not UTF-8"),
    ],
    ids=["no-argument", "blank-argument", "empty-file", "blank-lines-only", "not-utf8"],
)
def test_spell_refuses_empty_input_before_loading_the_run(tmp_path, capsys, words, file_text, match):
    argv = ["p2g", "spell", str(tmp_path / "no-such-run"), *words]
    if file_text is not None:
        path = tmp_path / "words.txt"
        path.write_bytes(file_text if isinstance(file_text, bytes) else file_text.encode())
        argv += ["--file", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err)


def test_spell_names_a_missing_words_file(tmp_path, capsys):
    assert main(["p2g", "spell", str(tmp_path / "run"), "--file", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_symbols_are_named_with_their_words_and_still_spelled(trained, tmp_path, capsys):
    run, _ = trained
    assert main(["p2g", "spell", str(run.path), "æ b"]) == 0
    assert capsys.readouterr().err == ""  # known symbols only: no warning
    (tmp_path / "words.txt").write_text("q b\n\n ʔ æ q \n", encoding="utf-8")
    assert main(["p2g", "spell", str(run.path), "æ q", "b", "--file", str(tmp_path / "words.txt")]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == ["æ q", "b", "q b", "ʔ æ q"]
    assert "2 phoneme(s)" in err and "--strict" in err
    assert f"'q' in word 1, {tmp_path / 'words.txt'}:1, {tmp_path / 'words.txt'}:3" in err
    assert f"'ʔ' in {tmp_path / 'words.txt'}:3" in err


@pytest.mark.slow
def test_strict_refuses_unknown_symbols(trained, capsys):
    run, _ = trained
    assert main(["p2g", "spell", str(run.path), "æ b", "æ q", "--strict"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("dllab: error: 1 phoneme(s)") and "'q' in word 2" in err
    assert main(["p2g", "spell", str(run.path), "æ b", "--strict"]) == 0  # nothing unknown: spelled
    assert capsys.readouterr().out.startswith("æ b\t")


@pytest.mark.slow
def test_spell_reads_words_from_standard_input(trained, monkeypatch, capsys):
    run, _ = trained
    monkeypatch.setattr(sys, "stdin", io.StringIO("æ b\n\n  b æ  \n"))
    assert main(["p2g", "spell", str(run.path), "--file", "-"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == ["æ b", "b æ"] and err == ""
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n \n"))
    assert main(["p2g", "spell", str(run.path), "--file", "-"]) == 2
    assert "<stdin>: no words to spell" in capsys.readouterr().err
