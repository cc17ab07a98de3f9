"""The SIGMORPHON sweep on a tiny generated task folder: both directions, the ensemble's dev figures, the task's
two-column predictions (scored as the task's evaluation scores them), resuming, `p2g test --file`."""

import json
import random
import unicodedata

import pytest

from dllab.cli import main
from dllab.engine.rundir import RunDir

# A toy orthography: letters with and without combining marks, each read as one or two phones.
LETTERS = {"a": "a", "b": "b", "c": "t͡s", "e\u0301": "e ˈ", "o\u0303": "õ", "k": "k", "s": "s"}
TINY = ["--train.epochs", "3", "--model.hidden", "16", "--train.batch_size", "16", "--optim.lr", "0.02"]


def write_language(folder, language, n_train, n_dev, rng, extra_dev=""):
    folder.mkdir(parents=True, exist_ok=True)  # NFC, as the task's files are
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = []
        for _ in range(n):
            word = rng.choices(list(LETTERS), k=rng.randint(2, 5))
            lines.append(unicodedata.normalize("NFC", "".join(word)) + "\t" + " ".join(LETTERS[w] for w in word))
        if split == "dev" and extra_dev:
            lines.append(extra_dev)
        (folder / f"{language}_{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigmorphon")
    rng = random.Random(0)
    # a symbol never seen in train (ʒ, ж) on ady's last dev line: counted, decoded, not a crash
    write_language(root / "data" / "low", "ady", 160, 20, rng, extra_dev="жa\tʒ a")
    write_language(root / "data" / "low", "gre", 160, 20, rng)
    return root


def evaluate_py_wer(gold_path, prediction_path, column):
    """An independent re-implementation of the task's evaluation/evaluate.py: it pastes gold and hypothesis
    columns into `gold\\thypo` lines, splits both on whitespace and counts unequal lists: 100 * wrong / all."""
    gold = [line.split("\t")[column] for line in gold_path.read_text(encoding="utf-8").splitlines()]
    hypo = [line.split("\t")[column] for line in prediction_path.read_text(encoding="utf-8").splitlines()]
    assert len(gold) == len(hypo)
    incorrect = sum(g.split() != h.rstrip().split() for g, h in zip(gold, hypo, strict=True))
    return float(f"{100 * incorrect / len(gold):.2f}")


@pytest.mark.slow
def test_sweep_trains_scores_and_resumes_in_both_directions(task, capsys):
    runs, data = task / "runs" / "sigmorphon", task / "data"
    argv = ["p2g", "sweep", "ady,gre", "--direction", "both", "--runs", str(runs), "--data-dir", str(data),
            "--preset", "low", "--seeds", "1", "2", "--r2l-seeds", "1", "--beam", "3", *TINY]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "G2P low macro dev WER" in out and "P2G low macro dev WER" in out and "ady" in out
    for direction, column in (("g2p", 1), ("p2g", 0)):
        for language in ("ady", "gre"):
            folder = runs / direction / language
            results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
            assert results["decoding"] == "ensemble2_beam3_rescored1" and len(results["members"]) == 3
            assert list(results["steps"]) == [
                "one member, greedy", "2 members, greedy", "2 member(s), beam 3",
                "both directions' n best reranked (1 right-to-left member(s))"]  # fmt: skip
            assert results["subtask"] == "low" and results["baseline_dev_wer"] in (22, 5)
            gold = data / "low" / f"{language}_dev.tsv"
            # the task's two columns, the output in its side's column; the task's formula gives our WER
            assert evaluate_py_wer(gold, folder / "predictions-dev.tsv", column) == round(results["wer"], 2)
            rows = (folder / "predictions-dev.tsv").read_text(encoding="utf-8").splitlines()
            other = 1 - column
            assert [r.split("\t")[other] for r in rows] == [
                g.split("\t")[other] for g in gold.read_text(encoding="utf-8").splitlines()]
        unknown = json.loads((runs / direction / "ady" / "results.json").read_text())["unknown_symbols"]
        assert unknown == {"phonemes": 1, "letters": 1}
    # resumable: a second sweep trains nothing again
    before = {p: p.stat().st_mtime for p in runs.rglob("last.pt")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime for p in runs.rglob("last.pt")} == before
    # more epochs on finished members is another run, not a resume that restarts their decayed rate
    capsys.readouterr()
    assert main([*argv, "--train.epochs", "4"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert {p: p.stat().st_mtime for p in runs.rglob("last.pt")} == before
    sweep = json.loads((runs / "sweep-g2p-p2g-custom.json").read_text())
    assert sweep["members"]["g2p/ady"] == [str(runs / "g2p" / "ady" / name) for name in ("s1", "s2", "r2l-s1")]

    # the report's subsection: the per-language table beside the baseline, macro rows, the figure
    from dllab.p2g.report import sigmorphon_section
    from dllab.report.document import Figure, ReportContext, Table

    section = sigmorphon_section(ReportContext(task / "runs", task / "report"))
    tables = [b for b in section.blocks if isinstance(b, Table)]
    assert [row[0] for row in tables[0].rows] == ["ady", "gre"] and tables[0].rows[0][3] == "22.00"
    assert [row[:3] for row in tables[1].rows] == [["G2P", "low", "2/10"], ["P2G", "low", "2/10"]]
    figure = next(b for b in section.blocks if isinstance(b, Figure))
    assert (task / "report" / figure.path).exists()


@pytest.mark.slow
def test_test_file_scores_any_task_file_and_writes_the_task_columns(task, capsys):
    runs, data = task / "runs" / "file", task / "data"
    assert main(["p2g", "sweep", "gre", "--runs", str(runs), "--data-dir", str(data), "--preset", "low",
                 "--seeds", "1", *TINY]) == 0  # fmt: skip
    run = runs / "g2p" / "gre" / "s1"
    test_file = task / "gre_test.tsv"
    test_file.write_text("abk\ta b k\ncé\tt͡s e ˈ\nжa\tʒ a\n", encoding="utf-8")
    assert main(["p2g", "test", str(run), "--file", str(test_file), "--beam", "3"]) == 0
    assert "on file:" in capsys.readouterr().out
    metrics = RunDir(run).read_test_metrics()["beam3-gre_test"]
    assert metrics["words"] == 3 and metrics["unknown_source_symbols"] == 1
    rows = (run / "predictions-beam3-gre_test.tsv").read_text(encoding="utf-8").splitlines()
    assert [r.split("\t")[0] for r in rows] == ["abk", "cé", "жa"]
    assert evaluate_py_wer(test_file, run / "predictions-beam3-gre_test.tsv", 1) == round(100 * metrics["wer"], 2)
    empty = task / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    assert main(["p2g", "test", str(run), "--file", str(empty)]) == 2
    assert "empty.tsv: is empty" in capsys.readouterr().err


def test_train_on_a_language_needs_its_files(tmp_path, capsys):
    argv = ["p2g", "train", "--language", "ady", "--data.sigmorphon_dir", str(tmp_path), "--runs", str(tmp_path)]
    assert main(argv) == 2
    assert "ady_train.tsv: no such file" in capsys.readouterr().err
    assert main(["p2g", "sweep", "xx", "--runs", str(tmp_path)]) == 2
    assert "unknown language or subtask xx" in capsys.readouterr().err


def test_report_subsection_without_sweeps_names_the_command(tmp_path):
    from dllab.p2g.report import sigmorphon_section
    from dllab.report.document import ReportContext

    section = sigmorphon_section(ReportContext(tmp_path / "runs", tmp_path / "report"))
    assert "dllab p2g sweep all" in section.blocks[0].text


@pytest.mark.slow
def test_bench_speed_compares_each_preset_with_the_homework_model(task):
    from dllab.p2g.sigmorphon_bench import training_words_per_second

    rows = training_words_per_second("ady", "g2p", str(task / "data"), words=48, rounds=1)
    assert rows[0][0].startswith("homework model") and [r[0].split()[1] for r in rows[1:]] == ["low", "medium", "high"]
    assert all(speed > 0 for _, speed in rows)


@pytest.mark.slow
def test_sweep_scores_the_test_files_with_the_dev_system(task, capsys):
    """--test-dir: each language's test file decoded like dev (members, beam, right-to-left reranking), scored
    as the task scores it, beside the baseline's test WER; a missing or malformed file stops the sweep first."""
    runs, data, tests = task / "held" / "sigmorphon", task / "data", task / "tests"
    write_language(tests / "low", "gre", 0, 12, random.Random(5))
    (tests / "low" / "gre_dev.tsv").rename(tests / "low" / "gre_test.tsv")
    (tests / "low" / "gre_train.tsv").unlink()
    argv = ["p2g", "sweep", "gre", "--runs", str(runs), "--data-dir", str(data), "--preset", "low", "--seeds", "1",
            "--r2l-seeds", "1", "--beam", "3", *TINY]  # fmt: skip
    assert main([*argv, "--test-dir", str(task / "nowhere")]) == 2
    assert "no test file for 1 language(s): gre" in capsys.readouterr().err and not runs.exists()
    assert main([*argv, "--test-dir", str(tests)]) == 0
    out = capsys.readouterr().out
    assert "G2P low macro test WER" in out and "vs the baseline's 25.10" in out and "(1 of 10 languages)" in out
    folder = runs / "g2p" / "gre"
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    test = results["test"]
    assert test["words"] == 12 and test["baseline_test_wer"] == 21
    assert evaluate_py_wer(tests / "low" / "gre_test.tsv", folder / "predictions-test.tsv", 1) == round(test["wer"], 2)
    # the same decoding as dev's last step: scoring the dev file as a test file gives the dev figure
    (tests / "flat").mkdir()
    (tests / "flat" / "gre_test.tsv").write_bytes((data / "low" / "gre_dev.tsv").read_bytes())
    assert main([*argv, "--test-dir", str(tests / "flat")]) == 0
    again = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert again["test"]["wer"] == pytest.approx(again["wer"]) and again["test"]["cer"] == pytest.approx(again["cer"])
    # the report's subsection shows them beside the baseline's test WER
    from dllab.p2g.report import sigmorphon_section
    from dllab.report.document import ReportContext, Table

    tables = [b for b in sigmorphon_section(ReportContext(task / "held", task / "report-held")).blocks
              if isinstance(b, Table)]  # fmt: skip
    assert tables[0].headers[-3:] == ["baseline G2P test WER", "G2P test WER", "P2G test WER"]
    assert tables[0].rows[0][-3:] == ["21.00", f"{again['test']['wer']:.2f}", "—"]
    assert tables[1].rows[1][:4] == ["G2P (test)", "low", "1/10", "25.10"]
    # a dev-only rerun keeps the test figures; a malformed test file is named with its line
    assert main(argv) == 0
    assert json.loads((folder / "results.json").read_text(encoding="utf-8"))["test"] == again["test"]
    (tests / "flat" / "gre_test.tsv").write_text("abk\ta b k\nno tab here\n", encoding="utf-8")
    capsys.readouterr()
    assert main([*argv, "--test-dir", str(tests / "flat")]) == 2
    assert "gre_test.tsv:2" in capsys.readouterr().err
    # the task's covered test file (spellings only, <lang>_test.txt): decoded into the task's two columns
    covered = tests / "covered"
    covered.mkdir()
    (covered / "gre_test.txt").write_text("abk\ncé\nkas\n", encoding="utf-8")
    assert main([*argv, "--test-dir", str(covered)]) == 0
    assert "G2P covered test files (spellings only, not scored): gre" in capsys.readouterr().out
    rows = (folder / "predictions-test-covered.tsv").read_text(encoding="utf-8").splitlines()
    assert [r.split("\t")[0] for r in rows] == ["abk", "cé", "kas"] and all(r.split("\t")[1] for r in rows)
    final = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert final["test_predictions"]["words"] == 3 and final["test"] == again["test"]  # the scored one is kept
    assert len((folder / "predictions-test.tsv").read_text(encoding="utf-8").splitlines()) == 20
    assert main([*argv, "--direction", "both", "--test-dir", str(covered)]) == 2
    assert "holds spellings only, so P2G cannot be decoded" in capsys.readouterr().err
    assert main(["p2g", "test", str(folder / "s1"), "--file", str(covered / "gre_test.txt")]) == 0
    assert "no gold column to score" in capsys.readouterr().out
    # a .tsv without tabs is a malformed file, not a covered one
    (tests / "spaces").mkdir()
    (tests / "spaces" / "gre_test.tsv").write_text("abk a b k\n", encoding="utf-8")
    assert main([*argv, "--test-dir", str(tests / "spaces")]) == 2
    assert "gre_test.tsv:1: expected" in capsys.readouterr().err
    # another decoding (beam 2) is another system: the beam-3 test figures and outputs are dropped
    assert main([*argv, "--beam", "2"]) == 0
    changed = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert "test" not in changed and "test_predictions" not in changed
    assert not (folder / "predictions-test.tsv").exists() and not (folder / "predictions-test-covered.tsv").exists()


@pytest.mark.slow
def test_the_low_preset_pools_its_bilstm_companions_into_the_reranking(task):
    """The low preset's plan, as the sweep runs it: transducer members in both directions and BiLSTM
    companions in both, the companions' beams pooled and their scores added, as a last measured step."""
    from dllab.p2g.presets import ENSEMBLES

    runs, data = task / "runs" / "companions", task / "data"
    assert main(["p2g", "sweep", "gre", "--runs", str(runs), "--data-dir", str(data), *TINY]) == 0
    plan = ENSEMBLES["low"]
    folder = runs / "g2p" / "gre"
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    others = len(plan["companions"]["seeds"]) + len(plan["companions"]["r2l_seeds"])
    assert results["decoding"] == (f"ensemble{len(plan['seeds'])}_beam{plan['beam']}_"
                                   f"rescored{len(plan['r2l_seeds']) + others}")  # fmt: skip
    assert list(results["steps"])[-1] == f"pooled and reranked with {others} lstm member(s) too"
    assert len(results["members"]) == len(plan["seeds"]) + len(plan["r2l_seeds"]) + others
    for run in ("lstm-s1", "lstm-r2l-s1"):
        config = RunDir(folder / run).read_config_record()["config"]
        assert config["arch"] == "lstm" and config["train"]["epochs"] == 3  # the user's --train.epochs kept
    assert evaluate_py_wer(data / "low" / "gre_dev.tsv", folder / "predictions-dev.tsv", 1) == round(results["wer"], 2)
