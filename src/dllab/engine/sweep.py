"""Run many independent training runs in parallel processes, with the CPU threads split among them.

Small models train faster as several one-thread processes than as one multi-thread process, so a sweep
of R runs on C cores uses min(R, 2C) worker processes of max(1, C // workers) threads each. Each job is a
picklable (function, kwargs) pair run in a fresh process, forked from a server that has imported torch once;
a finished run is skipped and an unfinished one resumed, so an interrupted sweep picks up where it stopped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    fn: Callable[..., dict[str, Any]]  # a module-level function: fn(**kwargs, threads=...) -> summary
    kwargs: dict[str, Any] = field(default_factory=dict)


def plan_workers(n_jobs: int, workers: int = 0, cores: int | None = None) -> tuple[int, int]:
    """(worker processes, threads per worker) for n_jobs on this machine's cores.

    By default every job gets its own one-thread process, up to twice the core count: three runs on two
    cores then share both cores to the end, where two workers would leave one core idle for the last run.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = workers or min(n_jobs, 2 * cores)
    workers = max(1, min(workers, n_jobs))
    return workers, max(1, cores // workers)


def _run_job(fn, kwargs, threads: int) -> dict[str, Any]:
    from dllab.engine.logs import setup_logging
    from dllab.engine.loop import torch_threads

    setup_logging()
    began = time.perf_counter()
    with torch_threads(threads):  # restoring matters when the job ran in the caller's process
        summary = fn(**kwargs, threads=threads)
    summary.setdefault("wall_seconds", time.perf_counter() - began)
    return summary


def run_jobs(jobs: list[Job], workers: int = 0, ray_address: str | None = None,
             ray_threads: int = 1) -> dict[str, dict[str, Any]]:
    """Run `jobs` in parallel processes; returns {job name: summary}. A failed job raises after the rest.

    With `ray_address` ("auto", "ray://host:10001", or "local" for a Ray instance started here) the jobs
    become Ray tasks of `ray_threads` CPUs each instead, spread over the cluster; run directories must
    then be on storage every node sees.
    """
    if ray_address:
        return _run_on_ray(jobs, ray_address, ray_threads)
    n_workers, threads = plan_workers(len(jobs), workers)
    log.info("sweep: %d runs on %d processes x %d threads", len(jobs), n_workers, threads)
    results: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    if n_workers == 1:
        for job in jobs:
            try:
                results[job.name] = _run_job(job.fn, job.kwargs, threads)
            except Exception as err:
                errors.append(f"{job.name}: {err}")
    else:
        _run_in_processes(jobs, n_workers, threads, results, errors)
    if errors:
        from dllab.errors import UserError

        raise UserError("sweep runs failed:\n  " + "\n  ".join(errors))
    return {job.name: results[job.name] for job in jobs}


def _context(jobs: list[Job]):
    """A fork server that has imported torch and the jobs' modules once (each worker then starts in
    milliseconds instead of importing torch itself, about 4 s of CPU); plain `spawn` where there is no fork server."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return get_context("spawn")
    ctx = get_context("forkserver")
    # torch._dynamo: a torch optimizer imports it on creation, 2 s of CPU per worker otherwise.
    modules = ["torch", "torch._dynamo", __name__, *sorted({job.fn.__module__ for job in jobs})]
    ctx.set_forkserver_preload(modules)
    return ctx


def _run_in_processes(jobs: list[Job], n_workers: int, threads: int, results: dict, errors: list[str]) -> None:
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=_context(jobs))
    try:
        futures = {pool.submit(_run_job, job.fn, job.kwargs, threads): job.name for job in jobs}
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                results[name] = fut.result()
                log.info("sweep: %s finished", name)
            except Exception as err:
                errors.append(f"{name}: {err}")
    finally:
        # Every result is in: let the workers exit in the background rather than wait for torch's teardown.
        pool.shutdown(wait=False)


def _run_on_ray(jobs: list[Job], address: str, threads: int) -> dict[str, dict[str, Any]]:
    from dllab.errors import UserError

    try:
        import ray  # type: ignore[import-not-found]
    except ImportError:
        raise UserError("--ray-address needs the optional Ray extra: pip install -e '.[ray]'") from None
    ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False)
    task = ray.remote(num_cpus=threads)(_run_job)
    refs = {job.name: task.remote(job.fn, job.kwargs, threads) for job in jobs}
    log.info("sweep: %d runs submitted to Ray at %s, %d CPU(s) each", len(jobs), address, threads)
    results: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for name, ref in refs.items():
        try:
            results[name] = ray.get(ref)
        except Exception as err:
            errors.append(f"{name}: {err}")
    if errors:
        raise UserError("sweep runs failed on Ray:\n  " + "\n  ".join(errors))
    return results
