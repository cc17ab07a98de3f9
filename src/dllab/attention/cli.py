"""`dllab attention ...`: the derivation checks, the approximation error against softmax, kernel tuning."""

from __future__ import annotations

import argparse
from pathlib import Path

RUNS = Path("runs") / "attention"


def add_commands(sub) -> None:
    att = sub.add_parser(
        "attention", help="softmax vs Taylor linear attention kernels, derivation checks (2023-24 Q1)",
        description="Taylor linear attention (2023-24 homework 2, question 1): the feature dimension M(D, K) "
        "settled numerically against the student reports' formulas, the feature map's identity, the "
        "approximation error against softmax attention, and the kernels' tuning. The speed and memory "
        "comparison is `dllab bench attention`.",
    )  # fmt: skip
    asub = att.add_subparsers(dest="attention_command", metavar="<command>")
    att.set_defaults(func=lambda args: (att.print_help(), 2)[1])

    check = asub.add_parser(
        "check", help="M(D, K) table next to each report's formula, identity and squares-only errors",
        description="Prints M(D, K) = sum_{n<K} C(n+D-1, n) for D in {2,4,8,16,64}, K in {2..5}, the rank "
        "of the kernel's Gram matrix (the fewest features any exact map can have), the outer-product "
        "count and each seed report's formula; the error of phi(q)^T phi(k) against the truncated "
        "series; what the squares-only map of two reports loses; the sign of the truncated series. "
        "Writes runs/attention/theory.json. Exit code 1 when an identity or rank check fails.",
        epilog="example:\n  dllab attention check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check.add_argument("--quick", action="store_true", help="Gram ranks only up to M = 200 (faster)")
    check.add_argument("--out", type=Path, default=RUNS / "theory.json", help="where to write the results")
    check.set_defaults(func=cmd_check)

    error = asub.add_parser(
        "error", help="K-term Taylor attention vs softmax: relative error against K and the score spread",
        description="q, k ~ N(0, s I) so that the scores q^T k / sqrt(D) have standard deviation s; "
        "B=1, H=4, D=16, float64, non-causal. Prints the relative error of Taylor attention against "
        "softmax attention for K = 1..6 and s in {0.25, 0.5, 1, 2, 4}, and the fraction of rows whose "
        "normaliser is <= 0. Writes runs/attention/error.json.",
        epilog="example:\n  dllab attention error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    error.add_argument("--quick", action="store_true", help="L = 128 instead of 512")
    error.add_argument("--out", type=Path, default=RUNS / "error.json", help="where to write the results")
    error.set_defaults(func=cmd_error)

    tune = asub.add_parser(
        "tune", help="time the causal chunk size and the kernels' block size (how the defaults were chosen)",
        description="Times causal Taylor attention for chunk sizes C and both paths for block sizes "
        "(features per block), forward and forward + backward, B=1, H=4, D=16, K=3. Writes "
        "runs/attention/tune.json.",
        epilog="example:\n  dllab attention tune --length 16384",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    tune.add_argument("--length", type=int, default=16384, help="sequence length L (default 16384)")
    tune.add_argument("--chunks", type=str, default="16,32,64,128,256", help="chunk sizes to time")
    tune.add_argument("--repeats", type=int, default=5, help="rounds over all settings (best kept)")
    tune.add_argument("--out", type=Path, default=RUNS / "tune.json", help="where to write the results")
    tune.set_defaults(func=cmd_tune)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}"
    return f"{value:,}"


def cmd_check(args) -> int:
    from dllab.attention.experiment import theory_results
    from dllab.io import atomic_write_json

    data = theory_results(quick=args.quick)
    atomic_write_json(args.out, data)
    ok = True
    print("M(D, K): features of an exact K-term Taylor map; Gram rank = the fewest any exact map can have")
    print(
        f"{'D':>3} {'K':>2} {'M':>9} {'rank':>6} {'outer':>12} "
        f"{'seed000':>8} {'seed001':>10} {'seed002':>9} {'seed003':>8}"
    )
    for r in data["feature_dims"]:
        if r["gram_rank"] is not None and r["gram_rank"] != r["M"]:
            ok = False
        print(
            f"{r['D']:>3} {r['K']:>2} {r['M']:>9,} {_fmt(r['gram_rank']):>6} {r['outer']:>12,} "
            f"{r['seed000']:>8,} {r['seed001']:>10,} {r['seed002']:>9,} {r['seed003']:>8,}"
        )
    print("\nK = 3 (the homework's 1 + t + t^2/2): M against each report's K = 3 answer")
    print(f"{'D':>3} {'M':>6} {'seed000':>8} {'seed001':>8} {'seed002':>8} {'seed003':>8}")
    for r in data["seed_k3"]:
        print(f"{r['D']:>3} {r['M']:>6} {r['seed000']:>8} {r['seed001']:>8} {r['seed002']:>8} {r['seed003']:>8}")
    print()
    for s in data["seeds"]:
        print(f"seed {s['seed']}: {s['written']}\n  -> {s['verdict']}")
    print("\nmax relative error of phi(q)^T phi(k) against sum_{n<K} (q^T k)^n / n! (64 pairs, |q|, |k| ~ 1)")
    print(f"{'K':>2} {'D':>3} {'compact f64':>12} {'outer f64':>10} {'compact f32':>12} {'outer f32':>10}")
    for r in data["identity"]:
        if (r["compact"] or 0) > 1e-12 or (r.get("compact_f32") or 0) > 1e-5:
            ok = False
        print(
            f"{r['K']:>2} {r['D']:>3} {_fmt(r['compact']):>12} {_fmt(r['outer']):>10} "
            f"{_fmt(r.get('compact_f32')):>12} {_fmt(r.get('outer_f32')):>10}"
        )
    print(
        "\nsquares-only map [1, x, x^2/sqrt(2)] (seeds 000, 003) against the exact K = 3 map; relative errors, "
        "L = 256, score std 0.5, float64"
    )
    print(
        f"{'D':>3} {'M exact':>8} {'M sq':>5} {'kernel err':>11} {'t^2/2 lost':>11} {'attn vs exact':>14} "
        f"{'attn vs softmax':>16} {'exact vs softmax':>17}"
    )
    for r in data["squares_only"]:
        print(
            f"{r['D']:>3} {r['M_exact']:>8,} {r['M_squares']:>5} {r['kernel_rel_error']:>11.3f} "
            f"{r['quadratic_part_lost']:>11.3f} "
            f"{r['attn_error_squares_vs_taylor']:>14.3f} {r['attn_error_squares_vs_softmax']:>16.3f} "
            f"{r['attn_error_taylor_vs_softmax']:>17.3f}"
        )
    print("\nminimum over t of sum_{n<K} t^n/n! (the normaliser's sign): odd K > 0, even K unbounded below")
    print("  " + "   ".join(f"K={r['K']}: {r['minimum']:.4g}" for r in data["series_minimum"]))
    print(f"\nwrote {args.out} ({data['seconds']:.1f} s)" + ("" if ok else "  -- A CHECK FAILED"))
    return 0 if ok else 1


def cmd_error(args) -> int:
    from dllab.attention.experiment import error_results
    from dllab.io import atomic_write_json

    data = error_results(quick=args.quick)
    atomic_write_json(args.out, data)
    rows = data["rows"]
    spreads = sorted({r["spread"] for r in rows})
    orders = sorted({r["K"] for r in rows})
    print(f"relative error ||Z_taylor - Z_softmax|| / ||Z_softmax||, L={data['length']}, H=4, D=16, float64")
    print("score std " + "".join(f"{'K=' + str(k):>11}" for k in orders))
    for s in spreads:
        cells = []
        for k in orders:
            r = next(r for r in rows if r["K"] == k and r["spread"] == s)
            bad = "*" if r["bad_normaliser_rows"] > 0 else " "
            cells.append(f"{r['rel_error']:>10.2e}{bad}")
        print(f"{s:>9g} " + "".join(cells))
    print("* some rows have a normaliser <= 0 (even K only)")
    print(f"wrote {args.out} ({data['seconds']:.1f} s)")
    return 0


def cmd_tune(args) -> int:
    from dllab.attention.experiment import tune_results
    from dllab.errors import UserError
    from dllab.io import atomic_write_json

    try:
        chunks = tuple(int(c) for c in args.chunks.split(","))
    except ValueError:
        raise UserError(f"--chunks: expected comma-separated integers, got {args.chunks!r}") from None
    if args.length < 1 or any(c < 1 for c in chunks) or args.repeats < 1:
        raise UserError("--length, --chunks and --repeats must be >= 1")
    data = tune_results(args.length, chunks, repeats=args.repeats)
    atomic_write_json(args.out, data)
    for mode in ("forward", "forward+backward"):
        best = min((r for r in data["chunks"] if r["mode"] == mode), key=lambda r: r["seconds"])
        print(f"fastest chunk size ({mode}): C={best['chunk']} ({best['seconds'] * 1e3:.2f} ms)")
    print(f"wrote {args.out}")
    return 0
