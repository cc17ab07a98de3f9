"""A plan of experiments: estimated, scheduled onto the cores, run side by side, resumed after an interruption.

`dllab reproduce` and `dllab report --rerun` hand their experiments here as `Task`s, each with an estimate of
its wall time (from a short calibration on this machine) and the threads it runs on. The plan

- schedules them the way it will run them (`simulate`): whenever cores are free, the ready task that fits and
  has the longest way to the plan's end (its own time plus the longest chain waiting for it) starts
  (longest-first list scheduling, which keeps both cores busy to the end instead of leaving one long run alone
  at the finish, and starts what others wait for early); a task can wait for others (`after`), and an `exclusive` task
  (a timing benchmark) runs with the machine to itself;
- runs them in worker processes forked from a server that has imported torch once (`dllab.engine.sweep`),
  each with its share of threads;
- records each finished task in `<state>/plan.json` (atomically), so a rerun skips what is done; every task
  resumes its own run directory too, so an interrupted task loses at most an epoch;
- shows one progress line per running task on a terminal and plain log lines otherwise, with an ETA that
  scales the remaining estimates by how the finished tasks compared with theirs.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllab.errors import UserError
from dllab.io import atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    name: str  # unique in the plan, e.g. "vision/hw2023/lr0.01"
    fn: Callable[..., dict[str, Any]]  # a module-level function: fn(**kwargs, threads=n) -> summary
    kwargs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 60.0  # estimated wall time on `threads` threads
    threads: int = 1
    exclusive: bool = False  # run with no other task beside it (timings)
    after: tuple[str, ...] = ()  # tasks that must finish first


@dataclass(frozen=True)
class Slot:
    task: str
    start: float
    end: float
    threads: int


def check(tasks: list[Task], cores: int) -> None:
    """Names unique, dependencies known and acyclic, every task fits the cores."""
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"plan: task names repeat: {', '.join(dup)}")
    known = set(names)
    for t in tasks:
        missing = [a for a in t.after if a not in known]
        if missing:
            raise ValueError(f"plan: {t.name} waits for unknown task(s) {', '.join(missing)}")
        if t.threads < 1:
            raise ValueError(f"plan: {t.name} asks for {t.threads} threads")
    order = _topological(tasks)
    if len(order) != len(tasks):
        raise ValueError("plan: the tasks' dependencies form a cycle")
    del cores


def _topological(tasks: list[Task]) -> list[str]:
    waiting = {t.name: set(t.after) for t in tasks}
    out: list[str] = []
    ready = sorted(n for n, deps in waiting.items() if not deps)
    while ready:
        name = ready.pop()
        out.append(name)
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps and other not in out and other not in ready:
                    ready.append(other)
    return out


def _ranks(tasks: list[Task]) -> dict[str, float]:
    """Each task's seconds plus the longest chain of tasks waiting on it: the time to the plan's end."""
    waiting: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for a in t.after:
            if a in waiting:
                waiting[a].append(t.name)
    seconds = {t.name: t.seconds for t in tasks}
    ranks: dict[str, float] = {}
    for name in reversed(_topological(tasks)):
        ranks[name] = seconds[name] + max((ranks[w] for w in waiting[name]), default=0.0)
    return ranks


def _pick(ready: list[Task], free: int, cores: int, running: int, ranks: dict[str, float]) -> Task | None:
    """The ready task with the longest way to the plan's end that fits `free` cores (an exclusive one only on
    an empty machine): longest-first, counting what waits for it."""
    for task in sorted(ready, key=lambda t: (-ranks.get(t.name, t.seconds), t.name)):
        need = cores if task.exclusive else min(task.threads, cores)
        if task.exclusive and running:
            continue
        if need <= free:
            return task
    return None


def simulate(tasks: list[Task], cores: int, elapsed: dict[str, float] | None = None) -> list[Slot]:
    """When each task would start and end if every estimate held (the plan's own dispatch rule).

    `elapsed` gives tasks already running (seconds so far): they start at 0 with what is left of their estimate.
    """
    check(tasks, cores)
    elapsed = elapsed or {}
    by_name = {t.name: t for t in tasks}
    done: set[str] = set()
    slots: list[Slot] = []
    events: list[tuple[float, str]] = []  # (end time, task) of running tasks
    free, now = cores, 0.0
    pending = [t for t in tasks if t.name not in elapsed]
    ranks = _ranks(tasks)
    for name, spent in elapsed.items():  # already running: they hold their cores from the start
        t = by_name[name]
        need = cores if t.exclusive else min(t.threads, cores)
        free -= need
        end = max(0.0, t.seconds - spent)
        heapq.heappush(events, (end, name))
        slots.append(Slot(name, 0.0, end, need))
    while pending or events:
        ready = [t for t in pending if all(a in done for a in t.after)]
        task = _pick(ready, free, cores, len(events), ranks)
        if task is not None:
            need = cores if task.exclusive else min(task.threads, cores)
            free -= need
            heapq.heappush(events, (now + task.seconds, task.name))
            slots.append(Slot(task.name, now, now + task.seconds, need))
            pending.remove(task)
            continue
        if not events:
            raise ValueError("plan: a task can never start (it needs more cores than the machine has)")
        now, name = heapq.heappop(events)
        done.add(name)
        t = by_name[name]
        free += cores if t.exclusive else min(t.threads, cores)
    return slots


def makespan(slots: list[Slot]) -> float:
    return max((s.end for s in slots), default=0.0)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# -- the state on disk --------------------------------------------------------------------------------------


class PlanState:
    """`<folder>/plan.json`: each task's estimate, and for finished ones the measured seconds and summary."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / "plan.json"
        self.tasks: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                self.tasks = json.loads(self.path.read_text())["tasks"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(f"{self.path}: not a plan state ({err}); remove it to start the plan again") from None

    def done(self, name: str) -> bool:
        return self.tasks.get(name, {}).get("status") == "done"

    def record(self, name: str, **fields: Any) -> None:
        self.tasks.setdefault(name, {}).update(fields)
        atomic_write_json(self.path, {"tasks": self.tasks})


# -- running ------------------------------------------------------------------------------------------------


class _Progress:
    """One line per running task on a terminal (elapsed against its estimate), log lines otherwise."""

    def __init__(self, enabled: bool):
        from dllab.engine.logs import is_terminal

        self.bars: dict[str, Any] = {}
        self.terminal = enabled and is_terminal()

    def start(self, task: Task, eta: float) -> None:
        if self.terminal:
            from tqdm.auto import tqdm

            self.bars[task.name] = tqdm(
                total=max(1, round(task.seconds)), desc=task.name, unit="s", leave=True, dynamic_ncols=True,
                bar_format="{desc}: {bar} {n_fmt}/{total_fmt} s {postfix}",
            )
        else:
            log.info("plan: %s started (estimate %s; plan ETA %s)", task.name, format_duration(task.seconds),
                     format_duration(eta))

    def tick(self, started: dict[str, float], eta: float) -> None:
        if not self.terminal:
            return
        now = time.monotonic()
        for name, bar in self.bars.items():
            if name in started:
                bar.n = min(bar.total, round(now - started[name]))
                bar.set_postfix_str(f"plan ETA {format_duration(eta)}", refresh=False)
                bar.refresh()

    def finish(self, task: Task, seconds: float, ok: bool, eta: float) -> None:
        bar = self.bars.pop(task.name, None)
        if bar is not None:
            bar.n = bar.total
            bar.set_postfix_str(f"{'done' if ok else 'FAILED'} in {format_duration(seconds)}")
            bar.close()
        else:
            log.info("plan: %s %s in %s (estimate %s); plan ETA %s", task.name, "finished" if ok else "FAILED",
                     format_duration(seconds), format_duration(task.seconds), format_duration(eta))


def _eta(tasks: list[Task], state: PlanState, running: dict[str, float], cores: int) -> float:
    """Seconds left: the remaining tasks simulated with their estimates scaled by how the finished tasks
    compared with theirs. The remaining estimates count as measured at face value in that ratio, so one short
    task done early (a 16 s corpus estimated at 68 s) does not shrink the whole plan's ETA fourfold: the ratio
    follows the measurements as the finished share of the estimated work grows."""
    measured = [(v["seconds"], v["estimate"]) for v in state.tasks.values()
                if v.get("status") == "done" and v.get("estimate") and "seconds" in v]  # fmt: skip
    pending = sum(t.seconds for t in tasks if not state.done(t.name))
    done_estimate = sum(e for _, e in measured)
    ratio = (sum(m for m, _ in measured) + pending) / (done_estimate + pending) if done_estimate + pending else 1.0
    now = time.monotonic()
    left = [Task(t.name, t.fn, t.kwargs, t.seconds * ratio, t.threads, t.exclusive,
                 tuple(a for a in t.after if not state.done(a)))
            for t in tasks if not state.done(t.name)]  # fmt: skip
    elapsed = {name: now - began for name, began in running.items()}
    return makespan(simulate(left, cores, elapsed))


def run_plan(tasks: list[Task], state_dir: str | Path, cores: int, show_progress: bool = True,
             context=None) -> dict[str, dict[str, Any]]:
    """Run every task not yet done (see the module docstring); returns {name: summary} of all done tasks.

    A failed task is recorded and reported after the others finish (those that waited for it are skipped);
    the plan then raises a UserError naming them, and a rerun retries them.
    """
    from dllab.engine.sweep import _context, _run_job

    check(tasks, cores)
    state = PlanState(state_dir)
    by_name = {t.name: t for t in tasks}
    for t in tasks:
        if not state.done(t.name):
            state.tasks.setdefault(t.name, {})["estimate"] = t.seconds
    todo = [t for t in tasks if not state.done(t.name)]
    skipped = len(tasks) - len(todo)
    if skipped:
        log.info("plan: %d of %d tasks already done (%s); running the rest", skipped, len(tasks), state.path)
    progress = _Progress(show_progress)
    ranks = _ranks(tasks)
    failed: list[str] = []
    blocked: list[str] = []
    broken = False  # a worker process died: finish what runs, start nothing more
    running: dict[str, float] = {}
    futures: dict[Future, str] = {}
    free = cores
    pool = ProcessPoolExecutor(max_workers=cores, mp_context=context or _context(todo))  # type: ignore[arg-type]
    try:
        while todo or futures:
            ready = [t for t in todo if all(state.done(a) for a in t.after)]
            for t in [t for t in todo if any(a in failed or a in blocked for a in t.after)]:
                blocked.append(t.name)
                todo.remove(t)
            task = None if broken else _pick(ready, free, cores, len(futures), ranks)
            if task is not None:
                need = cores if task.exclusive else min(task.threads, cores)
                free -= need
                todo.remove(task)
                running[task.name] = time.monotonic()
                try:
                    futures[pool.submit(_run_job, task.fn, task.kwargs, need)] = task.name
                except BrokenProcessPool:  # a worker died (killed, out of memory): the pool takes no more
                    running.pop(task.name)
                    free += need
                    todo.append(task)
                    broken = True
                    continue
                progress.start(task, _eta(tasks, state, running, cores))
                continue
            if not futures:
                break
            finished, _ = wait(list(futures), timeout=1.0, return_when=FIRST_COMPLETED)
            progress.tick(running, _eta(tasks, state, running, cores))
            for fut in finished:
                name = futures.pop(fut)
                t = by_name[name]
                seconds = time.monotonic() - running.pop(name)
                free += cores if t.exclusive else min(t.threads, cores)
                try:
                    summary = fut.result()
                    state.record(name, status="done", seconds=seconds, estimate=t.seconds, summary=_jsonable(summary))
                    ok = True
                except Exception as err:
                    state.record(name, status="failed", seconds=seconds, estimate=t.seconds,
                                 error=f"{type(err).__name__}: {err}")  # fmt: skip
                    failed.append(name)
                    ok = False
                progress.finish(t, seconds, ok, _eta(tasks, state, running, cores))
    except KeyboardInterrupt:
        raise UserError(
            f"plan interrupted: finished tasks are recorded in {state.path}; rerun the same command to go on"
        ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if failed or blocked or todo:
        lines = [f"{n}: {state.tasks[n].get('error', '')}" for n in failed] + [
            f"{n}: not run (it waits for a failed task)" for n in blocked
        ] + [f"{t.name}: not run (a worker process died; rerun to go on)" for t in todo]
        raise UserError("plan: some tasks did not finish (rerun to retry them):\n  " + "\n  ".join(lines))
    return {name: v.get("summary", {}) for name, v in state.tasks.items() if v.get("status") == "done"}


def _jsonable(value: Any) -> Any:
    """`value` as strict JSON: non-finite floats become null, unknown objects their str()."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
