import pytest

from dllab.engine.rundir import RunDir, find_runs
from dllab.errors import UserError
from dllab.vision.config import PRESETS, with_lr, with_model


def test_prepare_refuses_to_clobber_and_checks_config_on_resume(tmp_path):
    run = RunDir(tmp_path / "r")
    cfg = PRESETS["hw2023"]
    run.prepare("vision", cfg, resume=False)
    assert run.read_config(type(cfg)) == cfg
    run.prepare("vision", cfg, resume=False)  # no epoch finished yet: nothing to lose, a fresh start may reuse it
    run.append_metrics({"epoch": 1, "val_acc": 0.5})
    with pytest.raises(UserError, match="--resume"):
        run.prepare("vision", cfg, resume=False)
    run.prepare("vision", cfg, resume=True)
    with pytest.raises(UserError, match="model.dropout changed"):
        run.prepare("vision", with_model(cfg, dropout=0.5), resume=True)
    run.prepare("vision", with_lr(cfg, 0.001), resume=True)  # a lower --lr may go on (after a non-finite loss)
    assert run.read_config(type(cfg)).optim.lr == 0.001
    run.prepare("vision", with_lr(cfg, 0.5), resume=False, overwrite=True)
    assert find_runs(tmp_path)[0].path == run.path


def test_metrics_survive_a_torn_last_line_and_truncate(tmp_path):
    run = RunDir(tmp_path)
    for e in (1, 2, 3):
        run.append_metrics({"epoch": e, "val_acc": e / 10})
    with open(run.metrics_path, "a") as fh:
        fh.write('{"epoch": 4, "val')
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    run.truncate_metrics(2)
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]


@pytest.mark.parametrize("name", ["", " ", ".", "..", "../x", "a/b", "/etc", "a\x00b", "x" * 256])
def test_run_names_are_one_folder_name(tmp_path, name):
    from dllab.engine.rundir import check_run_name

    with pytest.raises(UserError, match="--name"):
        RunDir.named(tmp_path, "vision", name)
    assert check_run_name("lr0.01") == "lr0.01"
    assert RunDir.named(tmp_path, "p2g", "a-b_c").path == tmp_path / "p2g" / "a-b_c"


def test_claim_is_reentrant_and_names_missing_runs(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(UserError, match="not a run directory"):
        run.claim()
    run.create()
    assert run.claim() is run and run.claim() is run
    with run.locked():
        run.append_metrics({"epoch": 1})
    assert run.holder_pid() == __import__("os").getpid()
    run.release()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="not a directory"):
        RunDir(tmp_path / "file").claim()


def test_a_start_that_failed_before_its_first_epoch_does_not_block_the_name(tmp_path):
    run = RunDir(tmp_path / "r")
    cfg = PRESETS["hw2023"]
    run.prepare("vision", cfg, resume=False)  # then the process died: config.json only
    run.release()
    run.prepare("vision", with_lr(cfg, 0.1), resume=False)
    assert run.read_config(type(cfg)).optim.lr == 0.1


def test_testing_into_a_run_in_use_is_refused(tmp_path):
    """`p2g test` / `asr test` claim the run before writing into it: a run another process trains is refused."""
    import subprocess
    import sys

    run = RunDir(tmp_path / "r")
    run.create()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dllab.engine.rundir import RunDir; "
         "RunDir(sys.argv[1]).prepare('vision', __import__('dllab.vision.config', fromlist=['x']).PRESETS['hw2023'], "
         "resume=False); print('held', flush=True); time.sleep(60)", str(run.path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"in use by another dllab process \(pid {holder.pid}\)"):
            run.claim()
        with pytest.raises(UserError, match="in use"):
            run.write_test_metrics({"cer": 0.1})
        assert not run.test_metrics_path.exists()
    finally:
        holder.kill()
        holder.wait()
    run.claim().write_test_metrics({"cer": 0.1})
    run.release()
