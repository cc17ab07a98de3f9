"""The vision commands against bad names, busy runs, file-system faults and a diverging learning rate."""

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import pytest

from dllab.cli import build_parser, main
from dllab.engine.checkpoint import load_checkpoint
from dllab.engine.rundir import RunDir


def _args(root, runs, *extra):
    return ["vision", "train", "--data.path", str(root), "--data.val_size=100", "--data.train_limit=64",
            "--data.test_limit=50", "--epochs", "1", "--runs", str(runs), *extra]  # fmt: skip


def _one_line_error(err: str) -> str:
    """The error line (log lines of the epochs that ran may come before it); no traceback anywhere."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dllab: error: "), err
    return last


@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".", "..", "/abs"])
def test_path_like_run_names_are_refused(tiny_fashion_root, tmp_path, capsys, name):
    runs = tmp_path / "runs"
    assert main(_args(tiny_fashion_root, runs, "--name", name)) == 2
    assert "--name" in _one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_runs_path_that_is_a_file_is_one_line(tiny_fashion_root, tmp_path, capsys):
    (tmp_path / "runs").write_text("not a folder")
    assert main(_args(tiny_fashion_root, tmp_path / "runs", "--name", "r")) == 2
    assert "runs: not a directory" in _one_line_error(capsys.readouterr().err)


@contextmanager
def _read_only(path):
    """`path` made read-only for real: a read-only bind mount over it when this process is root (permission bits
    do not stop root), chmod 0555 otherwise. Yields the errno a write then fails with."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield errno.EACCES
        finally:
            path.chmod(0o755)
        return
    bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"root without mount: cannot make a folder read-only ({bind.stderr.decode().strip()})")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
        yield errno.EROFS
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_runs_folder_is_one_line_and_leaves_nothing(tiny_fashion_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    with _read_only(runs) as code:
        assert main(_args(tiny_fashion_root, runs, "--name", "r")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert f"cannot create the run directory {runs / 'vision'}" in err or f"{runs / 'vision'}" in err
    assert os.strerror(code) in err
    assert list(runs.iterdir()) == []


def test_checkpoints_unwritable_mid_run_keep_the_last_epoch_loadable(tiny_fashion_root, tmp_path, capsys, monkeypatch):
    """Epoch 2's checkpoint cannot be written (simulated: the process is root): a one-line error, epoch 1 stays
    loadable, and --resume goes on once the folder is writable again."""
    runs = tmp_path / "runs"
    real = tempfile.mkstemp
    saved = []

    def mkstemp(*a, dir=None, prefix="", **k):
        if prefix.startswith(".last.pt") and len(saved) == 1:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        if prefix.startswith(".last.pt"):
            saved.append(dir)
        return real(*a, dir=dir, prefix=prefix, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert main(_args(tiny_fashion_root, runs, "--name", "r", "--epochs", "3")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "cannot write" in err and "last.pt: Permission denied" in err
    run = RunDir(runs / "vision" / "r")
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 1
    monkeypatch.undo()
    assert main(_args(tiny_fashion_root, runs, "--name", "r", "--epochs", "3", "--resume")) == 0
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]


def test_a_full_disk_mid_run_is_one_line_and_keeps_what_was_written(tiny_fashion_root, tmp_path, capsys):
    """A real 700 kB tmpfs (root only): the first checkpoint (~0.9 MB) does not fit."""
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("needs root and mount to make a small file system")
    try:
        assert main(_args(tiny_fashion_root, small, "--name", "r", "--epochs", "2")) == 2
        err = _one_line_error(capsys.readouterr().err)
        assert "cannot write" in err and ".pt: No space left on device" in err
        run = RunDir(small / "vision" / "r")
        assert run.read_config_record()["experiment"] == "vision" and not list(run.path.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_diverging_lr_stops_and_a_lower_lr_resumes(tiny_fashion_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(_args(tiny_fashion_root, runs, "--name", "r")) == 0
    capsys.readouterr()
    assert main(_args(tiny_fashion_root, runs, "--name", "r", "--epochs", "2", "--resume", "--lr", "1e6")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "non-finite" in err and "at epoch 2, step" in err and "--resume --name r" in err
    run = RunDir(runs / "vision" / "r")
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 1
    assert main(_args(tiny_fashion_root, runs, "--name", "r", "--epochs", "2", "--resume", "--lr", "0.001")) == 0
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [(r["epoch"], r["lr"]) for r in records] == [(1, 0.01), (2, 0.001)]
    def refuse(token):
        raise AssertionError(f"bare {token} in a JSON file of the run")

    for path in run.path.rglob("*.json*"):  # strict JSON everywhere: no bare NaN / Infinity
        for text in [path.read_text()] if path.suffix == ".json" else path.read_text().splitlines():
            json.loads(text, parse_constant=refuse)


def test_every_file_of_a_run_gets_the_umask_mode(tiny_fashion_root, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(_args(tiny_fashion_root, tmp_path / "runs", "--name", "r")) == 0
    finally:
        os.umask(old)
    run = tmp_path / "runs" / "vision" / "r"
    files = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert {"config.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt", "test_metrics.json",
            "figures/curves.png", ".lock"} <= set(files)  # fmt: skip
    assert set(files.values()) == {0o640}, files


def _hold(path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dllab.engine.rundir import RunDir; "
         "RunDir(sys.argv[1]).claim(); print('held', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_in_use_refuses_a_second_resume_naming_the_pid(tiny_fashion_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(_args(tiny_fashion_root, runs, "--name", "r")) == 0
    before = RunDir(runs / "vision" / "r").metrics_path.read_text()
    holder = _hold(runs / "vision" / "r")
    try:
        assert main(_args(tiny_fashion_root, runs, "--name", "r", "--epochs", "2", "--resume")) == 2
        err = _one_line_error(capsys.readouterr().err)
        assert f"run {runs / 'vision' / 'r'} is in use by another dllab process (pid {holder.pid})" in err
        assert RunDir(runs / "vision" / "r").metrics_path.read_text() == before
    finally:
        holder.kill()
        holder.wait()


def test_a_sweep_in_use_is_refused(tiny_fashion_root, tmp_path, capsys):
    sweep = tmp_path / "runs" / "vision" / "s"
    sweep.mkdir(parents=True)
    holder = _hold(sweep)
    try:
        args = ["vision", "sweep", "--runs", str(tmp_path / "runs"), "--name", "s", "--data.path",
                str(tiny_fashion_root), "--epochs", "1", "--lrs", "0.1"]  # fmt: skip
        assert main(args) == 2
        assert f"(pid {holder.pid})" in _one_line_error(capsys.readouterr().err)
        assert sorted(p.name for p in sweep.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()


def test_new_runs_are_created_atomically(tmp_path):
    """Four processes start the same new run at once: one gets it, the others are told it is in use or taken."""
    code = ("import sys, time; from dllab.engine.rundir import RunDir; from dllab.vision.config import PRESETS\n"
            "from dllab.errors import UserError\n"
            "try:\n    RunDir(sys.argv[1]).prepare('vision', PRESETS['hw2023'], resume=False)\n"
            "except UserError as err:\n    print(err); sys.exit(2)\n"
            "print('mine', flush=True); time.sleep(4)")  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "new")], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    outs = [(p.wait(), p.stdout.read()) for p in procs]
    assert sorted(rc for rc, _ in outs) == [0, 2, 2, 2], outs
    assert all("in use by another dllab process" in out for rc, out in outs if rc == 2)


def test_sweep_help_and_interrupt_hint_tell_the_truth():
    from dllab.cli import _resume_hint

    parser = build_parser()
    sweep_help = parser.parse_known_args(["vision", "sweep"])[0]
    assert "--resume" not in _resume_hint(sweep_help) and "rerun the same sweep command" in _resume_hint(sweep_help)
    assert "--resume" in _resume_hint(parser.parse_known_args(["vision", "train"])[0])
    vision = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices["vision"]
    sweep = next(a for a in vision._actions if a.__class__.__name__ == "_SubParsersAction").choices["sweep"]
    assert "at most two per core" in " ".join(sweep.format_help().split())
