"""`dllab vision ...`: train one CNN, run the homework's sweep, print parameter counts, draw a run's figures."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = {
    "train": "dllab vision train --preset hw2023 --epochs 2 --data.train_limit=5000 --name quick",
    "sweep": "dllab vision sweep --preset hw2023 --epochs 3 --data.train_limit=6000",
    "params": "dllab vision params",
    "plot": "dllab vision plot runs/vision/hw2023-fashion-mnist/lr0.01",
}


def _fmt(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def add_commands(sub) -> None:
    from dllab.config import describe
    from dllab.engine.options import add_run_arguments
    from dllab.vision.config import PRESETS

    vision = sub.add_parser("vision", help="CNN image classification (Q2 of both years)",
                            description="CNN image classification: the 2023-24 OCTMNIST net and the 2024-25 "
                            "Intel-landscapes net, on Fashion-MNIST by default.")
    vsub = vision.add_subparsers(dest="vision_command", metavar="<command>")
    vision.set_defaults(func=lambda args: (vision.print_help(), 2)[1])
    keys = describe(PRESETS["hw2023"])
    overrides_help = (
        "config overrides: --key=value or --key value, by dotted path (--optim.lr=0.01) or by a unique leaf\n"
        "name (--lr 0.01). Keys and the hw2023 preset's values:\n" + keys
    )

    train = vsub.add_parser("train", help="train one CNN into runs/vision/<name>/",
                            description="Train one CNN; writes config.json, metrics.jsonl, checkpoints, "
                            "test_metrics.json and figures into the run directory.",
                            epilog=f"example:\n  {EXAMPLES['train']}\n\n{overrides_help}")
    _common(train)
    add_run_arguments(train, "run name (default: <preset>-<dataset>-lr<lr>)", runs=False)
    train.set_defaults(func=cmd_train, overrides=True)

    sweep = vsub.add_parser("sweep", help="the homework's learning-rate sweep + ablation, in parallel",
                            description="Learning rates 0.1 / 0.01 / 0.001, plus the year's ablation (2023-24: "
                            "strided convs instead of max-pooling; 2024-25: BN + global average pooling) at "
                            "--ablation-lr. Runs go in parallel processes with the threads split among them; "
                            "an interrupted sweep resumes where it stopped.",
                            epilog=f"example:\n  {EXAMPLES['sweep']}\n\n{overrides_help}")
    _common(sweep)
    add_run_arguments(sweep, "sweep name (default: <preset>-<dataset>)", runs=False, resume=False)
    sweep.add_argument("--lrs", default="0.1,0.01,0.001", help="comma-separated learning rates")
    sweep.add_argument("--ablation-lr", type=float, default=0.01,
                       help="learning rate of the ablation run (the homework's best, 0.01); <=0 skips it")
    sweep.add_argument("--workers", type=int, default=0,
                       help="parallel processes (default: one per run, at most two per core)")
    sweep.add_argument("--ray-address", help="run the sweep on a Ray cluster ('auto', 'ray://host:10001', or "
                       "'local'); needs pip install -e '.[ray]' and run directories on shared storage")
    sweep.set_defaults(func=cmd_sweep, overrides=True, interrupted=(
        "rerun the same sweep command to continue: finished runs are skipped, unfinished ones resume from their "
        "last checkpoint"))  # fmt: skip

    params = vsub.add_parser("params", help="parameter counts per layer at the homework's input shapes",
                             epilog=f"example:\n  {EXAMPLES['params']}")
    _fmt(params)
    params.set_defaults(func=cmd_params)

    plot = vsub.add_parser("plot", help="draw a run's training-loss and validation-accuracy figure",
                           epilog=f"example:\n  {EXAMPLES['plot']}")
    _fmt(plot)
    plot.add_argument("run", type=Path, help="a run directory")
    plot.set_defaults(func=cmd_plot)


def _common(p: argparse.ArgumentParser) -> None:
    _fmt(p)
    p.add_argument("--preset", choices=["hw2023", "hw2024"], default="hw2023",
                   help="the homework year whose defaults to start from (default hw2023)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="root of the run directories (default runs/)")


def _config(args):
    from dllab.config import apply_overrides
    from dllab.vision.config import PRESETS

    return apply_overrides(PRESETS[args.preset], args.overrides)


def cmd_train(args) -> int:
    from dllab.engine.logs import setup_logging
    from dllab.vision.experiment import train_run

    setup_logging()
    cfg = _config(args)
    from dllab.engine.rundir import RunDir

    name = args.name if args.name is not None else f"{args.preset}-{cfg.data.dataset}-lr{cfg.optim.lr:g}"
    run_path = RunDir.named(args.runs, "vision", name).path
    summary = train_run(cfg, run_path, resume=args.resume, overwrite=args.overwrite)
    if not summary:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    _draw(run_path)
    print(f"{run_path}: test acc {summary['test_acc']:.4f} (final model), best val acc "
          f"{summary['best_val_acc']:.4f}, {summary['parameters']:,} parameters")
    return 0


def cmd_sweep(args) -> int:
    import math

    from dllab.engine.logs import setup_logging
    from dllab.errors import UserError
    from dllab.vision.experiment import run_sweep, sweep_table_markdown

    setup_logging()
    cfg = _config(args)
    try:
        lrs = tuple(float(x) for x in args.lrs.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--lrs: expected comma-separated numbers, got {args.lrs!r}") from None
    from dllab.engine.rundir import RunDir

    name = args.name if args.name is not None else f"{args.preset}-{cfg.data.dataset}"
    sweep_dir = RunDir.named(args.runs, "vision", name).path
    if args.workers < 0:
        raise UserError(f"--workers: must be >= 0 (0 = one per run, at most two per core), got {args.workers}")
    bad = [lr for lr in lrs if not (math.isfinite(lr) and lr > 0)]
    if not lrs or bad:
        raise UserError(f"--lrs: give one or more learning rates > 0, got {args.lrs!r}")
    if not math.isfinite(args.ablation_lr):
        raise UserError(f"--ablation-lr: must be a finite number (<= 0 skips the ablation), got {args.ablation_lr}")
    ablation = args.ablation_lr if args.ablation_lr > 0 else None
    rows = run_sweep(cfg, sweep_dir, args.preset, lrs, ablation, workers=args.workers, ray_address=args.ray_address)
    for row in rows:
        _draw(sweep_dir / row["run"])
    print(sweep_table_markdown(rows))
    print(f"sweep written to {sweep_dir}/ (sweep.json, sweep.md); `dllab report` draws the comparison figures")
    return 0


def cmd_params(args) -> int:
    from dllab.vision.analysis import homework_models, layer_table, model_input_shape

    for label, model in homework_models().items():
        rows = layer_table(model, model_input_shape(label))
        total = sum(r.parameters for r in rows)
        print(f"\n{label}  (input {'x'.join(map(str, model_input_shape(label)))}): {total:,} parameters")
        for r in rows:
            if r.parameters:
                print(f"  {r.name:<16} {r.kind:<12} out {'x'.join(map(str, r.output_shape)):<12} {r.parameters:>10,}")
    return 0


def cmd_plot(args) -> int:
    path = _draw(args.run)
    print(f"figure written: {path}")
    return 0


def _draw(run_path: Path) -> Path:
    from dllab.engine.rundir import RunDir
    from dllab.errors import UserError
    from dllab.io import atomic_write_bytes
    from dllab.report.figures import run_curves

    run = RunDir(run_path)
    if not run.metrics_path.exists():
        raise UserError(f"{run.metrics_path}: no metrics to plot")
    fig = run_curves(run)
    dest = run.figures_dir / "curves.png"
    atomic_write_bytes(dest, lambda fh: fig.savefig(fh, format="png", dpi=100, bbox_inches="tight"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return dest
