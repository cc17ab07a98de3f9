from dllab.engine.sweep import plan_workers


def test_plan_workers_splits_threads():
    assert plan_workers(3, cores=2) == (3, 1)
    assert plan_workers(1, cores=2) == (1, 2)
    assert plan_workers(10, cores=2) == (4, 1)
    assert plan_workers(4, workers=2, cores=8) == (2, 4)
