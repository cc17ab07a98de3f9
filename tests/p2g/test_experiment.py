"""A tiny end-to-end run: train and test on a couple of hundred generated pairs, through the CLI."""

import json
import random

import pytest

from dllab.cli import main
from dllab.engine.rundir import RunDir


@pytest.mark.slow
def test_training_learns_the_toy_spelling(trained):
    run, _ = trained
    history = run.read_metrics()
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert min(r["val_cer"] for r in history) < 0.5 * history[0]["val_cer"]
    assert run.best_checkpoint.exists()
    record = run.read_config_record()
    assert record["config"]["model"]["attn"] is True and record["data"]["test_is_valid"] is True


@pytest.mark.slow
def test_test_command_writes_each_strategy(trained, capsys):
    run, _ = trained
    assert main(["p2g", "test", str(run.path)]) == 0
    assert main(["p2g", "test", str(run.path), "--top-p", "0.8", "--k", "3"]) == 0
    assert main(["p2g", "test", str(run.path), "--beam", "5"]) == 0
    metrics = json.loads(run.test_metrics_path.read_text())
    assert {"greedy", "nucleus_p0.8_k3", "beam5"} <= set(metrics)
    best_cer = min(r["val_cer"] for r in run.read_metrics())
    assert metrics["greedy"]["cer"] == pytest.approx(best_cer)  # the best checkpoint, on the same split
    nucleus = metrics["nucleus_p0.8_k3"]
    assert nucleus["wer@3"] <= nucleus["wer"] and metrics["greedy"]["split"] == "valid"
    rows = (run.path / "predictions-nucleus_p0.8_k3.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "phonemes\tgold\toutput1\toutput2\toutput3" and len(rows) == 41
    assert "CER" in capsys.readouterr().out
    # An ensemble of a model with itself decodes exactly as the model alone.
    assert main(["p2g", "test", str(run.path), "--ensemble", str(run.path)]) == 0
    metrics = json.loads(run.test_metrics_path.read_text())
    assert metrics["ensemble2_greedy"]["cer"] == pytest.approx(metrics["greedy"]["cer"])


def test_bad_input_exits_2_with_file_and_line(tmp_path, capsys):
    (tmp_path / "train.tsv").write_text("æ b\tab\nno tab here\n", encoding="utf-8")
    (tmp_path / "valid.tsv").write_text("æ\ta\n", encoding="utf-8")
    assert main(["p2g", "train", "--data-dir", str(tmp_path), "--runs", str(tmp_path / "runs")]) == 2
    assert "train.tsv:2:" in capsys.readouterr().err


@pytest.mark.slow
def test_spell_command_prints_one_spelling_per_word(trained, toy, capsys):
    run, _ = trained
    assert main(["p2g", "spell", str(run.path), "æ b", "t͡ʃ iː θ", "--beam", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["æ b", "t͡ʃ iː θ"]
    assert all(set(line.split("\t")[1]) <= set(toy.symbol) for line in lines)


@pytest.mark.slow
def test_bad_test_arguments_exit_2(trained, capsys):
    run, _ = trained
    assert main(["p2g", "test", str(run.path), "--top-p", "1.5"]) == 2
    assert main(["p2g", "test", str(run.path), "--top-p", "0.8", "--beam", "3"]) == 2
    assert main(["p2g", "test", str(run.path), "--k", "3"]) == 2
    assert "--k > 1" in capsys.readouterr().err


@pytest.mark.slow
def test_report_section_reads_the_run(trained, tmp_path):
    from dllab.p2g.report import build_section
    from dllab.report.document import Figure, ReportContext, Table

    run, _ = trained
    for argv in (["--top-p", "0.8", "--k", "3"], []):  # the examples table needs both prediction files
        assert main(["p2g", "test", str(run.path), *argv]) == 0
    section = build_section(ReportContext(run.path.parents[1], tmp_path / "report"))
    figures = [b for b in section.blocks if isinstance(b, Figure)]
    assert figures and (tmp_path / "report" / figures[0].path).exists()
    tables = [b for b in section.blocks if isinstance(b, Table)]
    results = next(t for t in tables if "WER@3" in t.headers)
    decodings = {row[2] for row in results.rows if row[0] == "tiny"}
    assert {"greedy", "nucleus (p=0.8)"} <= decodings
    examples = next(t for t in tables if "gold" in t.headers)
    assert len(examples.rows) == 10 and all(" " in row[0] for row in examples.rows)


def test_report_section_without_runs_names_the_command(tmp_path):
    from dllab.p2g.report import build_section
    from dllab.report.document import ReportContext

    section = build_section(ReportContext(tmp_path / "runs", tmp_path / "report"))
    assert "dllab p2g train" in section.blocks[0].text


def test_skip_bad_lines_trains_and_records_the_count(tmp_path, toy, caplog):
    rng = random.Random(1)
    toy.write_split(tmp_path / "train.tsv", 30, rng)
    with open(tmp_path / "train.tsv", "a", encoding="utf-8") as fh:
        fh.write("no tab here\n")
    toy.write_split(tmp_path / "valid.tsv", 5, rng)
    (tmp_path / "valid.tsv").write_text((tmp_path / "valid.tsv").read_text() + "ʒ ʒ\tzz\n", encoding="utf-8")
    argv = ["p2g", "train", "--data-dir", str(tmp_path), "--runs", str(tmp_path / "runs"), "--skip-bad-lines",
            "--train.epochs", "1", "--model.hidden", "8"]  # fmt: skip
    assert main(argv) == 0
    info = RunDir(tmp_path / "runs" / "p2g" / "course-noattn").read_config_record()["data"]
    assert info["skipped_bad_lines"] == 1
    assert info["unknown_symbols"]["valid"] == {"phonemes": 2, "letters": 2}  # ʒ and z never seen in train


@pytest.mark.parametrize(
    "option, value",
    [("--model.layers", "0"), ("--model.hidden", "7"), ("--label_smoothing", "1.5"), ("--model.dropout", "-0.1")],
)
def test_bad_model_options_name_the_option(tmp_path, capsys, option, value):
    argv = ["p2g", "train", "--data-dir", str(tmp_path / "nowhere"), "--runs", str(tmp_path / "runs"), option, value]
    assert main(argv) != 0
    assert option in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_right_to_left_run_spells_backwards_and_reports_forwards(trained, right_to_left, capsys):
    _, data = trained
    assert main(["p2g", "test", str(right_to_left.path), "--beam", "3"]) == 0
    rows = (right_to_left.path / "predictions-beam3.tsv").read_text(encoding="utf-8").splitlines()[1:]
    gold = [line.split("\t")[1] for line in (data / "valid.tsv").read_text(encoding="utf-8").splitlines()]
    assert [r.split("\t")[1] for r in rows] == gold  # written left to right
    # written forwards, the outputs are close to the gold (reversed, most would not be)
    from dllab.seq2seq.metrics import character_error_rate

    outputs = [r.split("\t")[2] for r in rows]
    assert character_error_rate(outputs, gold) < 0.5 < character_error_rate([o[::-1] for o in outputs], gold)
    assert main(["p2g", "spell", str(right_to_left.path), "æ b iː"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split("\t")[1].startswith("ab")  # forwards


@pytest.mark.slow
def test_rescoring_with_a_right_to_left_run(trained, right_to_left, capsys):
    run, _ = trained
    assert main(["p2g", "test", str(run.path), "--beam", "3", "--rescore", str(right_to_left.path)]) == 0
    metrics = json.loads(run.test_metrics_path.read_text())["beam3_rescored1"]
    assert metrics["rescored_by"] == [str(right_to_left.path)] and 0 <= metrics["cer"] < 0.5
    assert main(["p2g", "test", str(run.path), "--rescore", str(right_to_left.path)]) == 2
    assert "needs --beam" in capsys.readouterr().err
    assert main(["p2g", "test", str(run.path), "--beam", "3", "--rescore", str(run.path)]) == 2
    assert "right-to-left runs" in capsys.readouterr().err


@pytest.mark.slow
def test_rescoring_pools_runs_of_another_architecture(trained, right_to_left, toy, tmp_path, capsys, monkeypatch):
    """A BiLSTM run's beam reranked with a transducer run on the same data (named by a relative path) and a
    right-to-left BiLSTM: three groups; a run on other data, or one spelling like the first, is refused by name."""
    run, data = trained
    runs = run.path.parent.parent
    common = ["--data-dir", str(data), "--runs", str(runs), "--train.epochs", "6", "--model.hidden", "32",
              "--train.batch_size", "16", "--optim.lr", "0.01"]  # fmt: skip
    with monkeypatch.context() as m:
        m.chdir(data.parent)
        assert main(["p2g", "train", "--arch", "transducer", "--name", "tiny-tr", *common[2:], "--data-dir",
                     data.name]) == 0  # fmt: skip
    transducer = RunDir(runs / "p2g" / "tiny-tr")
    argv = ["p2g", "test", str(run.path), "--beam", "3", "--rescore", str(right_to_left.path), str(transducer.path)]
    assert main(argv) == 0
    metrics = json.loads(run.test_metrics_path.read_text())["beam3_rescored2"]
    assert metrics["rescored_by"] == [str(right_to_left.path), str(transducer.path)] and 0 <= metrics["cer"] < 0.5
    other = tmp_path / "other"
    other.mkdir()
    rng = random.Random(1)
    for name, n in (("train.tsv", 60), ("valid.tsv", 10)):
        toy.write_split(other / name, n, rng)
    (other / "train.tsv").write_text((other / "train.tsv").read_text() + "zz\tzzz\n")  # a symbol the toy lacks
    assert main(["p2g", "train", "--arch", "transducer", "--name", "other-tr", *common[2:], "--data-dir",
                 str(other), "--train.epochs", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main([*argv[:-1], str(runs / "p2g" / "other-tr")]) == 2
    assert "other-tr: it was trained on other data" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["p2g", "test", str(run.path), "--beam", "3", "--rescore", str(transducer.path),
                 str(runs / "p2g" / "tiny")]) == 2  # fmt: skip
    assert "same --arch, same direction" in capsys.readouterr().err


def test_report_labels_name_the_decoding_ensemble_and_reranking():
    from dllab.p2g.report import _label

    assert _label("greedy") == "greedy"
    assert _label("nucleus_p0.8_k3") == "nucleus (p=0.8)"
    assert _label("ensemble2_beam5") == "ensemble of 2, beam search (5)"
    assert _label("beam5_rescored1") == ("beam search (5), reranked with 1 more model (right to left or another "
                                         "architecture)")
    assert _label("ensemble3_beam5_rescored3") == ("ensemble of 3, beam search (5), reranked with 3 more models "
                                                   "(right to left or another architecture)")
