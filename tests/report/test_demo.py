"""The demo end to end on tiny data: every capability's experiments planned (calibrated), run side by side,
the report built, and each headline figure read back. The thresholds belong to `dllab bench demo`, not here:
tiny budgets cannot reach them, but every figure must exist and be a number in its range."""

import random
import shutil
from multiprocessing import get_context

import pytest

from dllab.engine.plan import run_plan, simulate
from dllab.report.build import build_report, plan_experiments
from dllab.report.demo import THRESHOLDS, demo_figures, format_rows

pytestmark = pytest.mark.slow


def test_the_demo_plan_runs_and_its_headlines_come_back(tmp_path, monkeypatch, tiny_fashion_root):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from asr.conftest import SENTENCES  # the speech tests' sentences, spoken into a tiny corpus
    from dllab.data.espeak_corpus import CorpusConfig, build_corpus
    from p2g.conftest import write_split  # the speller tests' toy spelling system

    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path / "cache"))
    tiny_corpus = build_corpus(CorpusConfig(size=len(SENTENCES), rate_min=220, rate_max=240),
                               root=tmp_path / "corpus", sentences=SENTENCES, show_progress=False)
    words = tmp_path / "words"
    words.mkdir()
    rng = random.Random(0)
    write_split(words / "train.tsv", 120, rng)
    write_split(words / "valid.tsv", 30, rng)
    overrides = {
        "vision": ("--data.path", str(tiny_fashion_root), "--data.val_size=100", "--data.train_limit=200",
                   "--data.val_limit=50", "--train.epochs=1"),
        "p2g": ("--data.source=course", f"--data.dir={words}", "--train.epochs=1", "--model.hidden=16"),
        "asr": (f"--data.corpus={tiny_corpus}", "--train.epochs=1", "--model.hidden=32", "--model.ff=64"),
    }
    runs = tmp_path / "runs"
    only = ["vision", "p2g", "asr"]
    tasks = plan_experiments(runs, quick=True, only=only, overrides=overrides)
    names = {t.name for t in tasks}
    assert {"vision/hw2023/lr0.01", "p2g/quick-attn", "asr/corpus", "asr/transformer"} <= names
    assert all(t.seconds > 0 for t in tasks)
    slots = {s.task: s for s in simulate(tasks, cores=2)}
    assert "asr/lstm" not in names  # the demo trains the headline decoder only
    assert slots["asr/transformer"].start >= slots["asr/corpus"].end

    results = run_plan(tasks, runs / ".plan-quick", cores=2, show_progress=False, context=get_context("spawn"))
    assert set(results) == names
    html = build_report(runs, tmp_path / "report", only=only)
    assert html.exists() and "hw2023" in html.read_text()

    rows = {r["key"]: r for r in demo_figures(runs, only)}
    assert set(rows) == set(THRESHOLDS)
    assert 0 <= rows["vision.test_acc"]["value"] <= 1
    assert rows["p2g.greedy_cer"]["value"] >= 0 and rows["asr.greedy_cer"]["value"] >= 0
    assert rows["asr.greedy_ctc_cer"]["value"] >= 0  # the quick model has a CTC head: decoded with it too
    assert 0 <= rows["asr.degenerate"]["value"] <= 1 and 0 <= rows["asr.degenerate_attention_only"]["value"] <= 1
    assert all(r["met"] in (True, False) for r in rows.values() if r["sense"])
    assert rows["asr.degenerate_attention_only"]["met"] is None  # information, no threshold
    assert "target" in format_rows(list(rows.values()))
