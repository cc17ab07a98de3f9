import importlib.util

import pytest

from dllab.engine.sweep import Job, plan_workers, run_jobs
from synthetic import fail, square


def test_plan_workers_splits_threads():
    assert plan_workers(3, cores=2) == (3, 1)
    assert plan_workers(1, cores=2) == (1, 2)
    assert plan_workers(10, cores=2) == (4, 1)
    assert plan_workers(4, workers=2, cores=8) == (2, 4)


def test_jobs_run_in_spawned_processes_with_their_thread_share():
    results = run_jobs([Job("a", square, {"x": 2}), Job("b", square, {"x": 3})], workers=2)
    assert list(results) == ["a", "b"] and results["b"]["square"] == 9
    assert all(r["threads"] == r["torch_threads"] >= 1 for r in results.values())


def test_a_failed_job_is_reported_by_name():
    from dllab.errors import UserError

    with pytest.raises(UserError, match="bad: boom"):
        run_jobs([Job("ok", square, {"x": 1}), Job("bad", fail)], workers=1)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="optional ray extra not installed")
def test_a_sweep_runs_on_a_local_ray_instance(tiny_fashion_root, tmp_path):
    from dllab.config import apply_overrides
    from dllab.vision.config import PRESETS
    from dllab.vision.experiment import train_run

    cfg = apply_overrides(PRESETS["hw2023"], [f"--data.path={tiny_fashion_root}", "--data.val_size=100",
                                              "--epochs=1"])
    jobs = [Job(f"lr{lr}", train_run, {"cfg": cfg, "run_path": tmp_path / f"lr{lr}"}) for lr in (0.1, 0.01)]
    results = run_jobs(jobs, ray_address="local")
    assert list(results) == ["lr0.1", "lr0.01"]
    assert all(r["epochs"] == 1 and r["test_acc"] is not None for r in results.values())
