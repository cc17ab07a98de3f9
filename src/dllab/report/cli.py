"""`dllab report`: (optionally rerun the experiments, then) build report/index.html and report/index.md."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser(
        "report",
        help="build report/index.html (+ index.md) from the run directories",
        description="Build the HTML report (and a Markdown twin) from run directories.",
        epilog=(
            "examples:\n"
            "  dllab report                      build from runs/ into report/\n"
            "  dllab report --rerun --quick      rerun the quick experiments first, then build\n"
            "  dllab report --only vision        just the vision section"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", type=Path, default=Path("runs"), help="root of the run directories (default runs/)")
    p.add_argument("--out", type=Path, default=Path("report"), help="output folder (default report/)")
    p.add_argument("--rerun", action="store_true", help="rerun each capability's experiments first")
    p.add_argument("--quick", action="store_true", help="with --rerun: the small CPU demo sizes")
    p.add_argument("--only", action="append", help="only this capability's section (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    from dllab.engine.logs import setup_logging
    from dllab.report.build import build_report, rerun_experiments

    setup_logging()
    if args.rerun:
        rerun_experiments(args.runs, quick=args.quick, only=args.only)
    path = build_report(args.runs, args.out, only=args.only)
    print(f"report written: {path.resolve()}  (open it in a browser; Markdown twin: {path.with_suffix('.md')})")
    return 0
