"""`dllab bench vision`: dllab's training loop and sweep against the course skeleton's way, on the same data.

(a) the skeleton's style: DataLoader over a TensorDataset (per-sample indexing + collate), default
    threads, `loss.item()` every step, runs one after another;
(b) dllab: the engine's loop (batches gathered by index, no host sync per step) and `dllab vision sweep`
    (runs in parallel one-thread processes).
Both train the 2023-24 CNN with SGD at batch 8 on the first N Fashion-MNIST training images and
evaluate on the validation split after every epoch.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from dllab.bench.flags import add_bench_parser, add_common_flags

TARGET_RATIO = 1.0
TARGET_SWEEP = 1.8


def add_bench(sub) -> None:
    p = add_bench_parser(
        sub,
        "vision",
        help="images/s and sweep wall time: dllab vs the course skeleton's loop",
        description=__doc__,
        examples=["dllab bench vision --quick", "dllab bench vision --train-images 20000 --epochs 2"],
    )
    add_common_flags(p, quick="4000 images, 1 epoch, one round", repeats=2)
    p.add_argument("--train-images", type=int, default=20000, help="training images per run (default 20000)")
    p.add_argument("--val-images", type=int, default=2000, help="validation images (default 2000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    p.add_argument(
        "--ddp",
        action="store_true",
        help="instead: data-parallel scaling, one process vs torchrun with two (one thread each)",
    )
    p.set_defaults(func=run)


def skeleton_style_run(data, lr: float, epochs: int, seed: int = 42) -> float:
    """Train as the course skeleton does; returns training seconds (validation excluded)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from dllab.vision.models import create_model

    torch.manual_seed(seed)
    x, y = data.train.tensors
    vx, vy = data.val.tensors
    model = create_model("cnn2023", data.input_shape, data.num_classes, dropout=0.7)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=0)
    criterion = nn.NLLLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    seconds = 0.0
    for _ in range(epochs):
        began = time.perf_counter()
        model.train()
        losses = []
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds += time.perf_counter() - began
        model.eval()
        with torch.no_grad():
            (model(vx).argmax(-1) == vy).float().mean().item()
    return seconds


def _stop_fork_server() -> None:
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)  # CPython's (private) hook
    if stop is not None:
        stop()


def _dllab_cfg(n_train: int, n_val: int, epochs: int, lr: float = 0.01):
    from dllab.config import apply_overrides
    from dllab.vision.config import PRESETS

    return apply_overrides(
        PRESETS["hw2023"],
        [
            f"--data.train_limit={n_train}",
            f"--data.val_limit={n_val}",
            "--data.test_limit=1000",
            f"--train.epochs={epochs}",
            f"--optim.lr={lr}",
        ],
    )


def run(args) -> int:
    import torch

    from dllab.engine.rundir import RunDir
    from dllab.vision.experiment import load_data, run_sweep, train_run

    n_train, n_val, epochs = args.train_images, args.val_images, args.epochs
    if args.quick:
        n_train, n_val, epochs = 4000, 1000, 1
        args.repeats = 1
    if args.repeats < 1:
        from dllab.errors import UserError

        raise UserError(f"--repeats: must be >= 1, got {args.repeats}")
    if args.ddp:
        return run_ddp_scaling(n_train, n_val, epochs)
    cfg = _dllab_cfg(n_train, n_val, epochs)
    data = load_data(cfg)
    threads = torch.get_num_threads()
    print(
        f"Fashion-MNIST, 2023-24 CNN, SGD batch 8, {n_train} train images x {epochs} epoch(s), "
        f"{n_val} validation images; torch threads {threads}, cores {len(__import__('os').sched_getaffinity(0))}"
    )

    # Each measure is the best of `repeats` rounds, (a) and (b) interleaved, so that a slow spell of the
    # machine (a shared VM drifts by 20-30% over minutes) hits both sides instead of one.
    a_times, b_times, seq_walls, sweep_walls = [], [], [], []
    for round_ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            # (a) vs (b): one run each, same data, same thread count.
            a_times.append(skeleton_style_run(data, 0.01, epochs))
            train_run(cfg, Path(tmp) / "single", threads=threads)
            b_times.append(sum(r["train_seconds"] for r in RunDir(Path(tmp) / "single").read_metrics()))

            # Sweeps of three learning rates: sequential skeleton-style runs vs dllab's parallel sweep.
            began = time.perf_counter()
            for lr in (0.1, 0.01, 0.001):
                skeleton_style_run(data, lr, epochs)
            seq_walls.append(time.perf_counter() - began)
            began = time.perf_counter()
            run_sweep(cfg, Path(tmp) / "sweep", "hw2023", lrs=(0.1, 0.01, 0.001), ablation_lr=None)
            sweep_walls.append(time.perf_counter() - began)
            _stop_fork_server()  # every round's sweep pays for starting its own fork server
        print(
            f"round {round_ + 1}/{args.repeats}: one run (a) {a_times[-1]:.1f} s, (b) {b_times[-1]:.1f} s; "
            f"sweep (a) {seq_walls[-1]:.1f} s, (b) {sweep_walls[-1]:.1f} s ({seq_walls[-1] / sweep_walls[-1]:.2f}x)",
            flush=True,
        )
    a_rate, b_rate = n_train * epochs / min(a_times), n_train * epochs / min(b_times)
    seq_wall, sweep_wall = min(seq_walls), min(sweep_walls)

    ratio, speedup = b_rate / a_rate, seq_wall / sweep_wall
    print()
    print(f"{'measure':<44}{'(a) skeleton style':>20}{'(b) dllab':>14}{'b/a':>8}{'target':>10}  met")
    print(
        f"{'training images/s (one run)':<44}{a_rate:>20.0f}{b_rate:>14.0f}{ratio:>8.2f}"
        f"{'>= ' + str(TARGET_RATIO):>10}  {'yes' if ratio >= TARGET_RATIO else 'NO'}"
    )
    print(
        f"{'lr sweep of 3 runs, wall seconds':<44}{seq_wall:>20.1f}{sweep_wall:>14.1f}{speedup:>7.2f}x"
        f"{'>= ' + str(TARGET_SWEEP) + 'x':>10}  {'yes' if speedup >= TARGET_SWEEP else 'NO'}"
    )
    print(
        "\n(a) sequential runs with DataLoader(TensorDataset), default threads and kernels; (b) `dllab vision "
        f"sweep`: parallel one-thread processes, process start-up and data loading included; (b) trains with "
        f"oneDNN convolutions {'on' if cfg.train.mkldnn else 'off'} (the hw2023 preset's train.mkldnn). Each "
        f"figure is the best of {args.repeats} round(s)."
    )
    return 0


def run_ddp_scaling(n_train: int, n_val: int, epochs: int) -> int:
    """Training images/s of `dllab vision train` in one process vs two torchrun processes (1 thread each)."""
    import subprocess
    import sys

    from dllab.engine.rundir import RunDir

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
            cmd = [
                *(launch if nproc > 1 else [sys.executable]),
                "-m",
                "dllab",
                "vision",
                "train",
                "--name",
                f"p{nproc}",
                f"--data.train_limit={n_train}",
                f"--data.val_limit={n_val}",
                "--data.test_limit=1000",
                f"--epochs={epochs}",
                "--threads=1",
                "--runs",
                tmp,
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            seconds = sum(r["train_seconds"] for r in RunDir(Path(tmp) / "vision" / f"p{nproc}").read_metrics())
            rates[nproc] = n_train * epochs / seconds
    speedup = rates[2] / rates[1]
    print(f"2023-24 CNN, global batch 8, {n_train} Fashion-MNIST images x {epochs} epoch(s), one thread per process")
    print(f"{'processes':<12}{'images/s':>12}{'speedup':>10}")
    print(f"{1:<12}{rates[1]:>12.0f}{1.0:>10.2f}")
    print(f"{2:<12}{rates[2]:>12.0f}{speedup:>10.2f}")
    print(
        "(training time only, from metrics.jsonl; each rank computes 4 of the 8 images of a step and the "
        "gradients are all-reduced by DistributedDataParallel over gloo)"
    )
    return 0
