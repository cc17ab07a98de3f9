"""The experiment plan: its schedule fills the cores, dependencies and exclusive tasks hold, and a half-done
plan resumes where it stopped."""

import json

import pytest

from dllab.engine.plan import PlanState, Task, check, makespan, run_plan, simulate
from dllab.errors import UserError
from synthetic import fail, sleep_for


def _busy(slots, t):
    return sum(s.threads for s in slots if s.start <= t < s.end)


def test_known_durations_fill_two_workers_to_the_end():
    tasks = [Task(f"t{i}", sleep_for, seconds=s) for i, s in enumerate([5, 4, 3, 3, 2, 1])]
    slots = simulate(tasks, cores=2)
    assert makespan(slots) == 9  # 18 s of work on 2 cores, no core idle before the end
    assert all(_busy(slots, t + 0.5) == 2 for t in range(9))
    assert {s.task for s in slots} == {t.name for t in tasks}


def test_longest_first_beats_the_given_order():
    # In the given order two workers finish at 1+1+... then run the 6 s task alone: 8 s. Longest first: 6 s.
    tasks = [Task(f"short{i}", sleep_for, seconds=1) for i in range(6)] + [Task("long", sleep_for, seconds=6)]
    assert makespan(simulate(tasks, cores=2)) == 6


def test_dependencies_and_exclusive_tasks_and_wide_tasks():
    tasks = [
        Task("train", sleep_for, seconds=4),
        Task("other", sleep_for, seconds=2),
        Task("test", sleep_for, seconds=1, after=("train",)),
        Task("bench", sleep_for, seconds=3, exclusive=True),
        Task("wide", sleep_for, seconds=2, threads=2),
    ]
    slots = {s.task: s for s in simulate(tasks, cores=2)}
    assert slots["test"].start >= slots["train"].end
    bench = slots["bench"]
    assert all(s.end <= bench.start or s.start >= bench.end for name, s in slots.items() if name != "bench")
    assert slots["wide"].threads == 2
    assert all(_busy(list(slots.values()), t / 2) <= 2 for t in range(40))


def test_running_tasks_hold_their_cores_for_what_is_left():
    tasks = [Task("a", sleep_for, seconds=10), Task("b", sleep_for, seconds=3), Task("c", sleep_for, seconds=3)]
    slots = {s.task: s for s in simulate(tasks, cores=2, elapsed={"a": 8})}
    assert slots["a"].end == 2 and makespan(slots.values()) == 5


@pytest.mark.parametrize(
    "tasks, message",
    [
        ([Task("a", sleep_for), Task("a", sleep_for)], "repeat"),
        ([Task("a", sleep_for, after=("zz",))], "unknown"),
        ([Task("a", sleep_for, after=("b",)), Task("b", sleep_for, after=("a",))], "cycle"),
    ],
)
def test_bad_plans_are_refused(tasks, message):
    with pytest.raises(ValueError, match=message):
        check(tasks, cores=2)


def test_a_half_done_plan_resumes_with_what_failed(tmp_path):
    marker = tmp_path / "ran.txt"
    first = [
        Task("a", sleep_for, {"seconds": 0.2, "marker": str(marker)}, seconds=0.2),
        Task("b", fail, seconds=0.1),
        Task("c", sleep_for, {"seconds": 0.1, "marker": str(marker)}, seconds=0.1, after=("b",)),
    ]
    with pytest.raises(UserError, match="b: ValueError: boom") as err:
        run_plan(first, tmp_path / "plan", cores=2, show_progress=False)
    assert "c: not run" in str(err.value)
    state = json.loads((tmp_path / "plan" / "plan.json").read_text())["tasks"]
    assert state["a"]["status"] == "done" and state["b"]["status"] == "failed"
    assert state.get("c", {}).get("status") is None
    assert marker.read_text().split() == ["0.2"]

    fixed = [first[0], Task("b", sleep_for, {"seconds": 0.1}, seconds=0.1), first[2]]
    results = run_plan(fixed, tmp_path / "plan", cores=2, show_progress=False)
    assert set(results) == {"a", "b", "c"} and results["b"]["slept"] == 0.1
    assert marker.read_text().split() == ["0.2", "0.1"]  # a was not run again
    done = PlanState(tmp_path / "plan")
    assert all(done.done(n) for n in "abc") and done.tasks["c"]["seconds"] > 0


def test_a_corrupt_state_file_is_a_clear_error(tmp_path):
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(UserError, match="plan.json: not a plan state"):
        PlanState(tmp_path)


def test_what_others_wait_for_starts_first():
    # corpus (2 s) gates two 10 s trainings; a 3 s task is longer but nothing waits for it.
    tasks = [
        Task("other", sleep_for, seconds=3),
        Task("corpus", sleep_for, seconds=2),
        Task("train1", sleep_for, seconds=10, after=("corpus",)),
        Task("train2", sleep_for, seconds=10, after=("corpus",)),
    ]
    slots = {s.task: s for s in simulate(tasks, cores=2)}
    assert slots["corpus"].start == 0 and makespan(slots.values()) == 13  # 12 + the core "other" held


def test_a_killed_worker_stops_the_plan_cleanly_and_a_rerun_goes_on(tmp_path):
    from synthetic import die

    tasks = [Task("dies", die, seconds=5), Task("later", sleep_for, {"seconds": 0.1}, seconds=1)]
    with pytest.raises(UserError) as err:
        run_plan(tasks, tmp_path, cores=1, show_progress=False)
    assert "dies:" in str(err.value) and "later: not run" in str(err.value)
    fixed = [Task("dies", sleep_for, {"seconds": 0.1}, seconds=5), tasks[1]]
    assert set(run_plan(fixed, tmp_path, cores=1, show_progress=False)) == {"dies", "later"}


def test_the_eta_follows_finished_tasks_in_proportion_to_the_work_they_cover(tmp_path):
    from dllab.engine.plan import PlanState, _eta

    tasks = [Task("a", sleep_for, seconds=10.0), Task("b", sleep_for, seconds=90.0, after=("a",))]
    state = PlanState(tmp_path / "plan")
    assert _eta(tasks, state, {}, cores=1) == pytest.approx(100.0)
    state.record("a", status="done", seconds=2.0, estimate=10.0)  # 5x faster than estimated
    # one small task 5x faster does not make the rest 5x faster: (2 + 90) / (10 + 90) of b's 90 s
    assert _eta(tasks, state, {}, cores=1) == pytest.approx(90.0 * 92 / 100)
