"""`dllab attention ...`, `dllab bench attention` and the report section, on tiny settings."""

import json
import os

import pytest

from dllab.attention import report
from dllab.attention.bench import BenchSetup, crossover, from_json, run_bench, to_json
from dllab.attention.experiment import tune_results
from dllab.attention.theory import approximation_errors
from dllab.cli import main
from dllab.io import atomic_write_json
from dllab.report.document import Figure, Paragraph, ReportContext, Table

TINY = BenchSetup(
    lengths=(32, 64, 128), repeats=1, time_budget_s=600.0, memory_budget_gib=0.5, fit_from=32, matmul_size=256, rounds=1
)


@pytest.fixture(scope="module")
def tiny_bench():
    return run_bench(TINY, log=lambda *_: None)


def test_check_command_prints_and_writes_the_tables(tmp_path, capsys):
    out = tmp_path / "theory.json"
    assert main(["attention", "check", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert " 16  3       153    153          273" in text and "seed 003" in text
    data = json.loads(out.read_text())
    row = next(r for r in data["feature_dims"] if (r["D"], r["K"]) == (16, 3))
    assert row["M"] == row["gram_rank"] == 153 and row["seed000"] == 33


def test_bench_results_and_targets(tiny_bench):
    methods = {(r.method, r.mode) for r in tiny_bench.results}
    assert len(methods) == 8 and all(r.seconds and r.seconds > 0 for r in tiny_bench.results)
    samples = tiny_bench.machine["matmul_gflops_samples"]  # at the start, after each round, at the end
    assert len(samples) == TINY.rounds + 2 and tiny_bench.machine["matmul_gflops"] == max(samples) > 0
    taylor = next(r for r in tiny_bench.results if r.method == "taylor" and r.mode == "forward")
    assert taylor.flops == pytest.approx(4 * (2 * 32 * (153 + 16) + 4 * 32 * 153 * 17 + 32 * 16))
    assert {t["status"] for t in tiny_bench.targets} <= {"met", "missed", "not measured"}
    again = from_json(json.loads(json.dumps(to_json(tiny_bench))))
    assert again.results == tiny_bench.results and again.setup == tiny_bench.setup
    assert crossover(tiny_bench, "forward") in (None, 32, 64, 128)


def test_bench_gives_the_target_length_more_passes(monkeypatch):
    import dllab.attention.bench as bench

    monkeypatch.setattr(bench, "TARGET_L", 64)
    setup = BenchSetup(
        lengths=(32, 64), repeats=1, time_budget_s=600.0, memory_budget_gib=0.5, fit_from=32, matmul_size=128,
        rounds=1, target_rounds=2,
    )  # fmt: skip
    result = run_bench(setup, log=lambda *_: None)
    counts = {(r.method, r.mode, r.length): r.samples for r in result.results}
    assert set(counts.values()) == {3, 5}  # warm-up + 1 repeat + 1 round, and 2 more passes at L = 64
    assert all(n == (5 if length == 64 else 3) for (_, _, length), n in counts.items())
    assert len(result.machine["matmul_gflops_samples"]) == 1 + 1 + 2 + 1  # start, each pass, end


def test_bench_skips_what_exceeds_the_budget():
    setup = BenchSetup(
        lengths=(64, 512), repeats=1, time_budget_s=600.0, memory_budget_gib=0.002, fit_from=64, matmul_size=256
    )
    naive = [r for r in run_bench(setup, log=lambda *_: None).results if r.method == "naive softmax"]
    assert [bool(r.skipped) for r in naive] == [False, True, False, True]
    assert "GiB" in naive[1].skipped


def test_bench_command_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "attention", "--lengths", "32,64", "--repeats", "1", "--rounds", "0", "--matmul-size", "256"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "targets:" in text and "fitted slopes" in text and "GFLOP/s" in text
    assert "CPU during the run: other processes used" in text or not os.path.exists("/proc/stat")
    assert json.loads(out.read_text())["setup"]["lengths"] == [32, 64]
    assert out.with_suffix(".png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, key",
    [
        (["--lengths", "a,b"], "--lengths"),
        (["--repeats", "0"], "--repeats"),
        (["--rounds", "-1"], "--rounds"),
        (["--target-rounds", "-1"], "--target-rounds"),
        (["--chunk-size", "0"], "--chunk-size"),
    ],
)
def test_bench_bad_arguments_exit_2(args, key, capsys):
    assert main(["bench", "attention", *args]) == 2
    assert key in capsys.readouterr().err


def test_report_without_runs_names_the_commands(tmp_path):
    section = report.build_section(ReportContext(tmp_path / "runs", tmp_path / "report"))
    text = " ".join(b.text for b in section.blocks if isinstance(b, Paragraph))
    assert "dllab bench attention" in text and not section.subsections


def test_report_with_runs_has_tables_and_figures(tmp_path, tiny_bench, capsys):
    root = tmp_path / "runs" / "attention"
    assert main(["attention", "check", "--quick", "--out", str(root / "theory.json")]) == 0
    rows = approximation_errors(orders=(1, 2, 3), spreads=(0.5, 1.0), length=16, heads=1, dim=4)
    atomic_write_json(root / "error.json", {"rows": rows, "length": 16, "heads": 1, "dim": 4, "seconds": 0.0})
    atomic_write_json(root / "bench-quick.json", to_json(tiny_bench))
    atomic_write_json(root / "tune.json", tune_results(64, (8, 16), (1 << 12,), repeats=1, log=lambda *_: None))
    ctx = ReportContext(tmp_path / "runs", tmp_path / "report")
    section = report.build_section(ctx)
    assert len(section.subsections) == 4
    blocks = [b for s in section.subsections for b in s.blocks]
    figures = [b for b in blocks if isinstance(b, Figure)]
    assert {f.path for f in figures} == {
        "figures/attention_error_vs_k.png",
        "figures/attention_bench-quick.png",
        "figures/attention_chunk_size.png",
    }
    assert all((ctx.out_dir / f.path).stat().st_size > 1000 for f in figures)
    assert sum(isinstance(b, Table) for b in blocks) >= 8


def test_tune_command(tmp_path, capsys):
    out = tmp_path / "tune.json"
    assert main(["attention", "tune", "--length", "64", "--chunks", "8,16", "--repeats", "1", "--out", str(out)]) == 0
    assert "fastest chunk size" in capsys.readouterr().out
    assert {r["chunk"] for r in json.loads(out.read_text())["chunks"]} == {8, 16}
