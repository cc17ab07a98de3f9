"""Figures of the attention results; each takes results already measured and returns a matplotlib Figure."""

from __future__ import annotations

STYLE = {
    "sdpa": dict(color="tab:blue", marker="o"),
    "naive softmax": dict(color="tab:orange", marker="s"),
    "taylor": dict(color="tab:green", marker="^"),
    "taylor causal": dict(color="tab:red", marker="v"),
}


def bench_figure(report):
    """Log-log time (forward, forward + backward) and peak memory against L, slopes in the legends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in report.results))  # in the bench's order, no import of it
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    panels = [(axes[0], "forward", "seconds"), (axes[1], "forward+backward", "seconds")]
    panels.append((axes[2], "forward+backward", "peak_bytes"))
    for ax, mode, what in panels:
        for method in methods:
            rows = [r for r in report.results if r.method == method and r.mode == mode and getattr(r, what)]
            if not rows:
                continue
            xs = [r.length for r in rows]
            ys = [r.seconds if what == "seconds" else r.peak_bytes / 2**20 for r in rows]
            slope = report.slopes.get(f"{method} | {mode}", {}).get("time" if what == "seconds" else "memory")
            label = method + (f" (slope {slope:.2f})" if slope is not None else "")
            ax.loglog(xs, ys, label=label, **STYLE.get(method, {}))
            skipped = [r.length for r in report.results if r.method == method and r.mode == mode and r.skipped]
            if skipped and what == "seconds":
                ax.plot([], [], " ", label=f"  {method}: skipped L >= {min(skipped):,}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("time per call (s)" if what == "seconds" else "peak memory growth (MiB)")
        title = mode if what == "seconds" else f"peak memory, {mode}"
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    s = report.setup
    fig.suptitle(
        f"Softmax vs Taylor linear attention, B={s.batch} H={s.heads} D={s.dim} K={s.order} float32, "
        f"{report.machine['threads']} CPU threads (slopes fitted on L >= {s.fit_from:,})"
    )
    fig.tight_layout()
    return fig


def approximation_figure(rows: list[dict]):
    """Relative error of K-term Taylor attention against softmax: vs K per score spread, and vs spread per K."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spreads = sorted({r["spread"] for r in rows})
    orders = sorted({r["K"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for spread in spreads:
        sel = sorted((r for r in rows if r["spread"] == spread), key=lambda r: r["K"])
        left.semilogy([r["K"] for r in sel], [r["rel_error"] for r in sel], marker="o", label=f"score std {spread:g}")
    left.set_xlabel("K (Taylor terms)")
    left.set_ylabel("||Z_taylor - Z_softmax|| / ||Z_softmax||")
    left.set_title("error against K (even K: normaliser can turn negative)")
    left.set_xticks(orders)
    for order in orders:
        sel = sorted((r for r in rows if r["K"] == order), key=lambda r: r["spread"])
        style = "-" if order % 2 else "--"
        right.loglog([r["spread"] for r in sel], [r["rel_error"] for r in sel], style, marker="o", label=f"K={order}")
    right.set_xlabel("standard deviation of the scores q^T k / sqrt(D)")
    right.set_xticks(spreads, [f"{s:g}" for s in spreads])
    right.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_title("error against the spread of the scores (dashed: even K)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def chunk_size_figure(rows: list[dict]):
    """Causal time against the chunk size C, forward and forward + backward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in ("forward", "forward+backward"):
        sel = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["chunk"])
        ax.loglog([r["chunk"] for r in sel], [r["seconds"] * 1e3 for r in sel], marker="o", label=f"causal, {mode}")
        ref = [r["noncausal_seconds"] * 1e3 for r in sel if r.get("noncausal_seconds")]
        if ref:
            ax.axhline(ref[0], linestyle=":", color=ax.lines[-1].get_color(), label=f"non-causal, {mode}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("chunk size C")
    ax.set_ylabel("ms per call")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
