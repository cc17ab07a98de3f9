"""The headline table: each capability's reproduced figure read from its run directory, beside the submitted
reports' figures, and the plan's estimate against the measured time per experiment."""

import json

from dllab.report import build
from dllab.report.document import Table, to_markdown
from dllab.report.submitted import Headline, format_rows, headlines, section


def _run(path, test_metrics):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "test_metrics.json").write_text(json.dumps(test_metrics))


def test_each_capability_reads_its_figure_from_the_run_it_names(tmp_path):
    _run(tmp_path / "vision" / "hw2024-fashion-mnist" / "bn-gap-lr0.01", {"final": {"test_acc": 0.9012}})
    _run(tmp_path / "p2g" / "course-attn", {"greedy": {"split": "valid", "words": 1000, "cer": 0.25, "wer": 0.7}})
    _run(tmp_path / "asr" / "lstm", {"split": "test", "utterances": 12, "jaccard": 0.5, "cosine": 0.6,
                                      "damerau_levenshtein": 0.4})  # fmt: skip
    rows = headlines(tmp_path, only=["vision", "p2g", "asr"])
    by = {(r.experiment, r.metric): r for r in rows}

    bn_gap = by["2024-25 CNN, BN + GAP, lr 0.01, 40 epochs", "final test accuracy"]
    assert bn_gap.ours == 0.9012 and bn_gap.submitted == (("seed 004", 0.7623),)
    assert "Fashion-MNIST" in bn_gap.ours_data and "Intel" in bn_gap.submitted_data
    greedy = by["phoneme-to-spelling LSTM, attention, greedy", "CER"]
    assert greedy.ours == 0.25 and greedy.ours_data == "course valid split, 1,000 words"
    assert by["phoneme-to-spelling LSTM, attention, greedy", "WER"].ours == 0.7
    lstm = by["speech recognition, LSTM decoder, greedy", "Damerau-Levenshtein similarity"]
    assert lstm.ours == 0.4 and lstm.submitted == (("seed 000", 0.5087),)
    assert "12 utterances" in lstm.ours_data
    attention = by["speech recognition, attention decoder, greedy", "Jaccard similarity"]
    assert attention.ours is None and [who for who, _ in attention.submitted] == ["seed 000", "seed 002"]
    # every run not written here is missing, not zero
    missing = [r for r in rows if r.ours is None]
    assert len(missing) == len(rows) - 6  # bn-gap, the greedy CER and WER, the LSTM's three similarities
    assert by["2023-24 CNN, max-pool, lr 0.01, 15 epochs", "final test accuracy"].ours is None
    assert by["phoneme-to-spelling LSTM, attention, nucleus p 0.8", "WER@3"].ours is None


def test_the_table_says_which_figures_have_runs_and_on_what_data():
    rows = [Headline("net, lr 0.01", "test accuracy", 0.91, "Fashion-MNIST", (("seed 001", 0.82),), "OCTMNIST"),
            Headline("net, lr 0.1", "test accuracy", None, "Fashion-MNIST", (("seed 001", 0.8), ("seed 2", 0.7)),
                     "OCTMNIST")]  # fmt: skip
    sec = section(rows)
    text = to_markdown("t", [sec])
    assert "1 of 2 figures have their run here" in text
    assert "0.9100" in text and "not run" in text and "0.8000 (seed 001), 0.7000 (seed 2)" in text
    assert "Fashion-MNIST / OCTMNIST" in text
    assert section([]) is None
    lines = format_rows(rows).splitlines()
    assert len(lines) == 2 and "dllab  0.9100" in lines[0] and "not run" in lines[1]


def test_the_report_gives_each_finished_experiments_estimate_against_its_time(tmp_path):
    plan = tmp_path / ".plan"
    plan.mkdir()
    meta = {"cores": 2, "estimate_seconds": 400.0, "scale": 1.0, "tasks": ["vision/a", "p2g/b", "asr/c"]}
    (plan / "meta.json").write_text(json.dumps(meta))
    (plan / "plan.json").write_text(json.dumps({"tasks": {
        "vision/a": {"estimate": 100.0, "status": "done", "seconds": 150.0},
        "p2g/b": {"estimate": 300.0, "status": "pending"},
    }}))  # fmt: skip
    notes = build._plan_notes(tmp_path)
    assert "ran 1 of 3 experiments on 2 cores" in notes[0].text  # the plan's count, not plan.json's
    (table,) = [n for n in notes if isinstance(n, Table)]
    assert table.rows == [["vision/a", "1m40s", "2m30s", "1.50"]]
