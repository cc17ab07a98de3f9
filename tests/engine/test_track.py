"""`--train.track tensorboard`: the event files hold the same scalars as metrics.jsonl, a resume purges what
follows its checkpoint, and a missing package is a clear error before anything is written."""

import sys

import pytest

from dllab.cli import main
from dllab.engine.rundir import RunDir

pytest.importorskip("tensorboard", reason="the optional tensorboard extra (in the dev extra)")


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _train(root, runs, *extra):
    return main(["vision", "train", "--name", "t", "--runs", str(runs), "--data.path", str(root),
                 "--data.val_size=100", "--data.train_limit=160", "--train.threads=1", *extra])


def test_event_files_hold_the_metrics(tiny_fashion_root, tmp_path):
    runs = tmp_path / "runs"
    assert _train(tiny_fashion_root, runs, "--epochs", "2", "--track", "tensorboard") == 0
    run = RunDir(runs / "vision" / "t")
    events = _events(run.path / "tensorboard")
    metrics = run.read_metrics()
    assert set(events) == {k for k in metrics[0] if k != "epoch"}
    for key, points in events.items():
        assert [step for step, _ in points] == [m["epoch"] for m in metrics]
        assert [v for _, v in points] == pytest.approx([m[key] for m in metrics], rel=1e-6)  # float32 in events


def test_a_resume_keeps_one_event_per_epoch(tiny_fashion_root, tmp_path):
    runs = tmp_path / "runs"
    assert _train(tiny_fashion_root, runs, "--epochs", "1", "--track", "tensorboard") == 0
    assert _train(tiny_fashion_root, runs, "--epochs", "3", "--track", "tensorboard", "--resume") == 0
    run = RunDir(runs / "vision" / "t")
    events = _events(run.path / "tensorboard")
    assert [s for s, _ in events["val_acc"]] == [1, 2, 3]
    assert [v for _, v in events["val_acc"]] == pytest.approx([m["val_acc"] for m in run.read_metrics()])


def test_without_the_package_the_run_does_not_start(tiny_fashion_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    runs = tmp_path / "runs"
    assert _train(tiny_fashion_root, runs, "--epochs", "1", "--track", "tensorboard") == 2
    assert "pip install -e '.[tensorboard]'" in capsys.readouterr().err
    assert not (runs / "vision" / "t").exists()
