"""`dllab report` (optionally rerun the experiments, then build report/index.html and report/index.md) and
`dllab reproduce` (every homework experiment at the homework's settings, planned, then the report)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser(
        "report",
        help="build report/index.html (+ index.md) from the run directories",
        description="Build the HTML report (and a Markdown twin) from run directories.",
        epilog=(
            "examples:\n"
            "  dllab report                      build from runs/ into report/\n"
            "  dllab report --rerun --quick      rerun the quick experiments first (the demo), then build\n"
            "  dllab report --only vision        just the vision section"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--rerun", action="store_true", help="rerun each capability's experiments first")
    p.add_argument("--quick", action="store_true", help="with --rerun: the demo's sizes (minutes on 2 cores)")
    p.set_defaults(func=run_report)

    p = sub.add_parser(
        "reproduce",
        help="rerun every homework experiment at the homework's settings, then build the report",
        description=(
            "Rerun every homework experiment at its own settings (both years' vision sweeps, the speller's "
            "table, the speech decoders, attention and Hopfield), side by side on the cores, then build the "
            "report. It first prints the plan with each experiment's time, estimated by a short calibration "
            "run on this machine. Interrupted, it resumes: rerun the same command."
        ),
        epilog=(
            "examples:\n"
            "  dllab reproduce --plan            the plan and its estimates only\n"
            "  dllab reproduce                   run it (resumes after an interruption)\n"
            "  dllab reproduce --budget 2        scale every run's epochs to fit about 2 hours"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--plan", action="store_true", help="print the plan with its estimates, run nothing")
    p.add_argument("--budget", type=float, default=None, help="hours: scale the epochs down to fit, said in the report")
    p.add_argument("--workers", type=int, default=0, help="cores to fill (default: all of this machine's)")
    p.set_defaults(func=run_reproduce)


def add_bench(sub) -> None:
    """`dllab bench demo`: the whole demo, timed, with each capability's headline against its threshold."""
    p = sub.add_parser(
        "demo",
        help="the demo (dllab report --rerun --quick) timed, headline figures against their thresholds",
        description=(
            "Run the demo's plan from scratch into a fresh runs folder, build the report, and print the wall "
            "time next to the 12-minute target (set-up not included: time `make demo` on a fresh clone for "
            "that) and each capability's headline figure next to the threshold that says its model works."
        ),
        epilog="example:\n  dllab bench demo --runs /tmp/demo-runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", type=Path, default=None, help="runs folder (default: a new temporary one)")
    p.set_defaults(func=run_demo_bench)


def run_demo_bench(args) -> int:
    import tempfile
    import time

    from dllab.bench.measure import cpu_counters, cpu_line, cpu_shares
    from dllab.engine.logs import setup_logging
    from dllab.report.build import build_report
    from dllab.report.demo import DEMO_MINUTES, demo_figures, format_rows

    setup_logging()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="dllab-demo-"))
    cores = _cores(0)
    began, counters = time.perf_counter(), cpu_counters()
    _run_planned(runs, quick=True, only=None, cores=cores, scale=1.0, plan_only=False)
    build_report(runs, runs / "report")
    minutes = (time.perf_counter() - began) / 60
    rows = demo_figures(runs)
    print(f"\ndemo on {cores} cores: {minutes:.1f} min without set-up (target: {DEMO_MINUTES} min with set-up)")
    print(format_rows(rows))
    shares = cpu_shares(counters, minutes * 60, os.cpu_count() or 1)
    if shares:
        print(cpu_line(shares))
    print(f"runs and report: {runs}")
    return 0 if all(r["met"] for r in rows) else 1


def _common(p) -> None:
    p.add_argument("--runs", type=Path, default=Path("runs"), help="root of the run directories (default runs/)")
    p.add_argument("--out", type=Path, default=Path("report"), help="output folder (default report/)")
    p.add_argument("--only", action="append", help="only this capability (repeatable)")


def _cores(workers: int) -> int:
    from dllab.errors import UserError

    if workers < 0:
        raise UserError(f"--workers: expected 0 (all cores) or more, got {workers}")
    return workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_report(args) -> int:
    from dllab.engine.logs import setup_logging
    from dllab.report.build import build_report

    setup_logging()
    if args.rerun:
        _run_planned(args.runs, quick=args.quick, only=args.only, cores=_cores(0), scale=1.0, plan_only=False)
    path = build_report(args.runs, args.out, only=args.only)
    if args.rerun and args.quick:
        from dllab.report.demo import demo_figures, format_rows

        print("what the demo's models reached:\n" + format_rows(demo_figures(args.runs, args.only)))
    print(f"report written: {path.resolve()}  (open it in a browser; Markdown twin: {path.with_suffix('.md')})")
    return 0


def run_reproduce(args) -> int:
    from dllab.engine.logs import setup_logging
    from dllab.errors import UserError
    from dllab.report.build import build_report

    setup_logging()
    if args.budget is not None and not args.budget > 0:
        raise UserError(f"--budget: expected a positive number of hours, got {args.budget}")
    cores = _cores(args.workers)
    scale = 1.0
    if args.budget is not None:
        scale = _budget_scale(args.runs, args.only, cores, args.budget * 3600)
    done = _run_planned(args.runs, quick=False, only=args.only, cores=cores, scale=scale, plan_only=args.plan,
                        budget_hours=args.budget)
    if not done:
        return 0
    path = build_report(args.runs, args.out, only=args.only)
    from dllab.report.submitted import format_rows, headlines

    rows = headlines(args.runs, args.only)
    if rows:
        print("the homework's figures, dllab's runs beside the submitted reports' (data differ: see the report):")
        print(format_rows(rows))
    print(f"report written: {path.resolve()}")
    return 0


def _budget_scale(runs: Path, only, cores: int, seconds: float) -> float:
    """The epoch scale whose plan fits `seconds`: estimate at full scale, scale, estimate again (what does not
    scale with epochs, data loading and tests, is why one ratio is not enough)."""
    from dllab.engine.plan import makespan, simulate
    from dllab.report.build import plan_experiments

    scale = 1.0
    for _ in range(2):
        predicted = makespan(simulate(plan_experiments(runs, quick=False, scale=scale, only=only), cores))
        if predicted <= seconds:
            break
        scale = max(0.01, scale * seconds / predicted)
    return min(1.0, scale)


def _run_planned(runs: Path, quick: bool, only, cores: int, scale: float, plan_only: bool,
                 budget_hours: float | None = None) -> bool:
    """Plan (calibrate), print the plan, then run it unless `plan_only`; returns whether it ran."""
    from dllab.engine.plan import format_duration, makespan, run_plan, simulate
    from dllab.io import atomic_write_json
    from dllab.report.build import plan_experiments

    tasks = plan_experiments(runs, quick=quick, scale=scale, only=only)
    slots = {s.task: s for s in simulate(tasks, cores)}
    total = makespan(slots.values())
    mode = "quick (demo sizes)" if quick else "the homework's settings"
    if scale < 1:
        mode += f", epochs x{scale:.2f}"
    if quick:
        names = sorted({t.name.split("/")[0] for t in tasks})
        print(f"plan: {len(tasks)} experiments of {', '.join(names)} at {mode}, about {format_duration(total)} "
              f"on {cores} cores (estimated by calibration here)")
    else:
        print(f"plan: {len(tasks)} experiments at {mode} on {cores} cores, about {format_duration(total)} in all")
        width = max(len(t.name) for t in tasks)
        for t in sorted(tasks, key=lambda t: (slots[t.name].start, t.name)):
            s = slots[t.name]
            print(f"  {t.name:<{width}}  {format_duration(t.seconds):>7}  "
                  f"(from {format_duration(s.start)} to {format_duration(s.end)})")
    if plan_only:
        return False
    folder = Path(runs) / (".plan-quick" if quick else ".plan")
    atomic_write_json(folder / "meta.json", {"quick": quick, "scale": scale, "budget_hours": budget_hours,
                                             "cores": cores, "estimate_seconds": total,
                                             "tasks": sorted(t.name for t in tasks)})  # fmt: skip
    run_plan(tasks, folder, cores)
    return True
