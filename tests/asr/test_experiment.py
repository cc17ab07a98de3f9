"""Lengths, modes and the training filter: no utterance is dropped from validation or test, long transcripts are
kept whole (full mode) or cut as the notebook's (course mode), on a generated corpus with long transcripts."""

import dataclasses
import json
import logging

import pytest
import torch

from dllab.asr import experiment as ex
from dllab.asr import text as vocab
from dllab.asr.config import ASRConfig
from dllab.asr.features import FeatureSet
from dllab.cli import main
from dllab.errors import UserError


def _features(texts, frames=100):
    n = len(texts)
    return FeatureSet([f"u{i}" for i in range(n)], list(texts), torch.zeros(n * frames, 80, dtype=torch.half),
                      torch.arange(n + 1) * frames)  # fmt: skip


def _splits(train=("a b.", "c" * 30), val=("d" * 40,), test=("e" * 150,)):
    return {"train": _features(train), "val": _features(val), "test": _features(test)}


def _cfg(**data):
    cfg = ASRConfig()
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))


def test_max_tokens_is_derived_from_the_longest_transcript_of_any_split_in_full_mode():
    cfg = ex.resolve_lengths(_cfg(), _splits())
    assert cfg.model.max_tokens == 152  # the 150-character test transcript + SOS + EOS
    assert ex.resolve_lengths(_cfg(mode="course"), _splits()).model.max_tokens == vocab.MAX_TOKENS
    # 30 characters in 100 frames of 160 samples at 22,050 Hz: 41.3 characters per second, + 25%
    assert cfg.decode_chars_per_second == pytest.approx(1.25 * 30 / (100 * 160 / 22_050), abs=0.01)
    again = ex.resolve_lengths(cfg, _splits())
    assert again == cfg  # resolving a resolved config changes nothing (a resumed run compares equal)


def test_an_explicit_max_tokens_in_full_mode_must_hold_every_training_transcript(caplog):
    cfg = dataclasses.replace(_cfg(), model=dataclasses.replace(ASRConfig().model, max_tokens=20))
    with pytest.raises(UserError, match=r"--model.max_tokens 20.*32 tokens.*--data.train_max_chars"):
        ex.resolve_lengths(cfg, _splits())
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, max_tokens=40))
    with caplog.at_level(logging.WARNING):
        assert ex.resolve_lengths(cfg, _splits()).model.max_tokens == 40
    assert "val and test transcripts longer than --model.max_tokens 40" in caplog.text


def test_the_training_filter_is_explicit_logged_and_never_empties_the_split(caplog):
    train = _features(["a" * 10, "b" * 200, "c" * 60])
    assert ex.training_split(_cfg(), train) == (train, 0)
    with caplog.at_level(logging.INFO):
        kept, left_out = ex.training_split(_cfg(train_max_chars=100), train)
    assert kept.texts == ["a" * 10, "c" * 60] and left_out == 1
    assert "1 with more than 100 characters left out (--data.train_max_chars)" in caplog.text
    with pytest.raises(UserError, match=r"--data.train_max_chars 5: every training transcript is longer"):
        ex.training_split(_cfg(train_max_chars=5), train)


def test_token_limits_follow_the_duration_and_the_cap():
    cfg = ex.resolve_lengths(_cfg(), _splits())
    cfg = dataclasses.replace(cfg, decode_chars_per_second=20.0)
    frames = torch.tensor([0, 138, 1378, 100_000])  # 0 s, 1 s, 10 s, 725 s of audio
    assert ex.token_limits(cfg, frames).tolist() == [10, 31, 150, 150]  # rate x seconds + 10, at most 152 - 2
    assert ex.token_limits(dataclasses.replace(cfg, decode_max_len=12), frames).tolist() == [10, 11, 11, 11]


def test_transcript_lengths_summarise_a_split():
    stats = ex.transcript_lengths(["a" * 5, "b" * 98, "c" * 100, "d" * 187])
    assert stats["utterances"] == 4 and stats["max"] == 187 and stats["over_97"] == 0.75
    assert stats["mean"] == pytest.approx((5 + 98 + 100 + 187) / 4)
    assert sum(stats["histogram"]) == 4 and stats["histogram"][0] == 1 and stats["histogram"][9] == 2


def _train(corpus, runs, name, *extra):
    args = ["asr", "train", "--decoder", "transformer", "--runs", str(runs), "--name", name, "--data.corpus",
            str(corpus), "--epochs", "1", "--warmup_steps", "1", "--model.hidden", "32", "--model.ff", "64",
            "--eval_batch_size", "2", *extra]  # fmt: skip
    return main(args)


def test_full_mode_scores_every_test_utterance_whole(long_corpus, long_texts, cache_env, tmp_path):
    assert _train(long_corpus, tmp_path, "full") == 0
    run = tmp_path / "asr" / "full"
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["data"]["mode"] == "full" and record["sizes"] == {"train": 9, "val": 1, "test": 2}
    assert record["config"]["model"]["max_tokens"] == max(len(t) for t in long_texts) + 2
    assert record["left_out_of_training"] == 0 and record["transcripts"]["test"]["max"] == 158
    test = json.loads((run / "test_metrics.json").read_text())
    assert test["utterances"] == test["of"] == 2 and test["mode"] == "full"
    assert [g["utterances"] for g in test["by_length"]] == [1, 0, 1]
    assert test["examples"][1]["reference"] == long_texts[11]  # whole, never cut
    assert test["cer"] == test["cer_whole"]


def test_course_mode_cuts_the_references_and_still_scores_every_utterance(
    long_corpus, long_texts, cache_env, tmp_path, capsys
):
    assert _train(long_corpus, tmp_path, "course", "--data.mode", "course") == 0
    run = tmp_path / "asr" / "course"
    assert json.loads((run / "config.json").read_text())["config"]["model"]["max_tokens"] == 99
    test = json.loads((run / "test_metrics.json").read_text())
    assert test["utterances"] == 2 and test["mode"] == "course"
    assert test["examples"][1]["reference"] == long_texts[11][:97]  # as the notebook scored it
    assert test["by_length"][2]["cer_whole"] >= test["by_length"][2]["cer"] - 1e-9  # the cut-off part counts
    assert "course mode (2 of 2 utterances scored" in capsys.readouterr().out


def test_the_training_filter_leaves_out_only_training_utterances(long_corpus, cache_env, tmp_path):
    assert _train(long_corpus, tmp_path, "filtered", "--data.train_max_chars", "100") == 0
    record = json.loads((tmp_path / "asr" / "filtered" / "config.json").read_text())
    assert record["left_out_of_training"] == 1 and record["sizes"]["test"] == 2
    test = json.loads((tmp_path / "asr" / "filtered" / "test_metrics.json").read_text())
    assert test["utterances"] == 2


def test_a_filter_that_leaves_no_training_utterance_is_a_user_error(long_corpus, cache_env, tmp_path, capsys):
    assert _train(long_corpus, tmp_path, "empty", "--data.train_max_chars", "3") == 2
    assert "--data.train_max_chars 3" in capsys.readouterr().err


@pytest.mark.slow
def test_joint_ctc_beam_search_decodes_every_test_utterance(long_corpus, cache_env, tmp_path, capsys):
    assert _train(long_corpus, tmp_path, "ctc", "--model.ctc_weight", "0.3", "--train.batch_budget", "2000",
                  "--train.bucket", "2") == 0  # fmt: skip
    run = tmp_path / "asr" / "ctc"
    assert main(["asr", "test", str(run), "--beam", "3"]) == 0
    out = capsys.readouterr().out
    assert "CTC 0.3" in out and "2 of 2 utterances scored" in out
    name = "test_metrics_BeamSearchDecoder_beam_size=3__length_penalty=1.0__ctc=0.3.json"
    summary = json.loads((run / name).read_text())
    assert summary["ctc_weight"] == 0.3 and summary["utterances"] == 2
    assert main(["asr", "test", str(run), "--beam", "3", "--ctc-weight", "0"]) == 0
    assert "CTC" not in capsys.readouterr().out.split("\n")[0]
    assert main(["asr", "test", str(run), "--split", "val", "--ctc-weight", "0.5"]) == 0  # greedy + CTC, on val
    assert "val, full mode (1 of 1 utterances scored, GreedyDecoder() + CTC 0.5)" in capsys.readouterr().out
    assert (run / "val_metrics_GreedyDecoder___ctc=0.5.json").exists()
