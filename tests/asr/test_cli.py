"""End to end on the tiny espeak-ng corpus: train each decoder for one epoch, test, report, bench."""

import json

import pytest

from dllab.cli import main


@pytest.mark.slow
def test_train_writes_metrics_and_test_results(trained):
    for decoder in ("lstm", "transformer", "taylor"):
        run = trained / "asr" / decoder
        record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        for key in (
            "train_loss",
            "val_loss",
            "val_cer",
            "val_wer",
            "val_jaccard",
            "val_cosine",
            "val_damerau_levenshtein",
        ):
            assert key in record
        test = json.loads((run / "test_metrics.json").read_text())
        assert test["utterances"] == 1 and 0.0 <= test["jaccard"] <= 1.0
        assert test["examples"][0]["reference"]


@pytest.mark.slow
def test_test_command_prints_metrics(trained, cache_env, capsys):
    assert main(["asr", "test", str(trained / "asr" / "transformer"), "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "CER" in out and "beam_size=2" in out and "ref:" in out
    assert (
        trained
        / "asr"
        / "transformer"
        / "test_metrics_BeamSearchDecoder_beam_size=2__length_penalty=1.0_.json"
    ).exists()
    assert main(["asr", "test", str(trained / "asr" / "transformer"), "--top-p", "0.9"]) == 0
    assert "NucleusSampler(top_p=0.9)" in capsys.readouterr().out
    assert main(["asr", "test", str(trained / "asr" / "transformer"), "--top-p", "1.5"]) == 2
    assert main(["asr", "test", str(trained / "asr" / "lstm"), "--limit", "1"]) == 0
    assert "1 utterances" in capsys.readouterr().out
    assert main(["asr", "test", str(trained / "asr" / "lstm"), "--limit", "-1"]) == 2


def test_test_command_on_a_missing_run_is_a_user_error(tmp_path, capsys):
    assert main(["asr", "test", str(tmp_path / "nope")]) == 2
    assert "config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_bf16_training_with_spec_augment_runs_end_to_end(tiny_corpus, cache_env, tmp_path):
    args = ["asr", "train", "--runs", str(tmp_path), "--data.corpus", str(tiny_corpus), "--epochs", "1"]
    args += ["--eval_batch_size", "4", "--decode_max_len", "12", "--train.precision", "bf16"]
    args += ["--augment.freq_masks", "2", "--augment.time_masks", "2"]
    assert main(args) == 0
    record = json.loads((tmp_path / "asr" / "transformer" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_loss"] > 0 and 0.0 <= record["val_jaccard"] <= 1.0


@pytest.mark.parametrize(
    ("flag", "value", "match"),
    [("--augment.time_ratio", "1.5", "augment.time_ratio"), ("--augment.freq_masks", "-1", "augment.freq_masks")],
)
def test_bad_augment_options_are_user_errors(flag, value, match, tiny_corpus, cache_env, tmp_path, capsys):
    args = ["asr", "train", "--runs", str(tmp_path), "--data.corpus", str(tiny_corpus), flag, value]
    assert main(args) == 2
    assert match in capsys.readouterr().err


def test_bad_override_is_a_user_error(capsys):
    assert main(["asr", "train", "--decoder", "lstm", "--no_such_key", "1"]) == 2
    assert "no_such_key" in capsys.readouterr().err


def test_missing_corpus_folder_is_a_user_error(tmp_path, capsys, cache_env):
    assert main(["asr", "build-corpus", "--data.corpus", str(tmp_path / "missing")]) == 2
    assert "missing is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_report_section_draws_figures_and_tables(trained, tmp_path):
    from dllab.asr.report import build_section
    from dllab.report.document import Figure, ReportContext, Table

    section = build_section(ReportContext(runs_root=trained, out_dir=tmp_path))
    figures = [b.path for b in section.blocks if isinstance(b, Figure)]
    assert figures == ["figures/asr_lengths.png", "figures/asr_loss.png", "figures/asr_similarities.png"]
    tables = [b for b in section.blocks if isinstance(b, Table)]
    assert {row[1] for row in tables[0].rows} >= {"lstm", "transformer", "taylor"}
    assert (tmp_path / "figures" / "asr_loss.png").exists()


def test_report_section_without_runs_says_which_command(tmp_path):
    from dllab.asr.report import build_section
    from dllab.report.document import Paragraph, ReportContext

    section = build_section(ReportContext(runs_root=tmp_path, out_dir=tmp_path))
    assert isinstance(section.blocks[0], Paragraph) and "dllab asr train" in section.blocks[0].text


@pytest.mark.slow
def test_bench_runs_on_a_tiny_corpus(trained, tiny_corpus, cache_env, capsys):
    code = main(
        [
            "bench",
            "asr",
            "--quick",
            "--decode-only",
            "--corpus",
            str(tiny_corpus),
            "--utterances",
            "2",
            "--batch-size",
            "2",
            "--save",
            str(trained / "asr" / "bench.json"),
            "--run",
            str(trained / "asr" / "transformer"),
        ]
    )
    out = capsys.readouterr().out
    assert "identical transcripts: yes" in out and code == 0
    assert "speed-up" in out and "utterances/s" in out


def test_report_shows_the_saved_benchmark(tmp_path):
    import json

    from dllab.asr.report import _speed
    from dllab.report.document import Table

    path = tmp_path / "bench.json"
    assert "dllab bench asr" in _speed(path)[0].text
    decoding = {
        "utterances": 256,
        "batch_size": 64,
        "trained": True,
        "notebook_seconds": 60.0,
        "cache_seconds": 6.0,
        "speedup": 10.0,
        "identical": True,
    }
    path.write_text(json.dumps({"threads": 1, "quick": False, "decoding": decoding}))
    (table,) = _speed(path)
    assert isinstance(table, Table) and "(10.0x)" in table.rows[1][2] and "a trained" in table.caption
    training = {"steps": 8, "notebook_utt_per_s": 10.0, "dllab_utt_per_s": 40.0, "dllab_bf16_utt_per_s": 60.0}
    path.write_text(json.dumps({"threads": 1, "quick": False, "decoding": decoding, "training": training}))
    (table,) = _speed(path)
    assert [row[2] for row in table.rows[-3:]] == ["10.0 utt/s", "40.0 utt/s (4.0x)", "60.0 utt/s (6.0x)"]


@pytest.mark.slow
def test_bench_compares_frame_budget_batches_with_batches_of_16(long_corpus, cache_env, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "asr", "--quick", "--corpus", str(long_corpus), "--pool", "9", "--utterances", "2",
            "--batch-size", "2", "--out", str(out), "--run", str(tmp_path / "none")]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "frame budget vs batches of 16 (random)" in printed
    batching = json.loads(out.read_text())["batching"]
    assert batching["utterances"] == 9 and len(batching["rows"]) == 3
    assert all(row["utt_per_s"] > 0 for row in batching["rows"])
