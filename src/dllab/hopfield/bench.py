"""`dllab bench hopfield`: retrieval throughput against the machine's matmul bound.

N = 60,000 stored 784-dimensional float32 patterns (Fashion-MNIST train + validation images, standardised per
image), queried in batches of B masked images. One CCCP update is two products, scores = q X^T and
softmax(beta scores) X, 2 N D B FLOPs each; `retrieve` with S updates computes S + 1 score products (the
last one gives the final energy) and S value products, (4 S + 2) N D B FLOPs. The matmul bound is that FLOP
count at the machine's sgemm rate, measured here on a large square float32 product with the same threads.
Target: `retrieve` within 3x of the bound (measured time / bound time <= 3) at the best batch size.
"""

from __future__ import annotations

import os

from dllab.bench.flags import add_bench_parser, add_common_flags

TARGET_RATIO = 3.0


def add_bench(sub) -> None:
    p = add_bench_parser(
        sub,
        "hopfield",
        help="Hopfield retrieval queries/s for N = 60,000 patterns next to the sgemm bound",
        description=__doc__,
        examples=["dllab bench hopfield --quick", "dllab bench hopfield --batch-sizes 256,1024 --steps 5"],
    )
    add_common_flags(p, quick="N = 10000, B = 16,256, 2 repeats, 2048^3 sgemm", repeats=3)
    p.add_argument("--patterns", type=int, default=60000, help="stored patterns N (default 60000)")
    p.add_argument("--batch-sizes", default="1,16,64,256,1024", help="query batch sizes B (default 1,16,64,256,1024)")
    p.add_argument("--steps", type=int, default=3, help="CCCP updates per retrieval S (default 3)")
    p.add_argument("--gemm-size", type=int, default=4096, help="n of the n x n x n sgemm (default 4096)")
    p.add_argument("--random", action="store_true", help="random Gaussian patterns instead of Fashion-MNIST")
    p.set_defaults(func=run)


def _patterns(n: int, random: bool):
    import torch

    from dllab.hopfield.experiment import image_pool, to_patterns

    if random:
        return torch.randn(n, 784, generator=torch.Generator().manual_seed(0)), 28
    images = image_pool()
    if n > len(images):
        from dllab.errors import UserError

        raise UserError(f"--patterns: {n} is more than the {len(images)} Fashion-MNIST images; add --random")
    return to_patterns(images[:n]), images.shape[1]


def run(args) -> int:
    import torch

    from dllab.bench.measure import best_time, matmul_gflops
    from dllab.errors import UserError
    from dllab.hopfield.experiment import RetrievalConfig, corrupt
    from dllab.hopfield.retrieval import retrieve, update

    n, repeats, gemm = args.patterns, args.repeats, args.gemm_size
    try:
        batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--batch-sizes: expected comma-separated integers, got {args.batch_sizes!r}") from None
    if args.quick:
        n, batches, repeats, gemm = 10000, [16, 256], 2, 2048
    for name, value in (("--patterns", n), ("--steps", args.steps), ("--repeats", repeats), ("--gemm-size", gemm)):
        if value < 1:
            raise UserError(f"{name}: must be >= 1, got {value}")
    if not batches or min(batches) < 1:
        raise UserError(f"--batch-sizes: need positive integers, got {args.batch_sizes!r}")

    X, height = _patterns(n, args.random)
    d, steps, beta = X.shape[1], args.steps, 0.1
    gen = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    rate = matmul_gflops(gemm, repeats) * 1e9  # FLOP/s
    print(f"Hopfield retrieval, N = {n:,} stored {'random' if args.random else 'Fashion-MNIST'} patterns of D = "
          f"{d}, float32, S = {steps} updates per retrieval (tol = 0), beta = {beta}; torch threads {threads}, "
          f"cores {len(os.sched_getaffinity(0))}")  # fmt: skip
    print(f"measured sgemm rate: {rate / 1e9:.1f} GFLOP/s ({gemm}x{gemm}x{gemm} float32, best of {repeats})")
    print("(other processes may share these cores: the rate and the timings are measured in the same run)\n")

    head = (f"{'B':>6} {'retrieve s':>11} {'queries/s':>11} {'GFLOP/s':>8} {'bound s':>9} {'bound q/s':>10} "
            f"{'ratio':>6} {'update() s/step':>16} {'ratio':>6}  met (ratio <= {TARGET_RATIO:g})")  # fmt: skip
    print(head)
    results = []
    cfg = RetrievalConfig(corruption="mask")
    for b in batches:
        target = torch.randint(0, n, (b,), generator=gen)
        q = corrupt(X[target], cfg, gen, height) if not args.random else X[target] + torch.randn(b, d, generator=gen)
        flops = (4 * steps + 2) * n * d * b
        seconds = best_time(lambda q=q: retrieve(q, X, beta, max_steps=steps, tol=0.0), repeats)
        step_seconds = best_time(lambda q=q: update(q, X, beta), repeats)
        bound = flops / rate
        ratio, step_ratio = seconds / bound, step_seconds / (4 * n * d * b / rate)
        results.append((b, ratio))
        print(f"{b:>6} {seconds:>11.4f} {b / seconds:>11.1f} {flops / seconds / 1e9:>8.1f} {bound:>9.4f} "
              f"{b / bound:>10.1f} {ratio:>6.2f} {step_seconds:>16.4f} {step_ratio:>6.2f}  "
              f"{'yes' if ratio <= TARGET_RATIO else 'no'}")  # fmt: skip
    best_b, best_ratio = min(results, key=lambda r: r[1])
    reaching = [b for b, r in results if r <= TARGET_RATIO]
    print(f"\nqueries/s: complete {steps}-update retrievals per second (each query also gets its energy trace); "
          "bound: the same FLOPs at the sgemm rate; ratio = measured / bound time. update() is one step through "
          "softmax_attention (torch SDPA), bound 4 N D B FLOPs.")  # fmt: skip
    verdict = "MET" if best_ratio <= TARGET_RATIO else "MISSED"
    smallest = f"; smallest batch within target: B = {min(reaching)}" if reaching else ""
    print(f"target: retrieve within {TARGET_RATIO:g}x of the matmul bound -> {verdict}: best ratio {best_ratio:.2f} "
          f"at B = {best_b}{smallest}")  # fmt: skip
    return 0
