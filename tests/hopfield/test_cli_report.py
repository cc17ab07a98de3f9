"""`dllab hopfield ...` commands and the report section, on tiny generated runs."""

import json

import pytest
import torch

from dllab.cli import main
from dllab.hopfield import report
from dllab.hopfield.experiment import CapacityConfig, RetrievalConfig, run_capacity, run_retrieval
from dllab.hopfield.theory import save_checks, theory_checks
from dllab.report.document import Figure, Paragraph, ReportContext, Table


def test_check_command_writes_the_table(tmp_path, capsys):
    out = tmp_path / "theory.json"
    assert main(["hopfield", "check", "--draws", "3", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["draws"] == 3 and len(data["checks"]) == 10 and all(c["passed"] for c in data["checks"])
    assert "Hessian of -E2" in capsys.readouterr().out


def test_bad_arguments_exit_2_with_the_key(capsys):
    assert main(["hopfield", "retrieval", "--betas", "-1"]) == 2
    assert "--betas" in capsys.readouterr().err
    assert main(["hopfield", "capacity", "--no_such_key", "3"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main(["hopfield", "check", "--draws", "0"]) == 2


def test_help_has_a_runnable_example(capsys):
    with pytest.raises(SystemExit):
        main(["hopfield", "retrieval", "--help"])
    assert "dllab hopfield retrieval --quick" in capsys.readouterr().out


def test_report_without_runs_names_the_commands(tmp_path):
    section = report.build_section(ReportContext(tmp_path / "runs", tmp_path / "report"))
    text = " ".join(b.text for b in section.blocks if isinstance(b, Paragraph))
    assert "dllab hopfield retrieval" in text and not section.subsections


def test_report_with_runs_has_tables_and_figures(tmp_path):
    root = tmp_path / "runs" / "hopfield"
    images = torch.rand(30, 28, 28)
    save_checks(theory_checks(2, 0), root / "theory.json", 2, 0)
    run_retrieval(RetrievalConfig(n_patterns=(10, 30), betas=(0.01, 1.0), queries=5, grid_patterns=10,
                                  grid_betas=(0.01, 1.0), grid_queries=2), root / "retrieval-quick", images)
    run_capacity(CapacityConfig(sides=(4,), random_dims=(8,), betas=(8.0,), queries=10, max_random_patterns=64),
                 root / "capacity", images)  # fmt: skip
    ctx = ReportContext(tmp_path / "runs", tmp_path / "report")
    section = report.build_section(ctx)
    titles = [s.title for s in section.subsections]
    assert titles == ["Theory checks", "Retrieval of Fashion-MNIST images from masked queries (retrieval-quick)",
                      "Storage capacity"]
    blocks = [b for s in section.subsections for b in s.blocks]
    figures = [b for b in blocks if isinstance(b, Figure)]
    names = ("retrieval-quick_accuracy", "retrieval-quick_grids", "retrieval-quick_energy", "capacity")
    assert {f.path for f in figures} == {f"figures/hopfield_{n}.png" for n in names}
    assert all((ctx.out_dir / f.path).stat().st_size > 1000 for f in figures)
    tables = [b for b in blocks if isinstance(b, Table)]
    assert len(tables) == 3 and len(tables[0].rows) == 10
    assert tables[1].headers == ["N \\ beta", "0.01", "1"]


def test_bench_runs_and_states_the_target(capsys):
    # A smoke run on tiny random patterns: the numbers are not asserted (speed lives in the bench command).
    args = ["bench", "hopfield", "--random", "--patterns", "300", "--batch-sizes", "4,32", "--gemm-size", "64",
            "--repeats", "1", "--steps", "2"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "measured sgemm rate" in out and "target: retrieve within 3x of the matmul bound" in out
    assert main(["bench", "hopfield", "--random", "--batch-sizes", "0"]) == 2
