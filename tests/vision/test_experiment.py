import json
import subprocess
import sys
import time

import pytest

from browser import CHROMIUM, images_loaded
from dllab.cli import main
from dllab.engine.rundir import RunDir
from dllab.vision.experiment import read_sweep


def _args(root, runs, *extra):
    return ["--data.path", str(root), "--data.val_size=100", "--data.test_limit=100", "--epochs", "2",
            "--runs", str(runs), *extra]


def test_train_checkpoint_report_end_to_end(tiny_fashion_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["vision", "train", "--name", "tiny", "--lr", "0.1", *_args(tiny_fashion_root, runs)]) == 0
    run = RunDir(runs / "vision" / "tiny")
    metrics = run.read_metrics()
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert run.last_checkpoint.exists() and run.best_checkpoint.exists()
    assert (run.figures_dir / "curves.png").stat().st_size > 1000
    test = json.loads(run.test_metrics_path.read_text())
    assert test["final"]["test_acc"] > 0.5  # synthetic classes are easy: far above chance (0.1)
    assert json.loads(run.config_path.read_text())["config"]["optim"]["lr"] == 0.1
    # A second `train` of the same name refuses; --resume of a finished run is a no-op with the same result.
    assert main(["vision", "train", "--name", "tiny", "--lr", "0.1", *_args(tiny_fashion_root, runs)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    # --resume with more epochs continues a finished run from its last checkpoint and tests it again.
    before = run.test_metrics_path.stat().st_mtime_ns
    more = [*_args(tiny_fashion_root, runs), "--epochs", "3", "--resume"]
    assert main(["vision", "train", "--name", "tiny", "--lr", "0.1", *more]) == 0
    assert [m["epoch"] for m in run.read_metrics()] == [1, 2, 3]
    assert run.test_metrics_path.stat().st_mtime_ns > before
    assert json.loads(run.config_path.read_text())["config"]["train"]["epochs"] == 3
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "report"), "--only", "vision"]) == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert "Q2.3" in html and "224,892" in html and "755,718" in html
    if CHROMIUM:
        loaded, total = images_loaded(tmp_path / "report" / "index.html")
        assert loaded == total >= 1


def test_sweep_runs_in_parallel_and_writes_one_table(tiny_fashion_root, tmp_path):
    runs = tmp_path / "runs"
    code = main(["vision", "sweep", "--lrs", "0.1,0.01", "--name", "s", *_args(tiny_fashion_root, runs)])
    assert code == 0
    sweep = read_sweep(runs / "vision" / "s")
    assert [r["run"] for r in sweep["rows"]] == ["lr0.1", "lr0.01", "no-maxpool-lr0.01"]
    assert {r["variant"] for r in sweep["rows"]} == {"max-pool", "strided"}
    assert all(r["test_acc"] is not None and r["parameters"] > 0 for r in sweep["rows"])
    table = (runs / "vision" / "s" / "sweep.md").read_text()
    assert table.count("\n") == 2 + 3
    # Parallel runs give the same numbers as a run of the same config alone (same seed, CPU).
    alone = tmp_path / "alone"
    assert main(["vision", "train", "--name", "a", "--lr", "0.1", *_args(tiny_fashion_root, alone)]) == 0
    strip = lambda ms: [{k: v for k, v in m.items() if "seconds" not in k} for m in ms]  # noqa: E731
    assert strip(RunDir(alone / "vision" / "a").read_metrics()) == strip(
        RunDir(runs / "vision" / "s" / "lr0.1").read_metrics())


@pytest.mark.slow
def test_killed_training_resumes_from_the_cli(tiny_fashion_root, tmp_path):
    """Kill a real `dllab vision train` process after its first checkpoint, then --resume it."""
    runs = tmp_path / "runs"
    common = [*_args(tiny_fashion_root, runs)[:-4], "--epochs", "4", "--threads", "1", "--runs", str(runs)]
    assert main(["vision", "train", "--name", "ref", *common]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "dllab", "vision", "train", "--name", "k", *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDir(runs / "vision" / "k")
    deadline = time.time() + 120
    while time.time() < deadline and not run.last_checkpoint.exists():
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    if len(run.read_metrics()) == 4 and run.is_complete():
        pytest.skip("the run finished before it could be killed")
    # An epoch's metrics line is written just before its checkpoint: the kill may fall between the two, and
    # that epoch is then trained again. Those up to the last checkpoint must not be.
    from dllab.engine.checkpoint import load_checkpoint

    before = run.read_metrics()[: load_checkpoint(run.last_checkpoint)["epoch"]]
    assert main(["vision", "train", "--name", "k", *common, "--resume"]) == 0
    assert run.read_metrics()[: len(before)] == before
    strip = lambda ms: [{k: v for k, v in m.items() if "seconds" not in k} for m in ms]  # noqa: E731
    assert strip(run.read_metrics()) == strip(RunDir(runs / "vision" / "ref").read_metrics())
