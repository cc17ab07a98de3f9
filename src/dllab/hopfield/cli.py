"""`dllab hopfield ...`: the theory checks, the retrieval experiment and the capacity sweep (2024-25 Q1)."""

from __future__ import annotations

import argparse
from pathlib import Path

RUNS = Path("runs") / "hopfield"


def add_commands(sub) -> None:
    from dllab.config import describe
    from dllab.hopfield.config import CapacityConfig, RetrievalConfig

    hop = sub.add_parser(
        "hopfield", help="modern Hopfield networks: energy, CCCP update, retrieval (2024-25 Q1)",
        description="Modern Hopfield networks (2024-25 homework 2, question 1): the energy and its "
        "convex-concave split checked against autograd, retrieval of Fashion-MNIST images from corrupted "
        "queries, and the storage capacity against the pattern dimension.",
    )  # fmt: skip
    hsub = hop.add_subparsers(dest="hopfield_command", metavar="<command>")
    hop.set_defaults(func=lambda args: (hop.print_help(), 2)[1])

    check = hsub.add_parser(
        "check", help="the derivation checks (gradients, Hessians, descent, attention identity) as a table",
        description="Compares the closed forms of Question 1 with autograd over random (X, q, beta) in "
        "float64 and checks convexity, energy descent, convergence and the attention identity; writes "
        "runs/hopfield/theory.json. Exit code 1 when a check fails.",
        epilog="example:\n  dllab hopfield check --draws 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check.add_argument("--draws", type=int, default=50, help="random problems (default 50)")
    check.add_argument("--seed", type=int, default=0, help="seed of the draws")
    check.add_argument("--out", type=Path, default=RUNS / "theory.json", help="where to write the table")
    check.set_defaults(func=cmd_check)

    retrieval = hsub.add_parser(
        "retrieval", help="retrieve Fashion-MNIST images from masked or noisy queries: accuracy vs beta, N",
        description="Stores N Fashion-MNIST images (standardised per image, D = 784) and retrieves them "
        "from corrupted copies by iterating q <- X^T softmax(beta X q); writes results.json (accuracy "
        "against beta and N, energy traces) and grids.npz (retrieved images) into --out.",
        epilog="examples:\n  dllab hopfield retrieval --quick\n  dllab hopfield retrieval --corruption "
        "noise --noise_std 1.5 --n_patterns 1000,10000\n\nconfig overrides (--key value or --key=value) and "
        "defaults:\n" + describe(RetrievalConfig()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    retrieval.add_argument("--quick", action="store_true", help="a CPU demo size (N up to 2000, 64 queries)")
    retrieval.add_argument("--out", type=Path, default=None,
                           help="output folder (default runs/hopfield/retrieval[-quick])")  # fmt: skip
    retrieval.set_defaults(func=cmd_retrieval, overrides=True)

    capacity = hsub.add_parser(
        "capacity", help="largest N retrieved at >= 99%% against the pattern dimension, next to 0.14 D",
        description="For Fashion-MNIST pooled to side x side (D = side^2, standardised per image) and "
        "random +-1 patterns of dimension D, doubles N until fewer than 99%% of noisy queries (pattern + "
        "N(0, 0.5^2) per component) are retrieved; the classical Hebbian network is measured on the same "
        "random patterns.",
        epilog="examples:\n  dllab hopfield capacity --quick\n  dllab hopfield capacity --betas 8 --sides "
        "7,14\n\nconfig overrides (--key value or --key=value) and defaults:\n" + describe(CapacityConfig()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    capacity.add_argument("--quick", action="store_true", help="a CPU demo size (D up to 49 / 20)")
    capacity.add_argument("--out", type=Path, default=None,
                          help="output folder (default runs/hopfield/capacity[-quick])")  # fmt: skip
    capacity.set_defaults(func=cmd_capacity, overrides=True)


def cmd_check(args) -> int:
    from dllab.hopfield.theory import save_checks, theory_checks

    if args.draws < 1:
        from dllab.errors import UserError

        raise UserError(f"--draws: must be >= 1, got {args.draws}")
    checks = theory_checks(args.draws, args.seed)
    save_checks(checks, args.out, args.draws, args.seed)
    width = max(len(c.claim) for c in checks)
    print(f"{'claim':<{width}}  {'worst':>11}  {'limit':>9}  ok   measure ({args.draws} draws, float64)")
    for c in checks:
        ok = "yes" if c.passed else "NO "
        print(f"{c.claim:<{width}}  {c.worst:>11.3e}  {c.limit:>9}  {ok}  {c.measure}")
    print(f"wrote {args.out}")
    return 0 if all(c.passed for c in checks) else 1


def cmd_retrieval(args) -> int:
    from dllab.config import apply_overrides
    from dllab.engine.logs import setup_logging
    from dllab.hopfield.experiment import QUICK_RETRIEVAL, RetrievalConfig, run_retrieval

    setup_logging()
    cfg = apply_overrides(RetrievalConfig(), (QUICK_RETRIEVAL if args.quick else []) + args.overrides)
    out = args.out or RUNS / ("retrieval-quick" if args.quick else "retrieval")
    result = run_retrieval(cfg, out)
    print(f"{'N':>7} {'beta':>7} {'retrieved':>9} {'nearest':>8} {'rel.err':>8} {'eff.N':>8} {'steps':>5}")
    for r in result["rows"]:
        print(f"{r['n_patterns']:>7} {r['beta']:>7g} {r['accuracy']:>9.3f} {r['nearest_acc']:>8.3f} "
              f"{r['rel_error']:>8.3f} {r['effective_patterns']:>8.1f} {r['steps']:>5}")  # fmt: skip
    print(f"wrote {out}/results.json and grids.npz ({result['seconds']:.0f} s). Next: dllab report")
    return 0


def cmd_capacity(args) -> int:
    from dllab.config import apply_overrides
    from dllab.engine.logs import setup_logging
    from dllab.hopfield.experiment import QUICK_CAPACITY, CapacityConfig, run_capacity

    setup_logging()
    cfg = apply_overrides(CapacityConfig(), (QUICK_CAPACITY if args.quick else []) + args.overrides)
    out = args.out or RUNS / ("capacity-quick" if args.quick else "capacity")
    result = run_capacity(cfg, out)
    print(f"{'patterns':<14} {'network':<10} {'beta':>5} {'D':>5} {'capacity':>9} {'0.14 D':>7}")
    for r in result["rows"]:
        cap = f"{'>=' if r['capped'] else ''}{r['capacity']}"
        beta = "-" if r["beta"] is None else f"{r['beta']:g}"
        classical = 0.14 * r["dim"]
        print(f"{r['family']:<14} {r['network']:<10} {beta:>5} {r['dim']:>5} {cap:>9} {classical:>7.1f}")
    print(f"wrote {out}/results.json ({result['seconds']:.0f} s). Next: dllab report")
    return 0
