"""Two-process gloo runs under torchrun on CPU, against one process with the same seed and global batch."""

import os
import subprocess
import sys

import pytest

from dllab.engine.checkpoint import load_checkpoint
from dllab.engine.rundir import RunDir
from dllab.engine.sweep import plan_workers

pytestmark = pytest.mark.slow


def _train(root, runs, name, *extra, nproc=1, env=None):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "dllab", "vision", "train", "--name", name,
           "--data.path", str(root), "--data.val_size=100", "--data.test_limit=100", "--lr", "0.1",
           "--model.dropout=0", "--threads", "1", "--runs", str(runs), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def test_two_processes_match_one_process(tiny_fashion_root, tmp_path):
    one = _train(tiny_fashion_root, tmp_path, "one", "--epochs", "2")
    two = _train(tiny_fashion_root, tmp_path, "two", "--epochs", "2", nproc=2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a = RunDir(tmp_path / "vision" / "one").read_metrics()
    b = RunDir(tmp_path / "vision" / "two").read_metrics()
    assert len(a) == len(b) == 2
    # Same seed, same global batch of 8 (4 per rank): the same optimisation up to float summation order.
    # Stated tolerance: first-epoch loss within 1e-4 relative, later losses within 5%, accuracy within 0.02.
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], rel=1e-4)
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=0.05)
        assert abs(rb["val_acc"] - ra["val_acc"]) <= 0.02
    assert two.stdout.count("test acc") == 1  # rank 0 alone reports
    assert RunDir(tmp_path / "vision" / "two").read_config_record()["world_size"] == 2


def test_a_failing_rank_stops_the_job_and_resume_finishes_it(tiny_fashion_root, tmp_path):
    failed = _train(tiny_fashion_root, tmp_path, "f", "--epochs", "3", nproc=2,
                    env={"DLLAB_INJECT_FAILURE": "1:2:3"})
    assert failed.returncode != 0
    assert "dllab: rank 1 failed: RuntimeError: injected failure on rank 1" in failed.stderr
    run = RunDir(tmp_path / "vision" / "f")
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 1  # the last checkpoint is whole and loadable
    resumed = _train(tiny_fashion_root, tmp_path, "f", "--epochs", "3", "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    assert run.is_complete()


def _p2g(data, runs, name, nproc):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "dllab", "p2g", "train", "--attn",
           "--data-dir", str(data), "--runs", str(runs), "--name", name, "--train.epochs", "2",
           "--model.hidden", "16", "--train.batch_size", "16", "--model.dropout=0", "--train.threads=1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_p2g_two_processes_match_one_process(tmp_path):
    import random

    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 96), ("valid", 24)):
        words = ["".join(rng.choices("abcdef", k=rng.randint(2, 5))) for _ in range(n)]
        (data / f"{split}.tsv").write_text("".join(" ".join(w) + "\t" + w + "\n" for w in words))
    one, two = _p2g(data, tmp_path, "one", 1), _p2g(data, tmp_path, "two", 2)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a = RunDir(tmp_path / "p2g" / "one").read_metrics()
    b = RunDir(tmp_path / "p2g" / "two").read_metrics()
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], rel=1e-4)
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=0.05)
        assert rb["val_cer"] == pytest.approx(ra["val_cer"], rel=0.05)
    assert two.stdout.count("best validation CER") == 1


def test_sweep_threads_are_divided_among_processes():
    assert plan_workers(2, cores=2) == (2, 1)
