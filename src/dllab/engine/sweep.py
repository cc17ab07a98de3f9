"""Run many independent training runs in parallel processes, with the CPU threads split among them.

Small models train faster as several one-thread processes than as one multi-thread process, so a sweep
of R runs on C cores uses min(R, 2C) worker processes of max(1, C // workers) threads each. Each job is a
picklable (function, kwargs) pair run in a fresh `spawn` process; a finished run is skipped and an
unfinished one resumed, so an interrupted sweep picks up where it stopped.
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
    import torch

    torch.set_num_threads(threads)
    from dllab.engine.logs import setup_logging

    setup_logging()
    began = time.perf_counter()
    summary = fn(**kwargs, threads=threads)
    summary.setdefault("wall_seconds", time.perf_counter() - began)
    return summary


def run_jobs(jobs: list[Job], workers: int = 0) -> dict[str, dict[str, Any]]:
    """Run `jobs` in parallel processes; returns {job name: summary}. A failed job raises after the rest."""
    n_workers, threads = plan_workers(len(jobs), workers)
    log.info("sweep: %d runs on %d processes x %d threads", len(jobs), n_workers, threads)
    results: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    if n_workers == 1:
        for job in jobs:
            results[job.name] = _run_job(job.fn, job.kwargs, threads)
        return results
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, job.fn, job.kwargs, threads): job.name for job in jobs}
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                results[name] = fut.result()
                log.info("sweep: %s finished", name)
            except Exception as err:
                errors.append(f"{name}: {err}")
    if errors:
        from dllab.errors import UserError

        raise UserError("sweep runs failed:\n  " + "\n  ".join(errors))
    return {job.name: results[job.name] for job in jobs}
