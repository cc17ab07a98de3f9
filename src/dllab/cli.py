"""The `dllab` command: a thin parser that hands each subcommand to library code.

Every capability lives in its own package `dllab.<capability>` and plugs in here without editing this
file's logic:

- `dllab/<capability>/cli.py` defines `add_commands(subparsers)`, which adds one parser named after the
  capability (with its own sub-commands); each leaf parser calls `set_defaults(func=handler)`, where
  `handler(args) -> int` is the exit code. A leaf that takes config overrides (`--optim.lr=0.01`) also sets
  `overrides=True`; the unparsed `--key value` words then arrive as `args.overrides`.
- `dllab/<capability>/bench.py` defines `add_bench(subparsers)`, which adds `dllab bench <capability>`.
- Handlers import torch-heavy modules inside their body, so `dllab --help` stays quick.

A `UserError` raised anywhere ends the command with its message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from dllab import __version__
from dllab.capabilities import rooms
from dllab.errors import UserError

EPILOG = """examples:
  dllab vision train --preset hw2023 --epochs 2     one CNN run on Fashion-MNIST
  dllab vision sweep --preset hw2023                the homework's learning-rate sweep
  dllab report                                      rebuild report/index.html from runs/
  dllab bench vision                                measured speed next to the course loop
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dllab",
        description="Run, study and extend the experiments of IST Deep Learning Homework 2.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dllab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for _, plugin in rooms("cli"):
        plugin.add_commands(sub)

    from dllab.report import cli as report_cli

    report_cli.add_commands(sub)

    bench = sub.add_parser(
        "bench",
        help="benchmarks: measured figures printed next to their baseline",
        description="Each benchmark prints dllab's measured figures side by side with the baseline.",
        epilog="example:\n  dllab bench vision --quick",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_sub = bench.add_subparsers(dest="bench", metavar="<benchmark>")
    for _, plugin in rooms("bench"):
        plugin.add_bench(bench_sub)
    report_cli.add_bench(bench_sub)
    bench.set_defaults(func=lambda args: _print_help(bench))
    return parser


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "overrides", False):
        args.overrides = extra
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if args.command == "bench":
        from dllab.bench.allocator import keep_freed_memory

        keep_freed_memory()  # freed tensors' pages stay for the next timed call (see dllab.bench.allocator)
    try:
        code = int(func(args) or 0)
        if "torch.distributed" in sys.modules:  # a no-op unless this process joined a torchrun group
            from dllab.engine import distributed

            distributed.shutdown()
        return code
    except UserError as err:
        print(f"dllab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dllab: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except OSError as err:  # a file-system fault no library code turned into a UserError: still one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"dllab: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except Exception as err:
        if isinstance(err, MemoryError) or (
            isinstance(err, RuntimeError) and ("can't allocate memory" in str(err) or "out of memory" in str(err))
        ):
            first = str(err).splitlines()[0] if str(err) else "MemoryError"
            print(f"dllab: error: out of memory ({first}): try smaller sizes (batch, model, limits)", file=sys.stderr)
            return 2
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Under torchrun: say which rank failed and how to continue; torchrun then stops the others.
            rank = os.environ.get("RANK", "?")
            print(f"dllab: rank {rank} failed: {type(err).__name__}: {err}. The last checkpoint is intact: "
                  "rerun the same torchrun command with --resume.", file=sys.stderr)
        raise


def _resume_hint(args: argparse.Namespace) -> str:
    """What to rerun after Ctrl-C: the command's own hint (`set_defaults(interrupted=...)`), --resume for a
    command that has it, nothing otherwise."""
    if getattr(args, "interrupted", None):
        return f" ({args.interrupted})"
    if hasattr(args, "resume"):
        return " (rerun with --resume to continue from the last checkpoint)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
