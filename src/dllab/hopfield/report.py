"""The Hopfield section of the report: the theory-check table, retrieval accuracy, image grids, energy traces,
and storage capacity, all read from runs/hopfield/ (written by `dllab hopfield check|retrieval|capacity`)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from dllab.report.document import Code, Paragraph, ReportContext, Section, Table

DERIVATION = (
    "With stored patterns X (N x D), M = max_i ||x_i|| and p = softmax(beta X q), the energy "
    "E(q) = -lse(beta, Xq) + beta^-1 log N + 1/2 q^T q + 1/2 M^2 splits into E1(q) = 1/2 q^T q + beta^-1 log N "
    "+ 1/2 M^2 and E2(q) = -lse(beta, Xq). grad E1 = q and Hessian(E1) = I (positive definite: E1 is convex); "
    "grad(-E2) = X^T p and Hessian(-E2) = beta X^T (diag(p) - p p^T) X, which is positive semi-definite because "
    "diag(p) - p p^T is the covariance matrix of a one-hot variable drawn from p (so E2 is concave). The "
    "convex-concave procedure sets grad E1(q_t+1) = -grad E2(q_t), i.e. q_t+1 = X^T softmax(beta X q_t), and "
    "never increases E. Read as attention, q is a query, the rows of X are both keys and values and beta is "
    "the scale: with beta = 1/sqrt(D) and W_Q = W_K = W_V = I one update is one head of cross-attention "
    "softmax(q K^T / sqrt(D)) V. (The seed report's derivation of the Hessian of E2 is garbled and omits the "
    "-p p^T term; the check table below tests the closed forms against autograd.)"
)


NORMALISE = {
    "standardize": " (per image: zero mean, unit pixel variance, norm sqrt(D))",
    "center": " (the mean image of the pool subtracted)",
    "none": " (raw pixels in [0, 1])",
}


def run_theory(out: Path, draws: int, threads: int = 0) -> dict:
    """A plan task: the derivation checks against autograd, `draws` random draws each."""
    from dllab.hopfield.theory import save_checks, theory_checks

    save_checks(theory_checks(draws, 0), Path(out), draws, 0)
    return {"draws": draws}


def run_part(part: str, overrides: list[str], out: Path, threads: int = 0) -> dict:
    """A plan task: the retrieval experiment or the capacity sweep with these config overrides."""
    from dllab.config import apply_overrides
    from dllab.hopfield.experiment import CapacityConfig, RetrievalConfig, image_pool, run_capacity, run_retrieval

    if part == "retrieval":
        result = run_retrieval(apply_overrides(RetrievalConfig(), overrides), Path(out), image_pool())
    else:
        result = run_capacity(apply_overrides(CapacityConfig(), overrides), Path(out), image_pool())
    return {"seconds": result.get("seconds")}


def experiments(runs_root: Path, quick: bool, scale: float = 1.0, overrides: tuple[str, ...] = ()) -> list:
    """Theory checks, the retrieval experiment and the capacity sweep (quick: the CPU demo sizes), each
    estimated by `dllab.hopfield.calibrate` from a short real run of part of it here, on one thread as the
    plan runs them; the retrieval and capacity tasks also load the image pool, timed once here."""
    from dllab.config import apply_overrides
    from dllab.engine.loop import torch_threads
    from dllab.engine.plan import Task
    from dllab.hopfield.calibrate import estimate_capacity, estimate_retrieval, estimate_theory
    from dllab.hopfield.config import QUICK_CAPACITY, QUICK_RETRIEVAL, CapacityConfig, RetrievalConfig
    from dllab.hopfield.experiment import image_pool

    del scale, overrides  # no epochs here: the sizes are the homework's
    root = Path(runs_root) / "hopfield"
    suffix = "-quick" if quick else ""
    draws = 20 if quick else 100
    retrieval = QUICK_RETRIEVAL if quick else []
    capacity = QUICK_CAPACITY if quick else []
    with torch_threads(1):
        began = time.perf_counter()
        images = image_pool()
        load = time.perf_counter() - began
        theory_s = estimate_theory(draws)
        retrieval_s = load + estimate_retrieval(apply_overrides(RetrievalConfig(), retrieval), images)
        capacity_s = load + estimate_capacity(apply_overrides(CapacityConfig(), capacity), images)
    return [
        Task("hopfield/theory", run_theory, {"out": root / "theory.json", "draws": draws}, seconds=theory_s),
        Task("hopfield/retrieval", run_part, {"part": "retrieval", "overrides": retrieval,
                                              "out": root / f"retrieval{suffix}"}, seconds=retrieval_s),
        Task("hopfield/capacity", run_part, {"part": "capacity", "overrides": capacity,
                                             "out": root / f"capacity{suffix}"}, seconds=capacity_s),
    ]  # fmt: skip


def _latest(root: Path, name: str) -> Path | None:
    """runs/hopfield/<name> (a full run) if it exists, else <name>-quick."""
    for folder in (root / name, root / f"{name}-quick"):
        if (folder / "results.json").exists():
            return folder
    return None


def _retrieval_folders(root: Path) -> list[Path]:
    """Every runs/hopfield/retrieval*/ with results; the -quick ones only when no full run exists."""
    found = sorted(p.parent for p in root.glob("retrieval*/results.json"))
    full = [f for f in found if not f.name.endswith("-quick")]
    return full or found


def build_section(ctx: ReportContext) -> Section:
    section = Section("Q1 — Modern Hopfield networks (2024-25)")
    section.add(Paragraph(DERIVATION))
    root = ctx.runs_root / "hopfield"
    theory, retrieval, capacity = root / "theory.json", _retrieval_folders(root), _latest(root, "capacity")
    if not (theory.exists() or retrieval or capacity):
        section.add(Paragraph("No Hopfield runs yet: run `dllab hopfield check`, `dllab hopfield retrieval` and "
                              "`dllab hopfield capacity` (or `dllab report --rerun --quick`), then build the "
                              "report again."))  # fmt: skip
        return section
    if theory.exists():
        section.subsections.append(_theory_section(json.loads(theory.read_text())))
    for folder in retrieval:
        section.subsections.append(_retrieval_section(ctx, folder))
    if capacity:
        section.subsections.append(_capacity_section(ctx, capacity))
    return section


def _theory_section(data: dict) -> Section:
    sub = Section("Theory checks")
    sub.add(Paragraph(f"Produced by `dllab hopfield check --draws {data['draws']}`: {data['draws']} random "
                      f"problems (N in 1..40, D in 1..12, beta in [0.05, 20], {data['dtype']}); autograd by "
                      "torch.func.grad / torch.func.hessian; each row is the worst case over the draws."))  # fmt: skip
    rows = [[c["claim"], c["measure"], c["worst"], c["limit"], "yes" if c["passed"] else "NO"]
            for c in data["checks"]]  # fmt: skip
    sub.add(Table(["claim", "measure", "worst", "limit", "holds"], rows, caption="Question 1 claims, measured"))
    return sub


def _retrieval_section(ctx: ReportContext, folder: Path) -> Section:
    data = json.loads((folder / "results.json").read_text())
    cfg = data["config"]
    quick = folder.name.endswith("-quick")
    kind = "masked" if cfg["corruption"] == "mask" else "noisy"
    sub = Section(f"Retrieval of Fashion-MNIST images from {kind} queries ({folder.name})")
    command = f"dllab hopfield retrieval{' --quick' if quick else ''}"
    if folder.name not in ("retrieval", "retrieval-quick"):
        command += f" --out {folder}"
    corruption = (f"the bottom {cfg['mask_fraction']:.0%} of the rows hidden (set to 0)" if cfg["corruption"] == "mask"
                  else f"Gaussian noise of std {cfg['noise_std']} added to every pixel")  # fmt: skip
    sub.add(Paragraph(
        f"Produced by `{command}` with the configuration below ({data['seconds']:.0f} s, "
        f"{data['threads']} threads). Patterns: the first N of {data['pool']:,} Fashion-MNIST train+validation "
        f"images, D = {data['pattern_dim']}, normalised `{cfg['normalise']}`{NORMALISE[cfg['normalise']]}. "
        f"Queries: {cfg['queries']} stored patterns (at most N) with {corruption}. "
        f"A query counts as retrieved when its fixed point q* satisfies ||q* - x|| <= {cfg['tolerance']} ||x||; "
        "`nearest` counts fixed points whose nearest stored pattern is x; `eff. N` = exp(entropy of "
        f"softmax(beta X q*)) is the number of patterns the fixed point averages. Iteration stops after "
        f"{cfg['max_steps']} updates or when no query moves more than {cfg['tol']} M."
    ))  # fmt: skip
    rows_data = data["rows"]
    betas = sorted({r["beta"] for r in rows_data})
    ns = sorted({r["n_patterns"] for r in rows_data})
    cell = {(r["n_patterns"], r["beta"]): r for r in rows_data}
    table = [[n] + [f"{cell[n, b]['accuracy']:.2f} ({cell[n, b]['effective_patterns']:.0f})"
                    if (n, b) in cell else "" for b in betas] for n in ns]  # fmt: skip
    sub.add(Table(["N \\ beta"] + [f"{b:g}" for b in betas], table,
                  caption="Fraction retrieved (and mean effective number of patterns at the fixed point)"))
    top = [r for r in rows_data if r["beta"] == betas[-1]]
    single = all(r["effective_patterns"] < 1.5 and abs(r["nearest_acc"] - r["accuracy"]) < 0.02 for r in top)
    if cfg["corruption"] == "mask" and single:
        sub.add(Paragraph(
            "A masked query keeps only the visible rows, so a stored image that agrees better with them is an equally "
            "valid answer: at large beta the failures are fixed points on a single other stored pattern (eff. N near "
            "1 and the target not the nearest pattern), not metastable mixtures."
        ))  # fmt: skip
    accuracy = _accuracy_figure(rows_data, betas, ns, data["pattern_dim"])
    sub.add(ctx.save_figure(accuracy, f"hopfield_{folder.name}_accuracy.png",
                            "Retrieval accuracy and effective number of averaged patterns against beta, one "
                            "line per N; the dotted line is beta = 1/sqrt(D)."))  # fmt: skip
    grids = folder / "grids.npz"
    if grids.exists():
        with np.load(grids) as npz:
            arrays = {k: npz[k] for k in npz.files}
        sub.add(ctx.save_figure(_grid_figure(arrays), f"hopfield_{folder.name}_grids.png",
                                f"N = {data['grid_patterns']}: stored images, queries and the fixed points at "
                                "several beta. Small beta: metastable states, averages of many patterns; large "
                                "beta: the stored image itself (a tick marks a retrieved query)."))  # fmt: skip
    rise = max((max(np.diff(t["energy"]), default=0.0) for t in data["energy_traces"]), default=0.0)
    sub.add(ctx.save_figure(_energy_figure(data["energy_traces"]), f"hopfield_{folder.name}_energy.png",
                            f"Mean energy E(q_t) of the grid queries against the iteration (N = "
                            f"{data['grid_patterns']}); largest increase from one iteration to the next: "
                            f"{max(rise, 0.0):.2g} (float32)."))  # fmt: skip
    sub.add(Code(json.dumps(cfg, indent=1)))
    return sub


def _capacity_section(ctx: ReportContext, folder: Path) -> Section:
    data = json.loads((folder / "results.json").read_text())
    cfg = data["config"]
    quick = folder.name.endswith("-quick")
    sub = Section("Storage capacity")
    sub.add(Paragraph(
        f"Produced by `dllab hopfield capacity{' --quick' if quick else ''}` ({data['seconds']:.0f} s). Pattern "
        "dimension D: for Fashion-MNIST, the images average-pooled to side x side (D = side^2) and standardised "
        "per image; for random patterns, D independent +-1 components. Queries: a stored pattern plus "
        f"N(0, {cfg['noise_std']}^2) noise on every component ({cfg['queries']} queries per N, at most N). The "
        f"modern network retrieves when ||q* - x|| <= {cfg['tolerance']} ||x||; the classical Hebbian network "
        "(W = X^T X / D, zero diagonal, asynchronous sign updates from sign(query)) retrieves when its binary "
        f"state equals x exactly. Capacity: the largest N of the doubling grid 2, 4, 8, ... retrieved at >= "
        f"{cfg['threshold']:.0%}, stopping at the first failure; `>=` marks a search that reached its largest "
        "N without failing. The classical reference 0.14 D is the Hebbian capacity for random patterns with a "
        "small fraction of wrong bits allowed, a looser criterion than the exact recall measured here."
    ))  # fmt: skip
    rows = [[r["family"], r["network"], "-" if r["beta"] is None else f"{r['beta']:g}", r["dim"],
             f"{'>= ' if r['capped'] else ''}{r['capacity']:,}", f"{0.14 * r['dim']:.1f}"]
            for r in data["rows"]]  # fmt: skip
    sub.add(Table(["patterns", "network", "beta", "D", "capacity (N at >= 99%)", "0.14 D"], rows,
                  caption="Largest N retrieved at >= 99% against the pattern dimension"))
    sub.add(ctx.save_figure(_capacity_figure(data["rows"]), "hopfield_capacity.png",
                            "Capacity against D (log scales); open markers: the search reached its largest N; "
                            "a capacity of 0 (even N = 2 failed) is not drawn."))
    return sub


# ------------------------------------------------------------------------------------------------- figures


def _accuracy_figure(rows, betas, ns, dim):
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for n in ns:
        pts = sorted((r["beta"], r["accuracy"], r["effective_patterns"]) for r in rows if r["n_patterns"] == n)
        b, acc, eff = zip(*pts, strict=True)
        ax1.plot(b, acc, marker="o", ms=3, label=f"N = {n:,}")
        ax2.plot(b, eff, marker="o", ms=3, label=f"N = {n:,}")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("beta")
        ax.axvline(1 / math.sqrt(dim), color="gray", ls=":", lw=1)
        ax.grid(alpha=0.3)
    ax1.set_ylabel("fraction retrieved")
    ax1.set_ylim(-0.02, 1.02)
    ax2.set_yscale("log")
    ax2.set_ylabel("effective patterns at q*")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _grid_figure(arrays: dict[str, np.ndarray]):
    import matplotlib.pyplot as plt

    beta_keys = sorted((k for k in arrays if k.startswith("beta=")), key=lambda k: float(k[5:]))
    names = ["stored", "query", *beta_keys]
    cols = arrays["stored"].shape[0]
    fig, axes = plt.subplots(len(names), cols, figsize=(1.1 * cols + 1.2, 1.15 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j in range(cols):
            ax = axes[i, j]
            ax.imshow(arrays[name][j], cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if name.startswith("beta="):
                ok = bool(arrays[f"ok {name}"][j])
                ax.set_title("\u2713" if ok else "\u2717", fontsize=8, color="green" if ok else "red", pad=1)
        axes[i, 0].set_ylabel(name.replace("beta=", "\u03b2 = "), fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def _energy_figure(traces):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for t in traces:
        ax.plot(range(len(t["energy"])), t["energy"], marker="o", ms=2.5, label=f"\u03b2 = {t['beta']:g}")
    ax.set_xlabel("iteration t")
    ax.set_ylabel("mean E(q_t)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _capacity_figure(rows):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6, 3.8))
    series: dict[str, list] = {}
    for r in rows:
        label = f"{r['family']}, {r['network']}" + ("" if r["beta"] is None else f", \u03b2 = {r['beta']:g}")
        series.setdefault(label, []).append(r)
    for label, rs in series.items():
        rs = sorted(rs, key=lambda r: r["dim"])
        rs = [r for r in rs if r["capacity"] > 0]  # 0: even N = 2 failed; not drawable on a log axis
        if not rs:
            continue
        (line,) = ax.plot([r["dim"] for r in rs], [r["capacity"] for r in rs], marker="o", label=label)
        capped = [r for r in rs if r["capped"]]
        if capped:
            ax.plot([r["dim"] for r in capped], [r["capacity"] for r in capped], ls="none", marker="o", ms=9,
                    mfc="white", mec=line.get_color())  # fmt: skip
    dims = sorted({r["dim"] for r in rows})
    ax.plot(dims, [0.14 * d for d in dims], color="black", ls="--", label="0.14 D (classical)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(dims)
    ax.set_xlabel("pattern dimension D")
    ax.set_ylabel("capacity: largest N at >= 99%")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
