"""The argparse side of `dllab bench <capability>`: one parser shape and the flags every benchmark shares.

Torch-free: the CLI builds every parser for `dllab --help` without importing torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_bench_parser(sub, name: str, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """`dllab bench <name>`: its one-line help, the module docstring as description, and example commands."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_common_flags(
    parser: argparse.ArgumentParser,
    *,
    quick: str,
    threads: int | None = None,
    repeats: int | None = None,
    out: Path | None = None,
) -> None:
    """The flags benchmarks share, each with this benchmark's default (None leaves the flag out).

    quick: what `--quick` measures instead. threads: torch threads for both sides (0 = torch's default).
    repeats: timed rounds, the best kept. out: where the figures go as JSON, for `dllab report`.
    """
    parser.add_argument("--quick", action="store_true", help=quick)
    if threads is not None:
        shown = "torch's, here all cores" if threads == 0 else str(threads)
        parser.add_argument("--threads", type=int, default=threads, help=f"torch threads (default {shown})")
    if repeats is not None:
        parser.add_argument(
            "--repeats", type=int, default=repeats, help=f"timed rounds; each figure is the best (default {repeats})"
        )
    if out is not None:
        parser.add_argument(
            "--out",
            type=Path,
            default=out,
            help=f"also write the figures here as JSON, for `dllab report` (default {out})",
        )
