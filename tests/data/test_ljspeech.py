import logging

import numpy as np
import pytest
import soundfile

from dllab.data.ljspeech import SAMPLE_RATE, read_metadata, read_wav, split_ranges
from dllab.errors import UserError


def _corpus(root, lines, wavs=()):
    (root / "wavs").mkdir(parents=True)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, rate, seconds in wavs:
        t = np.arange(int(rate * seconds)) / rate
        soundfile.write(root / "wavs" / f"{name}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate)
    return root


def test_reads_ljspeech_metadata(tmp_path):
    root = _corpus(
        tmp_path / "c", ["LJ001-0001|Printing, in 1 sense|Printing, in one sense", "LJ001-0002|b|b"]
    )
    utts = read_metadata(root)
    assert [u.id for u in utts] == ["LJ001-0001", "LJ001-0002"]
    assert utts[0].normalized == "Printing, in one sense" and utts[0].text == "Printing, in 1 sense"
    assert utts[0].wav == root / "wavs" / "LJ001-0001.wav"


def test_missing_column_names_file_and_line(tmp_path):
    root = _corpus(tmp_path / "c", ["a|x|x", "b|only two"])
    with pytest.raises(UserError, match=r"metadata\.csv:2: expected 3"):
        read_metadata(root)


def test_empty_transcript_names_file_line_and_id(tmp_path):
    root = _corpus(tmp_path / "c", ["a|x|x", "b|text|  "])
    with pytest.raises(UserError, match=r"metadata\.csv:2: empty transcript for b"):
        read_metadata(root)


def test_missing_metadata_names_the_file(tmp_path):
    with pytest.raises(UserError, match="metadata.csv: not found"):
        read_metadata(tmp_path)


def test_wrong_sample_rate_is_resampled_with_a_warning(tmp_path, caplog):
    root = _corpus(tmp_path / "c", ["a|x|x"], wavs=[("a", 16_000, 0.5)])
    with caplog.at_level(logging.WARNING):
        audio = read_wav(root / "wavs" / "a.wav")
    assert audio.dtype == np.float32
    assert abs(len(audio) - SAMPLE_RATE // 2) <= 2
    assert "16000 Hz, resampled to 22050 Hz" in caplog.text and "a.wav" in caplog.text


def test_corrupt_wav_is_a_user_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(UserError, match="bad.wav: cannot read audio"):
        read_wav(path)
    with pytest.raises(UserError, match="missing.wav: audio file not found"):
        read_wav(tmp_path / "missing.wav")


def test_split_ranges_follow_the_course_split():
    ranges = split_ranges(13_100)
    assert (ranges["train"].stop, ranges["val"].stop, ranges["test"].stop) == (9_825, 10_480, 13_100)
    small = split_ranges(20)
    assert len(small["train"]) == 15 and len(small["val"]) >= 1 and small["test"].stop == 20


@pytest.mark.parametrize("line", ["LJ001-0001|||", "LJ001-0001||", "LJ001-0001|text|||", "LJ001-0001|x|...",
                                  "LJ001-0001|x| | |"])  # fmt: skip
def test_a_transcript_without_letters_is_an_error_whatever_the_column_count(tmp_path, line):
    root = _corpus(tmp_path / "c", ["a|x|x", line])
    with pytest.raises(UserError, match=r"metadata\.csv:2: empty transcript for LJ001-0001"):
        read_metadata(root)
