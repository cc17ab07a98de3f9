"""The vision section of the report: sweep tables and figures, and the answers to Q2.3 / Q2.4 in numbers."""

from __future__ import annotations

import json
from pathlib import Path

from dllab.engine.rundir import RunDir
from dllab.report.document import Code, Paragraph, ReportContext, Section, Table
from dllab.vision.experiment import SWEEP_COLUMNS, read_sweep

# The demo's sizes per year: the 2023-24 sweep at lr 0.1 and 0.01 on all 50,000 training images for 4 epochs,
# so that its best run by validation shows the homework's accuracy (>= 0.85 on Fashion-MNIST's test set; 3
# epochs reached 0.853 with lr 0.1); the 2024-25 net, about 8x dearer per image, on 8,000 images for 2 epochs
# (its BN + GAP comparison shows at that size already). The strided ablation is left to `dllab reproduce`.
QUICK = {"hw2023": {"train_limit": 0, "val_limit": 2000, "epochs": 4},
         "hw2024": {"train_limit": 8000, "val_limit": 2000, "epochs": 2}}  # fmt: skip
QUICK_YEARS = (("hw2023", (0.1, 0.01), None), ("hw2024", (0.01,), 0.01))
YEARS = (("hw2023", (0.1, 0.01, 0.001), 0.01), ("hw2024", (0.1, 0.01, 0.001), 0.01))  # (preset, lrs, ablation lr)


def experiments(runs_root: Path, quick: bool, scale: float = 1.0, overrides: tuple[str, ...] = ()) -> list:
    """Both years' sweeps (lr x3 + the year's ablation at lr 0.01) on Fashion-MNIST, as plan tasks whose
    estimates come from a short calibration run of each year's net; `scale` multiplies the epochs.

    quick: the 2023-24 sweep at lr 0.1 and 0.01 (+ strided) and the 2024-25 net at lr 0.01 (+ BN + GAP), at
    the sizes of QUICK. `overrides` (`--key=value` words) apply to every run's config last."""
    from dllab.config import apply_overrides
    from dllab.engine.plan import Task
    from dllab.vision.config import PRESETS
    from dllab.vision.experiment import sweep_jobs, write_sweep_table

    tasks = []
    for preset, lrs, ablation_lr in QUICK_YEARS if quick else YEARS:
        cfg = PRESETS[preset]
        if quick:
            sizes = QUICK[preset]
            cfg = apply_overrides(cfg, [f"--data.train_limit={sizes['train_limit']}",
                                        f"--data.val_limit={sizes['val_limit']}", f"--train.epochs={sizes['epochs']}"])
        cfg = apply_overrides(cfg, [f"--train.epochs={max(1, round(cfg.train.epochs * scale))}", *overrides])
        sweep_dir = Path(runs_root) / "vision" / f"{preset}-fashion-mnist{'-quick' if quick else ''}"
        jobs = sweep_jobs(cfg, sweep_dir, lrs, ablation_lr, preset)
        seconds = _estimate(cfg)
        names = [f"vision/{preset}/{job.name}" for job in jobs]
        tasks += [Task(name, job.fn, job.kwargs, seconds=seconds) for name, job in zip(names, jobs, strict=True)]
        tasks.append(Task(f"vision/{preset}/table", write_sweep_table,
                          {"sweep_dir": sweep_dir, "preset": preset, "runs": [j.name for j in jobs]},
                          seconds=1.0, after=tuple(names)))  # fmt: skip
    return tasks


def _estimate(cfg) -> float:
    """Seconds one run of `cfg` takes on one thread here, from 1 epoch on 480 images timed now."""
    import dataclasses

    from dllab.config import apply_overrides
    from dllab.engine.calibrate import time_small_run
    from dllab.vision.experiment import load_data, train_run

    n = 480
    small = apply_overrides(cfg, [f"--data.train_limit={n}", f"--data.val_limit={n}", f"--data.test_limit={n}",
                                  "--train.epochs=1"])  # fmt: skip
    timing = time_small_run(lambda path: train_run(small, path, threads=1), n, n)
    sizes = load_data(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_limit=1)))
    return timing.estimate(cfg.train.epochs, len(sizes.train), len(sizes.val))


def demo_figures(runs_root: Path) -> dict[str, float | None]:
    """The demo's headline: the 2023-24 sweep's run with the best validation accuracy (the homework's way of
    choosing the learning rate), tested at its best validation epoch."""
    from dllab.vision.experiment import summarize

    sweep = Path(runs_root) / "vision" / "hw2023-fashion-mnist-quick"
    rows = [summarize(RunDir(p.parent)) for p in sorted(sweep.glob("lr*/test_metrics.json"))]
    if not rows:
        return {"vision.test_acc": None}
    return {"vision.test_acc": max(rows, key=lambda r: r["best_val_acc"])["best_model_test_acc"]}


# The submitted reports' final test accuracies (seeds 001 and 002: 2023-24 on OCTMNIST; seed 004: 2024-25 on
# the Intel images), per sweep run: (preset, run name, what, [(report, accuracy)]).
SUBMITTED = (
    ("hw2023", "lr0.1", "max-pool, lr 0.1", [("seed 001", 0.8072), ("seed 002", 0.7013)]),
    ("hw2023", "lr0.01", "max-pool, lr 0.01", [("seed 001", 0.8204), ("seed 002", 0.8280)]),
    ("hw2023", "lr0.001", "max-pool, lr 0.001", [("seed 001", 0.7977), ("seed 002", 0.7505)]),
    ("hw2023", "no-maxpool-lr0.01", "strided, no max-pool, lr 0.01", [("seed 001", 0.8015), ("seed 002", 0.7958)]),
    ("hw2024", "lr0.1", "lr 0.1", [("seed 004", 0.5543)]),
    ("hw2024", "lr0.01", "lr 0.01", [("seed 004", 0.6900)]),
    ("hw2024", "lr0.001", "lr 0.001", [("seed 004", 0.6057)]),
    ("hw2024", "bn-gap-lr0.01", "BN + GAP, lr 0.01", [("seed 004", 0.7623)]),
)
SUBMITTED_DATA = {"hw2023": "OCTMNIST test (4 classes)", "hw2024": "Intel images test (6 classes)"}


def submitted_figures(runs_root: Path) -> list:
    """The full sweeps' final-epoch test accuracy (what the submitted reports quote) beside theirs."""
    from dllab.report.submitted import Headline
    from dllab.vision.config import PRESETS

    rows = []
    for preset, name, what, theirs in SUBMITTED:
        run = RunDir(Path(runs_root) / "vision" / f"{preset}-fashion-mnist" / name)
        test = (run.read_test_metrics() if run.exists() else None) or {}
        year = "2023-24" if preset == "hw2023" else "2024-25"
        rows.append(Headline(f"{year} CNN, {what}, {PRESETS[preset].train.epochs} epochs", "final test accuracy",
                             test.get("final", {}).get("test_acc"), "Fashion-MNIST test (10 classes)",
                             tuple(theirs), SUBMITTED_DATA[preset]))  # fmt: skip
    return rows


def build_section(ctx: ReportContext) -> Section:
    section = Section("Q2 — CNN image classification")
    sweeps = sorted(p.parent for p in (ctx.runs_root / "vision").glob("*/sweep.json"))
    if not sweeps:
        section.add(Paragraph("No vision sweeps yet: run `dllab vision sweep --preset hw2023` (or "
                              "`dllab report --rerun --quick`) and build the report again."))
    for sweep_dir in sweeps:
        sub = _sweep_section(ctx, sweep_dir)
        if sub is not None:
            section.subsections.append(sub)
    singles = [RunDir(p.parent) for p in sorted((ctx.runs_root / "vision").glob("*/config.json"))]
    if singles:
        section.subsections.append(_single_runs_section(ctx, singles))
    section.subsections.append(_parameters_section())
    section.subsections.append(_kernels_section())
    return section


def _sweep_section(ctx: ReportContext, sweep_dir: Path) -> Section | None:
    from dllab.report.figures import compare_runs, run_curves

    sweep = read_sweep(sweep_dir)
    runs = [RunDir(sweep_dir / name) for name in sweep["runs"] if (sweep_dir / name / "metrics.jsonl").exists()]
    if not runs:
        return None
    from dllab.vision.experiment import summarize

    rows = [summarize(r) for r in runs]
    sub = Section(f"Sweep {sweep_dir.name}")
    cfg = runs[0].read_config_record()
    sizes = cfg.get("dataset_sizes", {})
    sub.add(Paragraph(
        f"Preset `{sweep['preset']}` on `{cfg['config']['data']['dataset']}` "
        f"({sizes.get('train', '?')} train / {sizes.get('val', '?')} validation / {sizes.get('test', '?')} test "
        f"images). Produced by `dllab vision sweep --preset {sweep['preset']}`; each run's full configuration "
        f"is in its config.json (the first one below)."
    ))
    sub.add(_runs_table(rows, "Final and best validation accuracy, test accuracy, parameters and wall time"))
    tag = sweep_dir.name
    sub.add(ctx.save_figure(compare_runs(runs, title=f"{tag}: all runs"), f"vision_{tag}_compare.png",
                            "Training loss and validation accuracy per epoch, every run of the sweep"))
    complete = [r for r in rows if r["best_val_acc"] is not None]
    if complete:
        best = max(complete, key=lambda r: r["final_val_acc"])
        best_run = next(r for r in runs if r.name == best["run"])
        sub.add(ctx.save_figure(run_curves(best_run, title=f"{tag}: best run {best['run']}"),
                                f"vision_{tag}_best.png",
                                f"Training loss and validation accuracy of the best run ({best['run']}, by final "
                                f"validation accuracy)"))
    sub.add(Code(json.dumps(cfg["config"], indent=1)))
    return sub


def _runs_table(rows: list[dict], caption: str) -> Table:
    """The sweep table's columns (as in sweep.md), one row per run summary."""
    return Table([h for _, h in SWEEP_COLUMNS], [[row.get(k) for k, _ in SWEEP_COLUMNS] for row in rows], caption)


def _single_runs_section(ctx: ReportContext, runs: list[RunDir]) -> Section:
    """Runs made with `dllab vision train` (outside a sweep): a table and each run's curves."""
    from dllab.report.figures import run_curves
    from dllab.vision.experiment import summarize

    sub = Section("Single runs")
    rows = [summarize(r) for r in runs]
    sub.add(_runs_table(rows, "Runs of `dllab vision train`"))
    for run in runs:
        if run.read_metrics():
            sub.add(ctx.save_figure(run_curves(run), f"vision_run_{run.name}.png",
                                    f"{run.name}: training loss and validation accuracy per epoch"))
    return sub


def _parameters_section() -> Section:
    from dllab.vision.analysis import homework_models, layer_table, model_input_shape

    sub = Section("Q2.3 — parameters per layer")
    totals = {}
    for label, model in homework_models().items():
        rows = layer_table(model, model_input_shape(label))
        totals[label] = sum(r.parameters for r in rows)
        sub.add(Table(["layer", "kind", "output", "parameters"],
                      [[r.name, r.kind, "x".join(map(str, r.output_shape)), r.parameters] for r in rows],
                      caption=f"{label}: {totals[label]:,} trainable parameters"))
    cut = 1 - totals["2024-25 BN+GAP"] / totals["2024-25 plain"]
    sub.add(Paragraph(
        f"Max-pooling and stride-2 convolutions give the same count ({totals['2023-24 max-pool']:,} vs "
        f"{totals['2023-24 strided']:,}): pooling has no parameters and a convolution's parameters depend only "
        "on its kernel size and channels, not its stride; both variants end in 16 maps of 6x6 = 576 features, "
        "so the first linear layer is the same size too."
    ))
    sub.add(Paragraph(
        f"BN + global average pooling cuts the 2024-25 net from {totals['2024-25 plain']:,} to "
        f"{totals['2024-25 BN+GAP']:,} parameters ({cut:.1%} fewer): the first MLP layer goes from "
        "4,608 x 1,024 (flattened 128x6x6 maps) to 128 x 1,024 inputs, while the batch-norm layers add only "
        "2 parameters per channel or unit."
    ))
    return sub


def _kernels_section() -> Section:
    from dllab.vision.analysis import pooling_cost_rows, stacked_kernel_rows

    sub = Section("Q2.4 — small kernels and pooling, in numbers")
    rows = stacked_kernel_rows(64)
    headers = list(rows[0].keys())
    sub.add(Table(headers, [list(r.values()) for r in rows],
                  caption="n stacked 3x3 convolutions (64 -> 64 channels, no bias) against one kernel with the "
                          "same receptive field"))
    sub.add(Paragraph(
        "Stacked 3x3 kernels see as far as one large kernel (receptive field 2n+1) with fewer parameters "
        "(9n against (2n+1)^2 per channel pair) and n non-linearities instead of one."
    ))
    pool = pooling_cost_rows()
    sub.add(Table(list(pool[0].keys()), [list(r.values()) for r in pool],
                  caption="2024-25 net at 48x48x3: feature maps, forward multiply-accumulates per image and "
                          "parameters with and without max-pooling"))
    return sub


