"""`dllab asr train` under torchrun: two gloo processes against one, on the tiny espeak-ng corpus."""

import os
import subprocess
import sys

import pytest

from dllab.engine.rundir import RunDir

pytestmark = pytest.mark.slow


def _train(corpus, cache, runs, name, nproc):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "dllab", "asr", "train", "--decoder", "lstm",
           "--name", name, "--runs", str(runs), "--data.corpus", str(corpus), "--epochs", "1",
           "--warmup_steps", "1", "--eval_batch_size", "4", "--decode_max_len", "8", "--train.threads=1"]
    env = {**os.environ, "DLLAB_CACHE": str(cache)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_asr_two_processes_match_one_process(tiny_corpus, tiny_cache, tmp_path):
    one = _train(tiny_corpus, tiny_cache, tmp_path, "one", 1)
    assert one.returncode == 0, one.stderr
    two = _train(tiny_corpus, tiny_cache, tmp_path, "two", 2)
    assert two.returncode == 0, two.stderr
    a = RunDir(tmp_path / "asr" / "one").read_metrics()
    b = RunDir(tmp_path / "asr" / "two").read_metrics()
    # One epoch with the same seed and global batch: the same loss up to summation order and dropout masks.
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], rel=0.05)
    assert RunDir(tmp_path / "asr" / "two").is_complete()
