"""`dllab bench attention`: time and peak memory against L for softmax and Taylor linear attention.

B = 1, H = 4, D = 16, K = 3 (M = 153), float32, L = 256 ... 65,536, forward and forward + backward, for
  sdpa           torch's scaled_dot_product_attention (`softmax_attention`), non-causal
  naive softmax  softmax(q k^T / sqrt(D)) v with the L x L matrix built (`naive_softmax_attention`)
  taylor         `linear_attention(q, k, v, TaylorFeatureMap(16, 3))`, non-causal
  taylor causal  the same with causal=True (chunked)
Time is the best of a few calls (the kernels' cached block buffers warm); peak memory is the growth of the
process's peak resident set during one call from cold, the cached buffers cleared first so that it counts
them (`dllab.attention.measure`). A softmax configuration predicted (from the previous L, as L^2) to exceed
the time budget, or the naive one predicted to exceed the memory budget, is skipped and the output says
why. The FLOP counts are the algorithm's (forward + backward = 3 x forward, as for any chain of matmuls;
the backward's recomputation of the features is not counted, nor the extra products of its input
gradients), and the FLOP bound is that count at the best measured rate of a large square matmul.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dllab.bench.flags import add_bench_parser, add_common_flags

METHODS = ("sdpa", "naive softmax", "taylor", "taylor causal")
MODES = ("forward", "forward+backward")
QUADRATIC = {"sdpa": True, "naive softmax": True, "taylor": False, "taylor causal": False}
FULL_LENGTHS = tuple(2**p for p in range(8, 17))  # 256 ... 65,536
QUICK_LENGTHS = (256, 1024, 4096, 16384)
TARGET_L = 16384
ROUND_LIMIT_S = 2.0


@dataclass(frozen=True)
class BenchSetup:
    lengths: tuple[int, ...] = FULL_LENGTHS  # sequence lengths L
    batch: int = 1  # B
    heads: int = 4  # H
    dim: int = 16  # D (= Dv)
    order: int = 3  # K, Taylor terms
    repeats: int = 3  # timed calls after a warm-up (best kept); 1 for calls over 2 s, 0 over 20 s
    time_budget_s: float = 30.0  # skip a softmax configuration whose predicted call time exceeds this
    memory_budget_gib: float = 6.0  # skip a configuration whose predicted memory exceeds this
    fit_from: int = 2048  # slopes are fitted on L >= fit_from (smaller L measure fixed overheads)
    chunk_size: int | None = None  # causal chunk size (None: the library default)
    threads: int = 0  # torch threads (0: torch's default)
    matmul_size: int = 2048  # n of the n x n matmul that measures the machine's rate
    rounds: int = 6  # extra interleaved passes over the configurations that take under ROUND_LIMIT_S
    target_rounds: int = 12  # then further passes over those at TARGET_L, which the targets are judged on


QUICK_SETUP = BenchSetup(
    lengths=QUICK_LENGTHS, repeats=2, time_budget_s=8.0, memory_budget_gib=1.5, fit_from=1024, rounds=2,
    target_rounds=4,
)


@dataclass
class Result:
    method: str
    mode: str
    length: int
    seconds: float | None = None
    peak_bytes: int | None = None
    flops: float | None = None
    skipped: str = ""  # why it was not run
    load: float | None = None  # the 1-minute load average right after the measurement
    samples: int = 0  # timed calls, the first (warm-up) included, of which `seconds` is the best


@dataclass
class BenchReport:
    setup: BenchSetup
    machine: dict = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    slopes: dict = field(default_factory=dict)
    targets: list[dict] = field(default_factory=list)

    def get(self, method: str, mode: str, length: int) -> Result | None:
        for r in self.results:
            if (r.method, r.mode, r.length) == (method, mode, length):
                return r
        return None


# -- FLOP counts -------------------------------------------------------------------------------------------


def taylor_flops(length: int, setup: BenchSetup, causal: bool, chunk: int) -> float:
    """Forward FLOPs of Taylor linear attention for B x H heads of L tokens (multiply and add = 2 FLOPs)."""
    from dllab.attention import feature_dim

    d, m, dv1 = setup.dim, feature_dim(setup.dim, setup.order), setup.dim + 1
    per_head = 2 * length * (m + d)  # features of q and k: one multiply per monomial, plus the input scaling
    per_head += 2 * (2 * length * m * dv1)  # state Phi(K)^T V' and read Phi(Q) S (normaliser included)
    per_head += length * setup.dim  # the division by the normaliser
    if causal:
        padded = -(-length // chunk) * chunk
        per_head += (padded // chunk) * m * dv1  # cumulative sum of the chunk states
        per_head += padded * chunk * (2 * d + 2 * (setup.order - 1) + 2 * dv1)  # C x C block: q k^T, series, @V'
    return setup.batch * setup.heads * per_head


def softmax_flops(length: int, setup: BenchSetup) -> float:
    """Forward FLOPs of softmax attention: q k^T and P V (the exponentials and sums are not counted)."""
    return setup.batch * setup.heads * 4 * length * length * setup.dim


def flops(method: str, mode: str, length: int, setup: BenchSetup, chunk: int) -> float:
    if method.startswith("taylor"):
        forward = taylor_flops(length, setup, method == "taylor causal", chunk)
    else:
        forward = softmax_flops(length, setup)
    return forward * (3 if mode == "forward+backward" else 1)


def predicted_bytes(method: str, mode: str, length: int, setup: BenchSetup) -> float:
    """What the quadratic naive path must hold: the L x L scores and probabilities (and their gradients)."""
    if method != "naive softmax":
        return 0.0
    matrices = 2 if mode == "forward" else 4
    return matrices * setup.batch * setup.heads * length * length * 4


# -- running ---------------------------------------------------------------------------------------------


def _call(method: str, mode: str, q, k, v, grad, fm, chunk):
    import torch

    from dllab.attention import linear_attention, naive_softmax_attention, softmax_attention

    if method == "sdpa":
        out = softmax_attention(q, k, v)
    elif method == "naive softmax":
        out = naive_softmax_attention(q, k, v)
    else:
        out = linear_attention(q, k, v, fm, causal=method == "taylor causal", chunk_size=chunk)
    if mode == "forward+backward":
        return torch.autograd.grad(out, (q, k, v), grad)
    return out


def _inputs(setup: BenchSetup, length: int, backward: bool):
    import torch

    g = torch.Generator().manual_seed(length)
    shape = (setup.batch, setup.heads, length, setup.dim)
    q, k, v = (torch.randn(shape, generator=g).requires_grad_(backward) for _ in range(3))
    return q, k, v, torch.randn(shape, generator=g)


def _timed_call(method: str, mode: str, length: int, setup: BenchSetup, chunk: int, calls: int) -> float:
    """The best of `calls` timed calls on fresh inputs."""
    import torch

    from dllab.attention import TaylorFeatureMap

    backward = mode == "forward+backward"
    q, k, v, grad = _inputs(setup, length, backward)
    fm = TaylorFeatureMap(setup.dim, setup.order)
    best = float("inf")
    with torch.set_grad_enabled(backward):
        for _ in range(calls):
            start = time.perf_counter()
            _call(method, mode, q, k, v, grad, fm, chunk)
            best = min(best, time.perf_counter() - start)
    return best


def estimate_bench(setup: BenchSetup, probe: int = 1024) -> float:
    """Seconds `run_bench(setup)` will take here: each method and mode timed once at L = `probe` (after a
    warm-up), scaled to every length by its complexity (L for Taylor, L^2 for softmax), times the calls the
    bench makes of it (warm-up, repeats, rounds under ROUND_LIMIT_S, target rounds at TARGET_L), with the
    configurations the time budget skips left out, plus the matmul-rate measurements."""
    import torch

    from dllab.bench.measure import matmul_gflops

    chunk = setup.chunk_size or 64
    began = time.perf_counter()
    matmul_gflops(setup.matmul_size, repeats=1)
    matmul = time.perf_counter() - began
    total = matmul * (2 + setup.rounds + setup.target_rounds)
    with torch.random.fork_rng():
        for mode in MODES:
            for method in METHODS:
                _timed_call(method, mode, 64, setup, chunk, 1)
                base = _timed_call(method, mode, probe, setup, chunk, 2)
                power = 2 if QUADRATIC[method] else 1
                for length in setup.lengths:
                    seconds = base * (length / probe) ** power
                    if QUADRATIC[method] and seconds > setup.time_budget_s:
                        break
                    calls = 1 + setup.repeats + (setup.rounds if seconds < ROUND_LIMIT_S else 0)
                    calls += setup.target_rounds if length == TARGET_L and seconds < ROUND_LIMIT_S else 0
                    total += calls * seconds
    return total


def measure_one(method: str, mode: str, length: int, setup: BenchSetup, chunk: int, repeats: int) -> Result:
    """Peak memory and time of the first call (the warm-up), then the best of a few more calls."""
    import torch

    from dllab.attention import TaylorFeatureMap
    from dllab.attention.taylor.fused.chunk import clear_buffers
    from dllab.bench.measure import load_average, peak_memory

    backward = mode == "forward+backward"
    q, k, v, grad = _inputs(setup, length, backward)
    fm = TaylorFeatureMap(setup.dim, setup.order)
    clear_buffers()  # the peak counts the kernels' block buffers, as a first call builds them
    with torch.set_grad_enabled(backward):
        start = time.perf_counter()
        peak = peak_memory(lambda: _call(method, mode, q, k, v, grad, fm, chunk))
        first = time.perf_counter() - start
    extra = repeats if first < 2.0 else 1 if first < 20.0 else 0
    best = min(first, _timed_call(method, mode, length, setup, chunk, extra)) if extra else first
    return Result(
        method, mode, length, best, peak, flops(method, mode, length, setup, chunk), load=load_average(),
        samples=1 + extra,
    )  # fmt: skip


def run_bench(setup: BenchSetup, log=print) -> BenchReport:
    import torch

    from dllab.attention.linear import DEFAULT_CHUNK_SIZE
    from dllab.attention.taylor import dispatch
    from dllab.bench.measure import cpu_counters, cpu_shares, load_average, machine, matmul_gflops, shaped_matmul_gflops

    started, counters = time.perf_counter(), cpu_counters()

    if setup.threads:
        torch.set_num_threads(setup.threads)
    chunk = setup.chunk_size or DEFAULT_CHUNK_SIZE
    from dllab.attention import feature_dim

    m = feature_dim(setup.dim, setup.order)
    report = BenchReport(setup)
    report.machine = {
        **machine(),
        "matmul_gflops": matmul_gflops(setup.matmul_size),
        "taylor_matmul_gflops": shaped_matmul_gflops(setup.heads, m, 1024, setup.dim + 1),
        "chunk_size": chunk,
        "native": dispatch.status(),  # fused or plain; builds the compiled kernels now, not in a timed call
    }
    log(
        f"machine: {report.machine['threads']} threads, square matmul {report.machine['matmul_gflops']:.1f} "
        f"GFLOP/s, Taylor-shaped matmul ({m}x1024 @ 1024x{setup.dim + 1}) "
        f"{report.machine['taylor_matmul_gflops']:.1f} GFLOP/s, load average {_load(report.machine['load_before'])}; "
        f"{report.machine['allocator']}; {report.machine['native']}"
    )
    samples = [report.machine["matmul_gflops"]]
    for mode in MODES:  # one-time set-up (autograd engine, kernels' first use) is not what we measure
        for method in METHODS:
            _timed_call(method, mode, 64, setup, chunk, 1)
    for mode in MODES:
        for method in METHODS:
            last: Result | None = None
            for length in setup.lengths:
                need = predicted_bytes(method, mode, length, setup)
                if need > setup.memory_budget_gib * 2**30:
                    reason = f"needs ~{need / 2**30:.1f} GiB > {setup.memory_budget_gib:g} GiB budget"
                    report.results.append(Result(method, mode, length, skipped=reason))
                    continue
                if QUADRATIC[method] and last is not None and last.seconds is not None:
                    guess = last.seconds * (length / last.length) ** 2
                    if guess > setup.time_budget_s:
                        reason = f"predicted {guess:.0f} s > {setup.time_budget_s:g} s budget"
                        report.results.append(Result(method, mode, length, skipped=reason))
                        continue
                result = measure_one(method, mode, length, setup, chunk, setup.repeats)
                report.results.append(result)
                last = result
                mem = f"{result.peak_bytes / 2**20:8.1f} MiB" if result.peak_bytes is not None else "?"
                log(
                    f"  {mode:<16} {method:<14} L={length:>6}: {result.seconds * 1e3:10.2f} ms  {mem}  "
                    f"(load {result.load:.1f})"
                )
    # More passes over every configuration that takes under ROUND_LIMIT_S, interleaved, each keeping its best:
    # a burst of load from other processes then spoils one pass of a configuration, not all of its calls.
    # The matmul rate is measured again in every pass, keeping its best too, so that the FLOP bound gets
    # the same chances of a quiet machine as the times it is compared with.
    # The configurations at TARGET_L then get `target_rounds` more passes (about 1 s each here: Taylor's
    # four calls and SDPA's forward): on a shared machine whose speed swings by 20-40% from minute to minute,
    # ten samples left the targets that sit near their limits to chance, run to run; the rate gets a sample
    # per pass as well.
    fast = [r for r in report.results if r.seconds is not None and r.seconds < ROUND_LIMIT_S]
    at_target = [r for r in fast if r.length == TARGET_L]
    for passes in ([fast] * setup.rounds) + ([at_target] * (setup.target_rounds if at_target else 0)):
        for r in passes:
            r.seconds = min(r.seconds, _timed_call(r.method, r.mode, r.length, setup, chunk, 1))
            r.samples += 1
        samples.append(matmul_gflops(setup.matmul_size))
    samples.append(matmul_gflops(setup.matmul_size))
    report.machine["matmul_gflops"] = max(samples)
    report.machine["matmul_gflops_samples"] = samples  # their spread shows how steady the machine was
    report.machine["load_after"] = load_average()
    report.machine["cpu_shares"] = cpu_shares(counters, time.perf_counter() - started, os.cpu_count() or 1)
    report.slopes = fit_slopes(report)
    report.targets = evaluate_targets(report)
    return report


def _load(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def fit_slopes(report: BenchReport) -> dict:
    """Least-squares slope of log(time) and log(memory) against log(L) on L >= fit_from, per method and mode."""
    out: dict = {}
    for mode in MODES:
        for method in METHODS:
            rows = [
                r
                for r in report.results
                if r.method == method and r.mode == mode and r.seconds and r.length >= report.setup.fit_from
            ]
            key = f"{method} | {mode}"
            out[key] = {
                "time": _slope([(r.length, r.seconds) for r in rows]),
                "memory": _slope([(r.length, r.peak_bytes) for r in rows if r.peak_bytes]),
                "points": len(rows),
            }
    return out


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else None


def evaluate_targets(report: BenchReport) -> list[dict]:
    """The issue's targets, each with the measured figure and met / missed / not measured."""
    rate = report.machine["matmul_gflops"] * 1e9
    targets = []

    def add(name: str, value: float | None, limit: float, higher_is_better: bool, unit: str, detail: str = ""):
        if value is None:
            status = "not measured"
        else:
            status = "met" if (value >= limit if higher_is_better else value <= limit) else "missed"
        targets.append(
            {"target": name, "value": value, "limit": limit, "unit": unit, "status": status, "detail": detail}
        )

    for mode in MODES:
        taylor, sdpa = report.get("taylor", mode, TARGET_L), report.get("sdpa", mode, TARGET_L)
        speedup = sdpa.seconds / taylor.seconds if taylor and sdpa and taylor.seconds and sdpa.seconds else None
        add(f"taylor vs SDPA speed-up at L={TARGET_L:,} ({mode})", speedup, 10.0, True, "x")
        bound = taylor.flops / rate if taylor and taylor.seconds else None
        ratio = taylor.seconds / bound if bound else None
        add(
            f"taylor time / FLOP bound at L={TARGET_L:,} ({mode})",
            ratio,
            3.0,
            False,
            "x",
            f"{taylor.flops / 1e9:.3f} GFLOP at {rate / 1e9:.1f} GFLOP/s" if taylor and taylor.flops else "",
        )
        add(f"crossover with SDPA ({mode})", crossover(report, mode), 2048, False, "L")
        causal = report.get("taylor causal", mode, TARGET_L)
        ratio = causal.seconds / taylor.seconds if causal and taylor and causal.seconds and taylor.seconds else None
        add(f"taylor causal / non-causal time at L={TARGET_L:,} ({mode})", ratio, 2.0, False, "x")
        worst = [
            c.seconds / t.seconds
            for t in report.results
            if t.method == "taylor" and t.mode == mode and t.seconds and t.length >= report.setup.fit_from
            for c in [report.get("taylor causal", mode, t.length)]
            if c and c.seconds
        ]
        add(
            f"taylor causal / non-causal time, worst L >= {report.setup.fit_from:,} ({mode})",
            max(worst) if worst else None,
            2.0,
            False,
            "x",
        )
    for method in ("taylor", "taylor causal"):
        for mode in MODES:
            slope = report.slopes.get(f"{method} | {mode}", {}).get("memory")
            add(f"{method} peak-memory slope vs L ({mode})", slope, 1.15, False, "", "linear in L: slope ~1")
    return targets


def crossover(report: BenchReport, mode: str) -> int | None:
    """The smallest measured L from which Taylor (non-causal) is faster than SDPA at every larger L."""
    both = []
    for length in report.setup.lengths:
        t, s = report.get("taylor", mode, length), report.get("sdpa", mode, length)
        if t and s and t.seconds and s.seconds:
            both.append((length, t.seconds < s.seconds))
    if not both:
        return None
    answer = None
    for length, faster in reversed(both):
        if not faster:
            break
        answer = length
    return answer


# -- output --------------------------------------------------------------------------------------------


def to_json(report: BenchReport) -> dict:
    return {
        "setup": asdict(report.setup),
        "machine": report.machine,
        "results": [asdict(r) for r in report.results],
        "slopes": report.slopes,
        "targets": report.targets,
    }


def from_json(data: dict) -> BenchReport:
    setup = data["setup"]
    setup["lengths"] = tuple(setup["lengths"])
    report = BenchReport(BenchSetup(**setup), data["machine"], [Result(**r) for r in data["results"]])
    report.slopes, report.targets = data["slopes"], data["targets"]
    return report


def table_rows(report: BenchReport, mode: str) -> tuple[list[str], list[list]]:
    """One row per L: time (ms) per method, the ratios, and Taylor's FLOPs and distance to the FLOP bound."""
    rate = report.machine["matmul_gflops"] * 1e9
    headers = ["L", *(f"{m} ms" for m in METHODS)]
    headers += ["SDPA / taylor", "causal / taylor", "taylor GFLOP", "taylor / bound", "causal / bound", "load"]
    rows = []
    for length in report.setup.lengths:
        got = {m: report.get(m, mode, length) for m in METHODS}
        row: list = [length]
        for m in METHODS:
            r = got[m]
            row.append(f"{r.seconds * 1e3:.2f}" if r and r.seconds else "skipped" if r and r.skipped else "-")
        t, c, s = got["taylor"], got["taylor causal"], got["sdpa"]
        row.append(f"{s.seconds / t.seconds:.1f}" if s and t and s.seconds and t.seconds else "-")
        row.append(f"{c.seconds / t.seconds:.2f}" if c and t and c.seconds and t.seconds else "-")
        row.append(f"{t.flops / 1e9:.3f}" if t and t.flops else "-")
        row.append(f"{t.seconds / (t.flops / rate):.1f}" if t and t.seconds else "-")
        row.append(f"{c.seconds / (c.flops / rate):.1f}" if c and c.seconds else "-")
        loads = [r.load for r in got.values() if r and r.load is not None]
        row.append(f"{max(loads):.1f}" if loads else "-")  # the busiest moment of the row's measurements
        rows.append(row)
    return headers, rows


def memory_rows(report: BenchReport, mode: str) -> tuple[list[str], list[list]]:
    """One row per L: peak memory growth (MiB) per method."""
    rows = []
    for length in report.setup.lengths:
        row: list = [length]
        for m in METHODS:
            r = report.get(m, mode, length)
            row.append(f"{r.peak_bytes / 2**20:.1f}" if r and r.peak_bytes is not None else "skipped" if r else "-")
        rows.append(row)
    return ["L", *(f"{m} MiB" for m in METHODS)], rows


def skipped_lines(report: BenchReport) -> list[str]:
    return [f"{r.mode}, {r.method}, L={r.length:,}: {r.skipped}" for r in report.results if r.skipped]


def format_table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_report(report: BenchReport) -> None:
    s = report.setup
    for mode in MODES:
        print(f"\n{mode}: B={s.batch} H={s.heads} D={s.dim} K={s.order} float32, {report.machine['threads']} threads")
        print(format_table(*table_rows(report, mode)))
        print(f"\npeak memory growth during one call ({mode}):")
        print(format_table(*memory_rows(report, mode)))
    skipped = skipped_lines(report)
    if skipped:
        print("\nskipped (predicted past the budgets):\n  " + "\n  ".join(skipped))
    print(f"\nfitted slopes of log(time) and log(peak memory) against log(L), L >= {s.fit_from:,}:")
    for key, value in report.slopes.items():
        t = "-" if value["time"] is None else f"{value['time']:.2f}"
        m = "-" if value["memory"] is None else f"{value['memory']:.2f}"
        print(f"  {key:<34} time {t:>5}   memory {m:>5}   ({value['points']} points)")
    print("\ntargets:")
    for t in report.targets:
        value = (
            "-" if t["value"] is None else f"{t['value']:,.2f}{t['unit']}" if t["unit"] != "L" else f"{t['value']:,}"
        )
        limit = f"{t['limit']:,}" if t["unit"] == "L" else f"{t['limit']:g}{t['unit']}"
        sense = ">=" if "speed-up" in t["target"] else "<="
        detail = f"  ({t['detail']})" if t["detail"] else ""
        print(f"  [{t['status']:^12}] {t['target']}: {value} (target {sense} {limit}){detail}")
    counted = {f"{r.method} {r.mode}": r.samples for r in report.results if r.length == TARGET_L and r.samples}
    if counted:
        print(f"\ntimed calls behind each figure at L={TARGET_L:,} (best kept): " + ", ".join(
            f"{name} {n}" for name, n in counted.items()
        ))  # fmt: skip
    samples = report.machine.get("matmul_gflops_samples") or []
    if len(samples) > 1:
        print(
            f"\nsquare matmul rate over the run: {min(samples):.0f} to {max(samples):.0f} GFLOP/s in {len(samples)} "
            "measurements; the FLOP bound uses the best (a wide spread means a busy or throttled machine)"
        )
    shares = report.machine.get("cpu_shares")
    load = (report.machine.get("load_before"), report.machine.get("load_after"))
    if shares:  # measured from /proc/stat: what else ran on this machine's CPUs during the run
        from dllab.bench.measure import cpu_line

        print("\n" + cpu_line(shares))
    elif any(x is not None and x > report.machine["threads"] for x in load):  # no /proc/stat: the load average
        print(
            f"\nnote: load average {_load(load[0])} before / {_load(load[1])} after on "
            f"{report.machine['threads']} threads: other processes shared the CPU, so times are pessimistic "
            "(each is the best of several calls)."
        )


def add_bench(sub) -> None:
    p = add_bench_parser(
        sub,
        "attention",
        help="softmax vs Taylor linear attention: time and peak memory against L (log-log, slopes)",
        description=__doc__,
        examples=["dllab bench attention --quick", "dllab bench attention --lengths 1024,4096 --repeats 5"],
    )
    add_common_flags(
        p, quick="L = 256, 1024, 4096, 16384 and tight budgets (< ~1 min)", threads=0, repeats=None, out=None
    )
    p.add_argument("--lengths", type=str, default=None, help="comma-separated sequence lengths")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per configuration (best kept)")
    p.add_argument("--rounds", type=int, default=None, help="extra interleaved passes over the fast configurations")
    p.add_argument(
        "--target-rounds", type=int, default=None, help=f"then more passes over those at L={TARGET_L:,} (targets)"
    )
    p.add_argument("--time-budget", type=float, default=None, help="seconds per call above which to skip")
    p.add_argument("--memory-budget", type=float, default=None, help="GiB above which to skip")
    p.add_argument("--chunk-size", type=int, default=None, help="causal chunk size (default: the library's)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul measuring the rate")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default runs/attention/bench[-quick].json)")
    p.set_defaults(func=run)


def setup_from_args(args) -> BenchSetup:
    from dllab.errors import UserError

    base = QUICK_SETUP
    setup = base if args.quick else BenchSetup()
    if args.matmul_size < 1:
        raise UserError(f"--matmul-size: must be >= 1, got {args.matmul_size}")
    changes: dict = {"threads": args.threads, "chunk_size": args.chunk_size, "matmul_size": args.matmul_size}
    if args.lengths:
        try:
            lengths = tuple(int(x) for x in args.lengths.split(","))
        except ValueError:
            raise UserError(f"--lengths: expected comma-separated integers, got {args.lengths!r}") from None
        if any(x < 1 for x in lengths):
            raise UserError(f"--lengths: lengths must be >= 1, got {args.lengths!r}")
        changes["lengths"] = lengths
        changes["fit_from"] = min(setup.fit_from, max(lengths))
    for name, value, field_name in (
        ("--repeats", args.repeats, "repeats"),
        ("--rounds", args.rounds, "rounds"),
        ("--target-rounds", args.target_rounds, "target_rounds"),
        ("--time-budget", args.time_budget, "time_budget_s"),
        ("--memory-budget", args.memory_budget, "memory_budget_gib"),
    ):
        if value is not None:
            may_be_zero = field_name in ("rounds", "target_rounds")
            if value < 0 or (value == 0 and not may_be_zero):
                raise UserError(f"{name}: must be {'>= 0' if may_be_zero else '> 0'}, got {value}")
            changes[field_name] = value
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UserError(f"--chunk-size: must be >= 1, got {args.chunk_size}")
    if args.threads < 0:
        raise UserError(f"--threads: must be >= 0, got {args.threads}")
    return BenchSetup(**{**asdict(setup), **changes})


def run(args) -> int:
    from dllab.attention.plots import bench_figure
    from dllab.io import atomic_write_json

    setup = setup_from_args(args)
    out = args.out or Path("runs") / "attention" / ("bench-quick.json" if args.quick else "bench.json")
    started = time.perf_counter()
    report = run_bench(setup)
    print_report(report)
    atomic_write_json(out, to_json(report))
    figure = bench_figure(report)
    figure.savefig(out.with_suffix(".png"), dpi=110, bbox_inches="tight")
    print(f"\nwritten: {out} and {out.with_suffix('.png')} ({time.perf_counter() - started:.0f} s)")
    return 0
